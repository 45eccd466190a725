// Test helpers for the transport tests: a recording ConnectionHandler, raw
// POSIX clients (for peers that misbehave), temp dirs and deadline polling.
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "transport/listener.h"

namespace latchkey::transport::testing {

using namespace std::chrono_literals;

// Polls `pred` until true or the deadline; no fixed sleeps.
inline bool PollUntil(const std::function<bool()>& pred,
                      std::chrono::milliseconds limit = 10000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

class RecordingHandler : public ConnectionHandler {
 public:
  std::function<void(const std::shared_ptr<Connection>&, std::string_view)> on_frame;
  std::function<void(const std::shared_ptr<Connection>&, const Status&)> on_stream_error;

  void OnOpen(const std::shared_ptr<Connection>& conn) override {
    Enter(conn->id());
    {
      std::lock_guard<std::mutex> l(mu);
      opened.push_back(conn);
      events[conn->id()].push_back("open");
    }
    cv.notify_all();
    Leave(conn->id());
  }
  void OnFrame(const std::shared_ptr<Connection>& conn, std::string_view payload) override {
    Enter(conn->id());
    {
      std::lock_guard<std::mutex> l(mu);
      ++frames;
    }
    if (on_frame) on_frame(conn, payload);
    Leave(conn->id());
  }
  void OnStreamError(const std::shared_ptr<Connection>& conn, const Status& status) override {
    Enter(conn->id());
    {
      std::lock_guard<std::mutex> l(mu);
      stream_errors.push_back(status);
      events[conn->id()].push_back("error");
    }
    if (on_stream_error) on_stream_error(conn, status);
    cv.notify_all();
    Leave(conn->id());
  }
  void OnClose(const std::shared_ptr<Connection>& conn) override {
    Enter(conn->id());
    {
      std::lock_guard<std::mutex> l(mu);
      ++close_counts[conn->id()];
      events[conn->id()].push_back("close");
    }
    cv.notify_all();
    Leave(conn->id());
  }

  template <typename Pred>
  bool WaitFor(Pred pred, std::chrono::milliseconds limit = 10000ms) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, limit, [&] { return pred(); });
  }
  size_t closed_count() {
    std::lock_guard<std::mutex> l(mu);
    return close_counts.size();
  }

  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::shared_ptr<Connection>> opened;
  std::map<uint64_t, int> close_counts;
  std::map<uint64_t, std::vector<std::string>> events;
  std::vector<Status> stream_errors;
  size_t frames = 0;
  std::atomic<int> overlaps{0};

 private:
  // Detects callbacks of one connection running concurrently.
  void Enter(uint64_t id) {
    std::lock_guard<std::mutex> l(active_mu_);
    if (active_[id]++ != 0) ++overlaps;
  }
  void Leave(uint64_t id) {
    std::lock_guard<std::mutex> l(active_mu_);
    --active_[id];
  }
  std::mutex active_mu_;
  std::map<uint64_t, int> active_;
};

// Blocking POSIX client with a receive timeout, for raw-byte tests.
class RawClient {
 public:
  static std::unique_ptr<RawClient> Tcp(uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return nullptr;
    }
    return std::unique_ptr<RawClient>(new RawClient(fd));
  }
  ~RawClient() { ::close(fd_); }
  bool WriteAll(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // Reads until EOF/error/timeout. *eof tells whether a clean EOF was seen.
  std::string ReadUntilEof(bool* eof) {
    std::string out;
    char buf[4096];
    *eof = false;
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) {
        *eof = true;
        return out;
      }
      if (n < 0) return out;  // timeout or reset
      out.append(buf, static_cast<size_t>(n));
    }
  }
  void SetRecvBuffer(int bytes) { ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes); }
  int fd() const { return fd_; }

 private:
  explicit RawClient(int fd) : fd_(fd) {
    timeval tv{};
    tv.tv_sec = 10;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  int fd_;
};

// A fresh directory under $TMPDIR (or /tmp), removed on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lktransportXXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace latchkey::transport::testing
