// Synchronization objects built beside the lock engine, in the same log so
// they are ordered with lock grants: counting semaphores, count-down latches
// and cyclic barriers. Pure and deterministic like the rest of the core.
//
// - Semaphore NAME with `limit` permits: an owner takes 1..limit permits and
//   holds them until it releases them or its session ends (per-holder
//   lease). Waiters are served strictly FIFO (a large request at the head is
//   not overtaken). Each grant gets a fencing token.
// - Latch NAME created with a count: CountDown lowers it; Await returns once
//   it is zero (waiters are released together). A latch at zero stays open.
// - Barrier NAME for `parties`: Await blocks until that many owners wait,
//   then releases them together and starts the next generation. An owner
//   whose session ends leaves the barrier.
//
// Thread-safety: none (owned by the StateMachine).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "core/lock_table.h"
#include "log.pb.h"

namespace latchkey::core {

inline constexpr uint32_t kMaxSemaphorePermits = 1'000'000;
inline constexpr uint32_t kMaxBarrierParties = 100'000;

struct SemaphoreGrant {
  uint32_t permits = 0;
  uint64_t fencing_token = 0;
  uint64_t granted_at_ms = 0;
};

struct SemaphoreWaiter {
  OwnerId who;
  uint32_t permits = 0;
  uint64_t queued_at_ms = 0;
};

struct Semaphore {
  uint32_t limit = 0;
  uint32_t used = 0;
  std::map<OwnerId, SemaphoreGrant> holders;
  std::deque<SemaphoreWaiter> waiters;
};

struct Latch {
  uint64_t initial = 0;
  uint64_t count = 0;
  std::vector<OwnerId> waiters;
};

struct Barrier {
  uint32_t parties = 0;
  uint64_t generation = 0;
  std::vector<OwnerId> waiting;
};

// A waiting request that completed (answered by the server).
struct SyncEvent {
  enum class Kind { kSemaphoreGranted, kLatchOpened, kBarrierTripped };
  Kind kind = Kind::kSemaphoreGranted;
  OwnerId who;
  std::string name;
  SemaphoreGrant grant;     // kSemaphoreGranted
  uint64_t generation = 0;  // kBarrierTripped: the generation that tripped
};

struct SyncOutcome {
  enum class Kind { kDone, kQueued, kBusy };
  Kind kind = Kind::kDone;
  SemaphoreGrant grant;     // semaphore: the grant
  uint64_t generation = 0;  // barrier: the generation that tripped
};

class SyncObjects {
 public:
  // limit: the semaphore's size; 0 = use the existing one (NOT_FOUND if none).
  Result<SyncOutcome> SemaphoreAcquire(const OwnerId& who, const std::string& name,
                                       uint32_t permits, uint32_t limit, bool try_only,
                                       uint64_t now_ms, uint64_t* revision);
  Status SemaphoreRelease(const OwnerId& who, const std::string& name, uint64_t now_ms,
                          uint64_t* revision);
  Result<SyncOutcome> LatchAwait(const OwnerId& who, const std::string& name, uint64_t initial);
  // Returns the count left.
  Result<uint64_t> LatchCountDown(const std::string& name, uint64_t by, uint64_t initial);
  Result<SyncOutcome> BarrierAwait(const OwnerId& who, const std::string& name, uint32_t parties);
  // Withdraws a wait of `who` on the named object (kind: 1 semaphore, 2 latch,
  // 3 barrier). False if it was not waiting.
  bool Cancel(int kind, const OwnerId& who, const std::string& name, uint64_t now_ms,
              uint64_t* revision);
  void DropSession(uint64_t session, uint64_t now_ms, uint64_t* revision);

  std::vector<SyncEvent> TakeEvents();

  const std::map<std::string, Semaphore, std::less<>>& semaphores() const { return semaphores_; }
  const std::map<std::string, Latch, std::less<>>& latches() const { return latches_; }
  const std::map<std::string, Barrier, std::less<>>& barriers() const { return barriers_; }

  void ToProto(log::v1::Snapshot* snap) const;
  Status FromProto(const log::v1::Snapshot& snap);

 private:
  void ServeSemaphore(const std::string& name, uint64_t now_ms, uint64_t* revision);

  std::map<std::string, Semaphore, std::less<>> semaphores_;
  std::map<std::string, Latch, std::less<>> latches_;
  std::map<std::string, Barrier, std::less<>> barriers_;
  std::vector<SyncEvent> events_;
};

}  // namespace latchkey::core
