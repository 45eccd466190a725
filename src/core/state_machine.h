// The replicated state machine: sessions and the lock engine (LockTable).
// Pure and deterministic: no clocks, threads, sockets or files. The only
// inputs are log entries (with the leader's timestamp inside) and snapshots,
// so every replica, a restart and a test replay reach the same state.
//
// - A session is created by OpenSession; its id is the revision at creation.
//   Keepalives never reach the core: the leader tracks leases and proposes
//   ExpireSession when one runs out.
// - Locks: see lock_table.h (modes, hierarchy, FIFO, conversions, deadlock
//   detection, reentrancy). Owner = (session, owner id).
// - Every state change bumps the revision; fencing tokens are revisions, so
//   they increase strictly per lock (and globally).
// - Closing or expiring a session releases everything it holds and withdraws
//   everything it waits for, granting the next waiters in order.
//
// Thread-safety: none; the owner serializes all calls (the raft loop thread).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "core/lock_table.h"
#include "core/modes.h"
#include "core/object_store.h"
#include "core/record_store.h"
#include "core/sync_objects.h"
#include "log.pb.h"

namespace latchkey::core {

inline constexpr uint32_t kLogEntryVersion = 1;
inline constexpr uint32_t kSnapshotVersion = 1;

struct GrantInfo {
  uint64_t session_id = 0;
  std::string owner;
  std::string name;
  uint64_t fencing_token = 0;
  uint64_t granted_at_ms = 0;
  uint64_t lock_ttl_ms = 0;
  Mode mode = Mode::kEX;
  uint32_t count = 1;
  // Lock grants: the lock value block at the grant (delivered with it).
  std::string value;
  uint64_t value_token = 0;
  bool cacheable = false;
};

// Side effects that must reach clients (pushes, late replies).
struct Event {
  enum class Kind {
    kGranted,       // a waiting request (or conversion) was granted (grant)
    kSessionEnded,  // session_id closed or expired (reason)
    kLockLost,      // grant lost by its lock TTL (grant, reason)
    kCallback,      // a cacheable grant blocks a request (grant, wanted, downgrade_to)
    kWaitFailed,    // a waiting lock request was withdrawn by the core (grant names it; failure)
  };
  // What kGranted is about: a lock, semaphore permits, an opened latch or a
  // tripped barrier (grant.name / grant.owner name the object and waiter).
  enum class Object { kLock = 0, kSemaphore = 1, kLatch = 2, kBarrier = 3 };
  Kind kind = Kind::kGranted;
  Object object = Object::kLock;
  uint64_t session_id = 0;
  GrantInfo grant;
  std::string reason;
  uint32_t permits = 0;           // kSemaphore
  uint64_t generation = 0;        // kBarrier
  Mode wanted = Mode::kEX;        // kCallback: what the blocked request asks for
  Mode downgrade_to = Mode::kNL;  // kCallback: NL = release
  Status failure;                 // kWaitFailed: what the waiter is answered
};

// Outcome of one command of an entry.
struct CommandResult {
  Status status;
  uint64_t session_id = 0;  // OpenSession
  bool queued = false;      // Acquire: waiting in line
  bool granted = false;     // Acquire: grant is valid
  GrantInfo grant;          // Acquire granted / CancelWait found it held / Transfer
  uint32_t permits = 0;     // SemaphoreAcquire granted
  uint64_t count = 0;       // LatchCountDown: what is left
  uint64_t generation = 0;  // BarrierAwait tripped
  // Object store (object_store.h).
  uint64_t revision = 0;         // the write's revision (Put, Delete, Txn, methods)
  bool succeeded = false;        // Txn: the then branch ran; Delete: the key existed
  std::vector<ObjView> objects;  // Reserve/Put/method: the object after; Txn: its gets
  std::string method_result;     // ObjMethod
  std::vector<RecView> records;  // RecCreate/RecUpdate: the record after
};

// A pub/sub message (PublishCmd): for every subscriber of the namespace.
struct Published {
  std::string namespace_name;
  std::string message;
  uint64_t revision = 0;
};

inline constexpr size_t kMaxNamespaceBytes = 256;
// 1..256 bytes without control characters.
Status ValidateNamespace(std::string_view ns);

struct ApplyResult {
  uint64_t index = 0;
  std::vector<CommandResult> results;  // one per command, same order
  std::vector<Event> events;
  // Object changes in apply order (wait_for waiters, sliding TTLs, watches).
  std::vector<ObjChange> object_changes;
  // Pub/sub messages in apply order (design 0012).
  std::vector<Published> published;
};

struct Session {
  uint64_t id = 0;
  uint64_t ttl_ms = 0;
  std::string client_name;
  uint64_t opened_at_ms = 0;
  // Request ids of the latest reentrant acquires and acquires with a value
  // (bounded), so a retry after a reconnect neither counts twice nor
  // rewrites the value.
  std::deque<uint64_t> recent_reentrant;
};

inline constexpr size_t kRecentReentrantIds = 64;
inline constexpr size_t kMaxLockValueBytes = 64 * 1024;
inline constexpr int kMaxAcquireManyParts = 64;

class StateMachine {
 public:
  StateMachine() = default;

  // Applies one committed entry. Commands that fail (bad name, unknown
  // session...) fail alone and change nothing. Returns a non-OK status only
  // for an undecodable or unknown-version entry: the caller must stop the
  // node rather than diverge.
  Result<ApplyResult> ApplyBytes(uint64_t index, std::string_view entry_bytes);
  ApplyResult Apply(uint64_t index, const log::v1::LogEntry& entry);

  // Snapshots: deterministic bytes (same state -> same bytes) carrying a
  // version and a digest that Restore verifies.
  std::string Snapshot() const;
  Status Restore(std::string_view bytes);
  // Digest of the state (FNV-1a over the canonical snapshot encoding).
  uint64_t Digest() const;

  // ---- Queries -----------------------------------------------------------
  const Session* FindSession(uint64_t id) const;
  const LockTable& locks() const { return locks_; }
  const SyncObjects& sync() const { return sync_; }
  const ObjectStore& objects() const { return objects_; }
  const RecordStore& records() const { return records_; }
  std::vector<GrantInfo> HeldBy(uint64_t session_id) const;
  const std::map<uint64_t, Session>& sessions() const { return sessions_; }
  // Grants whose lock TTL ended at or before now_ms: (name, fencing token).
  std::vector<std::pair<std::string, uint64_t>> ExpiredLocks(uint64_t now_ms) const {
    return locks_.Expired(now_ms);
  }

  uint64_t revision() const { return revision_; }
  uint64_t time_ms() const { return time_ms_; }
  uint64_t applied_index() const { return applied_index_; }
  size_t locks_held() const { return locks_.grant_count(); }
  size_t waiter_count() const { return locks_.waiter_count(); }

 private:
  CommandResult ApplyCommand(const log::v1::Command& cmd, std::vector<Event>* events);
  CommandResult OpenSession(const log::v1::OpenSessionCmd& c);
  CommandResult EndSession(uint64_t session_id, std::string_view reason,
                           std::vector<Event>* events);
  CommandResult Acquire(const log::v1::AcquireCmd& c);
  CommandResult Release(const log::v1::ReleaseCmd& c);
  CommandResult Downgrade(const log::v1::DowngradeCmd& c);
  CommandResult Transfer(const log::v1::TransferCmd& c);
  CommandResult AcquireMany(const log::v1::AcquireManyCmd& c);
  CommandResult SetValue(const log::v1::SetValueCmd& c);
  // Writes a Release/Downgrade's value first (the size and write mode are
  // checked); OK when the command carries none.
  Status WriteValueFirst(uint64_t session, const std::string& owner, const std::string& name,
                         bool set_value, const std::string& value);
  CommandResult DeclareRank(const log::v1::DeclareRankCmd& c);
  CommandResult SemaphoreAcquire(const log::v1::SemaphoreAcquireCmd& c);
  CommandResult SemaphoreRelease(const log::v1::SemaphoreReleaseCmd& c);
  CommandResult LatchAwait(const log::v1::LatchAwaitCmd& c);
  CommandResult LatchCountDown(const log::v1::LatchCountDownCmd& c);
  CommandResult BarrierAwait(const log::v1::BarrierAwaitCmd& c);
  // Maps an engine outcome (granted / queued / busy / deadlock / order).
  void FillOutcome(const AcquireOutcome& out, const OwnerId& who, const std::string& name,
                   CommandResult* r) const;
  CommandResult CancelWait(const log::v1::CancelWaitCmd& c);
  CommandResult ExpireLock(const log::v1::ExpireLockCmd& c, std::vector<Event>* events);
  // Object store commands (state_machine_objects.cc).
  CommandResult ApplyObjectCommand(const log::v1::Command& cmd);
  // Record commands (state_machine_records.cc, design 0013).
  CommandResult ApplyRecordCommand(const log::v1::Command& cmd, std::vector<Event>* events);
  CommandResult RecordLock(const log::v1::RecLockCmd& c);
  CommandResult RecordWrite(const log::v1::Command& cmd, std::vector<Event>* events);
  // NOT_FOUND / NOT_HELD unless the record is live and (session, owner)
  // holds its lock in PW or EX.
  Status CheckRecordLock(uint64_t session, const std::string& owner, const std::string& table,
                         uint64_t number) const;
  // Fails lock-if-unchanged waiters on `name` older than `mod_revision` and
  // forgets conditions of owners no longer waiting.
  void FailChangedWaiters(const std::string& name, uint64_t mod_revision,
                          std::vector<Event>* events);
  // Deleting a record: fails every waiter, then revokes every grant.
  void RevokeRecordLocks(const std::string& name, uint64_t session, const std::string& owner,
                         const std::string& reason, std::vector<Event>* events);
  void DropRecordConds(uint64_t session);
  // Turns the lock table's grant events into Events.
  void DrainGrants(std::vector<Event>* events);
  Status CheckSession(uint64_t id) const;
  std::string ClientNameOf(uint64_t session) const;
  // The snapshot encoding in two parts, streamed lock by lock (never the
  // whole lv::Snapshot in memory): fields 1-5 and fields 7-; the digest
  // (field 6) goes between them (state_machine_snapshot.cc).
  void EncodeSnapshot(std::string* head_and_locks, std::string* tail) const;

  std::map<uint64_t, Session> sessions_;
  LockTable locks_;
  SyncObjects sync_;
  ObjectStore objects_;
  RecordStore records_;
  std::vector<Published> published_;  // drained into ApplyResult per command
  uint64_t revision_ = 0;
  uint64_t time_ms_ = 0;
  uint64_t applied_index_ = 0;
};

// Modes in log entries are stored as Mode + 1; 0 means EX.
Mode ModeFromLog(uint32_t v);
uint32_t ModeToLog(Mode m);

// Helpers to build log entries (used by the server and tests).
log::v1::LogEntry MakeEntry(uint64_t time_ms);
std::string EncodeEntry(const log::v1::LogEntry& entry);

}  // namespace latchkey::core
