#include "latchkey/mutex.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace latchkey {
namespace {

std::string NewOwnerId() {
  static std::atomic<uint64_t> counter{0};
  return "mutex-" + std::to_string(static_cast<long long>(::getpid())) + "-" +
         std::to_string(++counter);
}

}  // namespace

Mutex::Mutex(Client& client, std::string name, MutexOptions options)
    : client_(client), name_(std::move(name)), owner_(NewOwnerId()), options_(options) {}

Mutex::~Mutex() {
  if (token_ != 0) unlock();
}

Status Mutex::AcquireWith(const AcquireOptions& options) {
  if (token_ != 0) {
    return Status(Code::kFailedPrecondition,
                  "latchkey::Mutex '" + name_ + "' is already locked by this object");
  }
  auto grant = client_.Acquire(name_, options);
  if (!grant.ok()) return grant.status();
  token_ = grant->fencing_token;
  return Status();
}

Status Mutex::Lock() {
  AcquireOptions o;
  o.owner = owner_;
  o.lock_ttl = options_.lock_ttl;
  return AcquireWith(o);
}

Status Mutex::TryLock() {
  AcquireOptions o;
  o.owner = owner_;
  o.try_only = true;
  o.lock_ttl = options_.lock_ttl;
  return AcquireWith(o);
}

Status Mutex::LockFor(std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) return TryLock();  // zero would mean "wait forever"
  AcquireOptions o;
  o.owner = owner_;
  o.wait_timeout = timeout;
  o.lock_ttl = options_.lock_ttl;
  return AcquireWith(o);
}

Status Mutex::Unlock() {
  if (token_ == 0) {
    return Status(Code::kNotHeld, "latchkey::Mutex '" + name_ + "' is not locked");
  }
  token_ = 0;
  return client_.Release(name_, owner_);
}

void Mutex::lock() {
  Status st = Lock();
  if (!st.ok()) throw Error(std::move(st));
}

bool Mutex::try_lock() {
  Status st = TryLock();
  if (st.ok()) return true;
  if (st.code() == Code::kLockBusy) return false;
  throw Error(std::move(st));
}

bool Mutex::TryLockForMs(std::chrono::milliseconds timeout) {
  Status st = LockFor(timeout);
  if (st.ok()) return true;
  if (st.code() == Code::kTimeout || st.code() == Code::kLockBusy) return false;
  throw Error(std::move(st));
}

void Mutex::unlock() {
  try {
    Status st = Unlock();
    if (!st.ok()) {
      std::fprintf(stderr, "latchkey: unlock of '%s' failed: %s\n", name_.c_str(),
                   st.ToString().c_str());
    }
  } catch (...) {
    token_ = 0;  // out of memory: the lease or the lock ttl releases it
  }
}

}  // namespace latchkey
