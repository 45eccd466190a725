// ZooKeeper backend: the lock recipe from the ZooKeeper documentation, over
// libzookeeper-mt's synchronous API. Acquire creates an EPHEMERAL|SEQUENCE
// child under /peer-bench/<name>, lists the children, and holds the lock when
// its child is the lowest; otherwise it watches the next lower child (not
// the parent: no herd effect) and looks again when that one goes away.
// Release deletes the child. The parent znode is created on first use
// (like Curator's creatingParentsIfNeeded), so that write is counted too.
#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend.h"

namespace latchkey::peers {
namespace {

constexpr char kRoot[] = "/peer-bench";

// Counts watch and session events; Wait returns once the count moved.
struct Signal {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t events = 0;
  int state = 0;

  static void Watcher(zhandle_t*, int /*type*/, int state, const char*, void* ctx) {
    auto* s = static_cast<Signal*>(ctx);
    std::lock_guard<std::mutex> l(s->mu);
    ++s->events;
    s->state = state;
    s->cv.notify_all();
  }
};

std::string ZkError(const char* what, int rc) {
  return std::string("zookeeper ") + what + ": " + zerror(rc);
}

class ZooKeeperLockClient : public LockClient {
 public:
  explicit ZooKeeperLockClient(const BackendOptions& o) : options_(o) {}
  ~ZooKeeperLockClient() override {
    if (zh_ != nullptr) zookeeper_close(zh_);
  }

  Status Init() {
    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
    zh_ = zookeeper_init(options_.endpoint.c_str(), &Signal::Watcher,
                         static_cast<int>(options_.ttl.count()), nullptr, &session_, 0);
    if (zh_ == nullptr) return Unavailable("zookeeper_init failed");
    std::unique_lock<std::mutex> l(session_.mu);
    if (!session_.cv.wait_for(l, std::chrono::seconds(10),
                              [&] { return session_.state == ZOO_CONNECTED_STATE; })) {
      return Unavailable("zookeeper: not connected within 10 s");
    }
    return Status::Ok();
  }

  Status Acquire(const std::string& name) override {
    const std::string parent = std::string(kRoot) + "/" + name;
    char created[512];
    int rc = zoo_create(zh_, (parent + "/lock-").c_str(), nullptr, -1, &ZOO_OPEN_ACL_UNSAFE,
                        ZOO_EPHEMERAL | ZOO_SEQUENCE, created, sizeof(created));
    if (rc == ZNONODE) {
      for (const std::string& p : {std::string(kRoot), parent}) {
        int prc = zoo_create(zh_, p.c_str(), nullptr, -1, &ZOO_OPEN_ACL_UNSAFE, 0, nullptr, 0);
        if (prc != ZOK && prc != ZNODEEXISTS) return Unavailable(ZkError("create parent", prc));
      }
      rc = zoo_create(zh_, (parent + "/lock-").c_str(), nullptr, -1, &ZOO_OPEN_ACL_UNSAFE,
                      ZOO_EPHEMERAL | ZOO_SEQUENCE, created, sizeof(created));
    }
    if (rc != ZOK) return Unavailable(ZkError("create", rc));
    const std::string mine = created;
    const std::string my_child = mine.substr(parent.size() + 1);
    const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
    for (;;) {
      String_vector children{};
      rc = zoo_get_children(zh_, parent.c_str(), 0, &children);
      if (rc != ZOK) return Unavailable(ZkError("get_children", rc));
      std::vector<std::string> sorted(children.data, children.data + children.count);
      deallocate_String_vector(&children);
      std::sort(sorted.begin(), sorted.end());  // same prefix: sequence order
      auto me = std::find(sorted.begin(), sorted.end(), my_child);
      if (me == sorted.end()) return Unavailable("zookeeper: own lock node vanished");
      if (me == sorted.begin()) {
        held_[name] = mine;
        return Status::Ok();
      }
      const std::string predecessor = parent + "/" + *(me - 1);
      uint64_t seen;
      {
        std::lock_guard<std::mutex> l(watch_.mu);
        seen = watch_.events;
      }
      Stat stat{};
      rc = zoo_wexists(zh_, predecessor.c_str(), &Signal::Watcher, &watch_, &stat);
      if (rc == ZNONODE) continue;  // gone already: look again
      if (rc != ZOK) return Unavailable(ZkError("exists", rc));
      std::unique_lock<std::mutex> l(watch_.mu);
      if (!watch_.cv.wait_until(l, deadline, [&] { return watch_.events != seen; })) {
        l.unlock();
        zoo_delete(zh_, mine.c_str(), -1);
        return Status(Code::kTimeout, "zookeeper: lock not granted before the deadline");
      }
    }
  }

  Status Release(const std::string& name) override {
    auto it = held_.find(name);
    if (it == held_.end()) return Status(Code::kNotHeld, "zookeeper: not held by this client");
    int rc = zoo_delete(zh_, it->second.c_str(), -1);
    held_.erase(it);
    return rc == ZOK ? Status::Ok() : Unavailable(ZkError("delete", rc));
  }

 private:
  BackendOptions options_;
  zhandle_t* zh_ = nullptr;
  Signal session_;
  Signal watch_;
  std::unordered_map<std::string, std::string> held_;  // name -> own znode
};

}  // namespace

Result<std::unique_ptr<LockClient>> ConnectZooKeeper(const BackendOptions& options) {
  auto c = std::make_unique<ZooKeeperLockClient>(options);
  if (Status s = c->Init(); !s.ok()) return s;
  return std::unique_ptr<LockClient>(std::move(c));
}

}  // namespace latchkey::peers
