// latchkey::Mutex: an exclusive distributed lock that meets the standard
// Lockable and TimedLockable requirements, so std::lock_guard,
// std::unique_lock and std::scoped_lock work with it:
//
//   latchkey::Mutex m(client, "build.artifacts");
//   {
//     std::lock_guard<latchkey::Mutex> g(m);
//     resource.Write(data, m.fencing_token());
//   }
//
// Each Mutex object is its own owner inside the client's session, so two
// Mutex objects naming the same lock exclude each other even in one process.
// A Mutex is not reentrant (like std::mutex).
//
// Errors: lock() throws latchkey::Error when the lock cannot be taken (the
// session is lost, the server is unreachable); try_lock()/try_lock_for()
// return false only when the lock is busy or the wait ran out, and throw on
// other errors. unlock() never throws: if the release fails, the lock is
// released by its TTL or the session lease at the latest. The Status-returning
// methods (Lock, TryLock, LockFor, Unlock) never throw.
//
// Thread-safety: like std::mutex, the object may be locked and unlocked from
// different threads, but one lock()/unlock() pair at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "latchkey/client.h"

namespace latchkey {

struct MutexOptions {
  std::chrono::milliseconds lock_ttl{0};  // 0 = until unlocked / session end
};

class Mutex {
 public:
  // REQUIRES: client outlives the Mutex.
  Mutex(Client& client, std::string name, MutexOptions options = {});
  ~Mutex();  // releases the lock if still held; never throws

  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  // Lockable.
  void lock();
  bool try_lock();
  void unlock();

  // TimedLockable.
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& d) {
    return TryLockForMs(std::chrono::ceil<std::chrono::milliseconds>(d));
  }
  template <class ClockT, class Duration>
  bool try_lock_until(const std::chrono::time_point<ClockT, Duration>& t) {
    auto left = t - ClockT::now();
    return try_lock_for(left < decltype(left)::zero() ? decltype(left)::zero() : left);
  }

  // Errors as values.
  Status Lock();
  Status TryLock();                                   // LOCK_BUSY when held elsewhere
  Status LockFor(std::chrono::milliseconds timeout);  // TIMEOUT when it ran out
  Status Unlock();

  // The fencing token of the current grant; 0 when not held.
  uint64_t fencing_token() const { return token_; }
  bool owns_lock() const { return token_ != 0; }
  const std::string& name() const { return name_; }
  const std::string& owner() const { return owner_; }

 private:
  bool TryLockForMs(std::chrono::milliseconds timeout);
  Status AcquireWith(const AcquireOptions& options);

  Client& client_;
  std::string name_;
  std::string owner_;
  MutexOptions options_;
  uint64_t token_ = 0;
};

}  // namespace latchkey
