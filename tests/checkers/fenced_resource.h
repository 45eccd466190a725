// The fenced resource: what a careful user puts behind a Latchkey lock. It
// remembers, per key, the highest fencing token it has seen and refuses any
// request carrying a lower one (Kleppmann's "storage with fencing"). Every
// request is logged with a global sequence number, accepted or not; the
// mutual-exclusion and lost-write checkers read that log.
//
// Requests: begin / end (mark a critical section), read (returns the value),
// write (sets the value). All carry (process, key, token).
//
// check_fencing=false is the deliberately broken mode: everything is
// accepted, so a stale holder (paused past its lease) gets through, and the
// checkers must notice.
//
// ResourceServer serves one FencedResource on a Unix socket to worker
// processes (line protocol below); ResourceClient is its client.
// Thread-safety: FencedResource and ResourceServer are thread-safe;
// ResourceClient is for one thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace latchkey::checkers {

struct ResourceEntry {
  uint64_t seq = 0;  // global order of arrival
  int64_t time = 0;  // monotonic ns at arrival
  int64_t process = 0;
  std::string key{};
  uint64_t token = 0;
  std::string op{};     // begin, end, read, write
  std::string value{};  // write: the value written; read: the value returned
  bool accepted = false;
};

struct ResourceReply {
  bool accepted = false;
  std::string value{};   // read: the current value
  uint64_t highest = 0;  // the highest token seen for the key
};

class FencedResource {
 public:
  explicit FencedResource(bool check_fencing = true) : check_fencing_(check_fencing) {}

  ResourceReply Apply(int64_t process, const std::string& key, uint64_t token,
                      const std::string& op, const std::string& value = {});

  std::vector<ResourceEntry> Log() const;
  std::string Value(const std::string& key) const;
  // Called (under no lock) after an accepted request, before the reply is
  // returned: a test uses it to pause a holder at a chosen point.
  void set_on_accept(std::function<void(const ResourceEntry&)> f) { on_accept_ = std::move(f); }

 private:
  const bool check_fencing_;
  mutable std::mutex mu_;
  std::map<std::string, uint64_t> highest_;
  std::map<std::string, std::string> values_;
  std::vector<ResourceEntry> log_;
  std::function<void(const ResourceEntry&)> on_accept_;
};

// Line protocol, one request per line, fields separated by one space, "-"
// for an empty value (keys and values contain no spaces):
//   request: PROCESS KEY TOKEN OP VALUE
//   reply:   OK VALUE HIGHEST | REJECT - HIGHEST
class ResourceServer {
 public:
  explicit ResourceServer(FencedResource* resource) : resource_(resource) {}
  ~ResourceServer();
  // Listens on a Unix socket at path. False if it cannot.
  bool Start(const std::string& path);
  void Stop();

 private:
  void AcceptLoop();
  void Serve(int fd);

  FencedResource* resource_;
  int listen_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> conns_;
  std::vector<std::thread> threads_;
};

class ResourceClient {
 public:
  ResourceClient() = default;
  ~ResourceClient();
  ResourceClient(const ResourceClient&) = delete;
  ResourceClient& operator=(const ResourceClient&) = delete;
  bool Connect(const std::string& path);
  // nullopt if the connection failed.
  std::optional<ResourceReply> Call(int64_t process, const std::string& key, uint64_t token,
                                    const std::string& op, const std::string& value = {});

 private:
  int fd_ = -1;
  std::string buf_;
};

}  // namespace latchkey::checkers
