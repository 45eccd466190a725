#include "latchkey/shared_mutex.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <functional>

namespace latchkey {

SharedMutex::SharedMutex(Client& client, std::string name, std::chrono::milliseconds lock_ttl)
    : client_(client), name_(std::move(name)), lock_ttl_(lock_ttl) {
  static std::atomic<uint64_t> counter{0};
  prefix_ = "shmutex-" + std::to_string(static_cast<long long>(::getpid())) + "-" +
            std::to_string(++counter) + "/";
}

SharedMutex::~SharedMutex() {
  std::map<std::thread::id, uint64_t> left;
  {
    std::lock_guard<std::mutex> g(mu_);
    left.swap(tokens_);
  }
  for (const auto& [tid, token] : left) {
    const std::string owner = prefix_ + std::to_string(std::hash<std::thread::id>{}(tid));
    (void)client_.Release(name_, owner, /*all=*/true);
  }
}

std::string SharedMutex::OwnerForThisThread() const {
  return prefix_ + std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
}

Status SharedMutex::Take(LockMode mode, bool try_only, std::chrono::milliseconds timeout) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (tokens_.count(std::this_thread::get_id())) {
      return Status(Code::kFailedPrecondition,
                    "latchkey::SharedMutex '" + name_ + "' is already held by this thread");
    }
  }
  AcquireOptions o;
  o.mode = mode;
  o.owner = OwnerForThisThread();
  o.try_only = try_only;
  o.wait_timeout = timeout;
  o.lock_ttl = lock_ttl_;
  auto grant = client_.Acquire(name_, o);
  if (!grant.ok()) return grant.status();
  std::lock_guard<std::mutex> g(mu_);
  tokens_[std::this_thread::get_id()] = grant->fencing_token;
  return Status::Ok();
}

Status SharedMutex::TakeFor(LockMode mode, std::chrono::milliseconds timeout) {
  // A zero wait on the wire means "forever": a non-positive timeout is a try.
  if (timeout.count() <= 0) return Take(mode, true, {});
  return Take(mode, false, timeout);
}

Status SharedMutex::Give() {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (tokens_.erase(std::this_thread::get_id()) == 0) {
      return Status(Code::kNotHeld,
                    "latchkey::SharedMutex '" + name_ + "' is not held by this thread");
    }
  }
  Status st = client_.Release(name_, OwnerForThisThread());
  if (!st.ok()) {
    std::fprintf(stderr, "latchkey: unlock of '%s' failed: %s\n", name_.c_str(),
                 st.ToString().c_str());
  }
  return st;
}

uint64_t SharedMutex::fencing_token() const {
  std::lock_guard<std::mutex> g(mu_);
  auto it = tokens_.find(std::this_thread::get_id());
  return it == tokens_.end() ? 0 : it->second;
}

void SharedMutex::Throw(Status st) {
  if (!st.ok()) throw Error(std::move(st));
}

bool SharedMutex::Busy(Status st) {
  if (st.ok()) return true;
  if (st.code() == Code::kLockBusy || st.code() == Code::kTimeout) return false;
  throw Error(std::move(st));
}

}  // namespace latchkey
