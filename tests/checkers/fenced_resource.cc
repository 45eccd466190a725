#include "checkers/fenced_resource.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <sstream>

#include "checkers/history.h"

namespace latchkey::checkers {

ResourceReply FencedResource::Apply(int64_t process, const std::string& key, uint64_t token,
                                    const std::string& op, const std::string& value) {
  ResourceReply reply;
  ResourceEntry entry;
  {
    std::lock_guard<std::mutex> lk(mu_);
    uint64_t& highest = highest_[key];
    reply.accepted = !check_fencing_ || token >= highest;
    if (reply.accepted) {
      if (token > highest) highest = token;
      if (op == "write") values_[key] = value;
      if (op == "read") reply.value = values_[key];
    }
    reply.highest = highest;
    entry.seq = log_.size() + 1;
    entry.time = MonotonicNanos();
    entry.process = process;
    entry.key = key;
    entry.token = token;
    entry.op = op;
    entry.value = op == "read" ? reply.value : value;
    entry.accepted = reply.accepted;
    log_.push_back(entry);
  }
  if (reply.accepted && on_accept_) on_accept_(entry);
  return reply;
}

std::vector<ResourceEntry> FencedResource::Log() const {
  std::lock_guard<std::mutex> lk(mu_);
  return log_;
}

std::string FencedResource::Value(const std::string& key) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = values_.find(key);
  return it == values_.end() ? "" : it->second;
}

namespace {

bool WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t w = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(w);
  }
  return true;
}

// Reads one line (without '\n') using *buf as carry-over.
bool ReadLine(int fd, std::string* buf, std::string* line) {
  for (;;) {
    size_t nl = buf->find('\n');
    if (nl != std::string::npos) {
      *line = buf->substr(0, nl);
      buf->erase(0, nl + 1);
      return true;
    }
    if (buf->size() > 4096) return false;
    char tmp[512];
    ssize_t r = ::recv(fd, tmp, sizeof tmp, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    buf->append(tmp, static_cast<size_t>(r));
  }
}

std::string Field(const std::string& v) {
  return v.empty() ? "-" : v;
}
std::string Unfield(const std::string& v) {
  return v == "-" ? "" : v;
}

}  // namespace

ResourceServer::~ResourceServer() {
  Stop();
}

bool ResourceServer::Start(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return false;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return false;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 64) != 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
    return false;
  }
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return true;
}

void ResourceServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (int fd : conns_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  std::lock_guard<std::mutex> lk(mu_);
  for (int fd : conns_) ::close(fd);
  conns_.clear();
}

void ResourceServer::AcceptLoop() {
  while (!stopping_) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      return;
    }
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    conns_.push_back(fd);
    threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

void ResourceServer::Serve(int fd) {
  std::string buf, line;
  while (ReadLine(fd, &buf, &line)) {
    std::istringstream in(line);
    int64_t process = 0;
    uint64_t token = 0;
    std::string key, op, value;
    if (!(in >> process >> key >> token >> op >> value)) return;
    ResourceReply r = resource_->Apply(process, key, token, op, Unfield(value));
    std::string out =
        (r.accepted ? "OK " : "REJECT ") + Field(r.value) + " " + std::to_string(r.highest) + "\n";
    if (!WriteAll(fd, out)) return;
  }
}

ResourceClient::~ResourceClient() {
  if (fd_ >= 0) ::close(fd_);
}

bool ResourceClient::Connect(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return false;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  return true;
}

std::optional<ResourceReply> ResourceClient::Call(int64_t process, const std::string& key,
                                                  uint64_t token, const std::string& op,
                                                  const std::string& value) {
  if (fd_ < 0) return std::nullopt;
  std::string req = std::to_string(process) + " " + key + " " + std::to_string(token) + " " + op +
                    " " + Field(value) + "\n";
  if (!WriteAll(fd_, req)) return std::nullopt;
  std::string line;
  if (!ReadLine(fd_, &buf_, &line)) return std::nullopt;
  std::istringstream in(line);
  std::string verdict, v;
  ResourceReply r;
  if (!(in >> verdict >> v >> r.highest)) return std::nullopt;
  r.accepted = verdict == "OK";
  r.value = Unfield(v);
  return r;
}

}  // namespace latchkey::checkers
