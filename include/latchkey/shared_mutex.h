// latchkey::SharedMutex: a distributed reader/writer lock that meets the
// standard SharedTimedLockable requirements, so std::shared_lock,
// std::unique_lock and std::lock_guard work with it:
//
//   latchkey::SharedMutex rw(client, "catalog");
//   { std::shared_lock r(rw); Read(); }            // PR (shared)
//   { std::unique_lock w(rw); Write(rw.fencing_token()); }  // EX
//
// Each calling thread is its own owner inside the client's session, so many
// threads of one process may hold it shared at once, and a writer thread
// excludes the readers of its own process too. Like std::shared_mutex it is
// not reentrant. Errors: as latchkey::Mutex (lock()/lock_shared() throw
// latchkey::Error, try_* return false only when busy or timed out, unlock*
// never throw; the Status methods never throw).
//
// Thread-safety: fully thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "latchkey/client.h"

namespace latchkey {

class SharedMutex {
 public:
  // REQUIRES: client outlives the SharedMutex.
  SharedMutex(Client& client, std::string name, std::chrono::milliseconds lock_ttl = {});
  ~SharedMutex();  // releases what the object still holds; never throws

  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void lock() { Throw(Take(LockMode::kEX, false, {})); }
  bool try_lock() { return Busy(Take(LockMode::kEX, true, {})); }
  void unlock() noexcept { (void)Give(); }
  void lock_shared() { Throw(Take(LockMode::kPR, false, {})); }
  bool try_lock_shared() { return Busy(Take(LockMode::kPR, true, {})); }
  void unlock_shared() noexcept { (void)Give(); }

  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& d) {
    return Busy(TakeFor(LockMode::kEX, std::chrono::ceil<std::chrono::milliseconds>(d)));
  }
  template <class Rep, class Period>
  bool try_lock_shared_for(const std::chrono::duration<Rep, Period>& d) {
    return Busy(TakeFor(LockMode::kPR, std::chrono::ceil<std::chrono::milliseconds>(d)));
  }
  template <class ClockT, class Duration>
  bool try_lock_until(const std::chrono::time_point<ClockT, Duration>& t) {
    return try_lock_for(t - ClockT::now());
  }
  template <class ClockT, class Duration>
  bool try_lock_shared_until(const std::chrono::time_point<ClockT, Duration>& t) {
    return try_lock_shared_for(t - ClockT::now());
  }

  // Errors as values: LOCK_BUSY for the Try forms, TIMEOUT for LockFor.
  Status Lock(LockMode mode) { return Take(mode, false, {}); }
  Status TryLock(LockMode mode) { return Take(mode, true, {}); }
  Status LockFor(LockMode mode, std::chrono::milliseconds timeout) {
    return TakeFor(mode, timeout);
  }
  Status Unlock() { return Give(); }

  // The calling thread's grant: its fencing token (0 if it holds nothing).
  uint64_t fencing_token() const;
  const std::string& name() const { return name_; }

 private:
  Status Take(LockMode mode, bool try_only, std::chrono::milliseconds timeout);
  Status TakeFor(LockMode mode, std::chrono::milliseconds timeout);
  Status Give();
  std::string OwnerForThisThread() const;
  static void Throw(Status st);
  static bool Busy(Status st);  // true if OK, false if busy/timeout, throws otherwise

  Client& client_;
  std::string name_;
  std::string prefix_;
  std::chrono::milliseconds lock_ttl_;
  mutable std::mutex mu_;
  std::map<std::thread::id, uint64_t> tokens_;  // guarded by mu_
};

}  // namespace latchkey
