// The synchronization object store (seeds 001 and 004; design record 0008).
// It lives in the same replicated log as the locks, so object writes, lock
// grants and session ends are ordered together. Pure and deterministic: the
// caller passes the entry time and the state machine's revision counter.
//
// - A key is absent, reserved (exists, no value yet, owned by a session) or
//   available (has a value). Reserve claims an absent key; Put makes it
//   available (and ends any reservation); Delete makes it absent. The end of
//   the reserving session makes a reserved key absent again.
// - MVCC: every write gets a global revision (the state machine's counter,
//   shared with fencing tokens). Each key keeps its versions (create/mod
//   revision, version) so reads can be answered at a past revision, a key
//   has a history, and a prefix scan sees one consistent revision.
//   Compact(C) forgets what no read at revision >= C can see; a read below C
//   answers COMPACTED.
// - TTLs: absolute (deadline = entry time + ttl, checked by the core) or
//   sliding (the leader restarts the clock when it sends the object to a
//   client, off the log; expiry goes through the log as ObjExpireCmd).
// - Transactions (Txn): compares on objects and locks, then/else op lists,
//   applied atomically at one revision.
// - Methods (Execute): built-in deterministic methods dispatched by name
//   (object_methods.cc); user scripts plug into the same dispatch later.
// - Every applied change is recorded as an ObjChange (TakeChanges) for the
//   server's waiters and sliding TTL clocks, and for watches later.
//
// Thread-safety: none (owned by the StateMachine).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "core/lock_table.h"
#include "log.pb.h"

namespace latchkey::core {

inline constexpr size_t kMaxObjectKeyBytes = 512;
inline constexpr size_t kMaxObjectValueBytes = 512 * 1024;
inline constexpr int kMaxTxnCompares = 64;
inline constexpr int kMaxTxnOps = 128;
inline constexpr int kMaxMethodArgs = 16;
inline constexpr size_t kMaxMethodNameBytes = 64;
inline constexpr uint32_t kDefaultObjectPage = 100;
inline constexpr uint32_t kMaxObjectPage = 1000;
inline constexpr uint64_t kMaxObjectTtlMs = 1ull << 40;  // ~35 years

// Numeric values match latchkey.v1.ObjectState and the log's version state.
enum class ObjState : uint8_t { kAbsent = 0, kReserved = 1, kAvailable = 2 };

struct ObjVersion {
  uint64_t mod_revision = 0;
  uint64_t create_revision = 0;
  uint64_t version = 0;                // writes since creation; 1 = the creating write
  ObjState state = ObjState::kAbsent;  // kAbsent = a removal (tombstone)
  std::string value;
  uint64_t reserved_by = 0;  // session (kReserved)
  uint64_t mod_time_ms = 0;
};

struct ObjTtl {
  uint64_t ttl_ms = 0;  // 0 = none
  bool sliding = false;
  uint64_t deadline_ms = 0;  // absolute TTLs: entry time of expiry
  uint64_t revision = 0;     // identifies this TTL setting (for ObjExpireCmd)
};

struct ObjKey {
  std::vector<ObjVersion> versions;  // ascending mod_revision; never empty
  ObjTtl ttl;                        // only while the latest version exists
};

// What a read answers: the object as of some revision.
struct ObjView {
  std::string key;
  ObjState state = ObjState::kAbsent;
  std::string value;
  uint64_t create_revision = 0;
  uint64_t mod_revision = 0;
  uint64_t version = 0;
  uint64_t reserved_by = 0;
  ObjTtl ttl;  // latest reads only
};

// One applied change: who waits on the key learns of it; watches later.
struct ObjChange {
  enum class Cause { kPut, kReserve, kDelete, kExpire, kSessionEnded, kTtlSet };
  Cause cause = Cause::kPut;
  std::string key;
  uint64_t revision = 0;
  ObjState state = ObjState::kAbsent;  // after the change
};

struct ObjPage {
  std::vector<ObjView> items;
  bool truncated = false;
};

struct TxnOutcome {
  bool succeeded = false;
  uint64_t revision = 0;
  std::vector<ObjView> gets;
};

struct MethodOutcome {
  std::string result;
  ObjView object;
};

class ObjectStore {
 public:
  // ---- Writes (revision: the state machine's counter, bumped per write) ----
  // ALREADY_EXISTS if another session reserved it or it has a value; a
  // session re-reserving its own key changes nothing.
  Result<ObjView> Reserve(uint64_t session, std::string_view key, uint64_t now_ms,
                          uint64_t* revision);
  Result<ObjView> Put(std::string_view key, std::string value, uint64_t now_ms, uint64_t* revision);
  // Returns whether the key existed (a missing key changes nothing).
  Result<bool> Delete(std::string_view key, uint64_t now_ms, uint64_t* revision);
  // ttl_ms 0 clears. NOT_FOUND for an absent key.
  Status SetTtl(std::string_view key, uint64_t ttl_ms, bool sliding, uint64_t now_ms,
                uint64_t* revision);
  // FAILED_PRECONDITION if the TTL changed since, or an absolute one is not due.
  Status Expire(std::string_view key, uint64_t ttl_revision, uint64_t now_ms, uint64_t* revision);
  // Forgets versions no read at >= `rev` needs. INVALID_ARGUMENT above
  // `current`; a lower or equal point than the present one is a no-op.
  Status Compact(uint64_t rev, uint64_t current);
  Result<TxnOutcome> Txn(const log::v1::TxnCmd& c, LockTable* locks, uint64_t now_ms,
                         uint64_t* revision);
  Result<MethodOutcome> Execute(std::string_view key, std::string_view method,
                                const std::vector<std::string>& args, uint64_t now_ms,
                                uint64_t* revision);
  // Drops the session's reservations (the keys become absent).
  void DropSession(uint64_t session, uint64_t now_ms, uint64_t* revision);

  // ---- Reads (rev 0 = latest; current = the state machine's revision) ----
  Result<ObjView> Get(std::string_view key, uint64_t rev, uint64_t current) const;
  Result<ObjPage> History(std::string_view key, uint64_t from_rev, uint32_t limit) const;
  Result<ObjPage> Find(std::string_view prefix, std::string_view start_after, uint64_t rev,
                       uint64_t current, uint32_t limit) const;

  // Absolute TTLs due at now_ms: (key, ttl revision).
  std::vector<std::pair<std::string, uint64_t>> ExpiredAbsolute(uint64_t now_ms) const;
  // Keys with a sliding TTL: key -> (ttl_ms, ttl revision).
  std::map<std::string, std::pair<uint64_t, uint64_t>> SlidingTtls() const;

  std::vector<ObjChange> TakeChanges();

  // ---- Watches (object_watch.cc, design 0012) ----
  // Every kept version of `key` (of every key starting with it when prefix;
  // "" = all keys) with mod_revision >= from_rev, in (revision, key) order.
  // COMPACTED if from_rev <= compact_revision() (a removal at the compaction
  // point is gone, so the stream would have a gap).
  Result<std::vector<ObjView>> Changes(std::string_view key, bool prefix, uint64_t from_rev) const;
  // The version of `key` written at exactly `rev`; NOT_FOUND if none is kept.
  Result<ObjView> VersionAt(std::string_view key, uint64_t rev) const;

  // ---- Lua user methods (object_scripts.cc, design 0012) ----
  // Registers (source non-empty) or removes a script. The name must not be a
  // built-in method; the source must compile (text only, no bytecode).
  Status PutScript(std::string_view name, std::string source, uint64_t revision);
  struct Script {
    std::string source;
    uint64_t revision = 0;
  };
  const std::map<std::string, Script, std::less<>>& scripts() const { return scripts_; }

  uint64_t compact_revision() const { return compact_revision_; }
  size_t key_count() const { return keys_.size(); }
  const std::map<std::string, ObjKey, std::less<>>& keys() const { return keys_; }

  void ToProto(log::v1::Snapshot* snap) const;
  // REQUIRES: sessions hold every live session id (reservations are checked).
  Status FromProto(const log::v1::Snapshot& snap, const std::set<uint64_t>& sessions);

 private:
  // Appends a version at `rev`; keeps the indexes in step.
  void Write(const std::string& key, ObjState state, std::string value, uint64_t reserved_by,
             uint64_t rev, uint64_t now_ms, ObjChange::Cause cause);
  void ClearTtl(const std::string& key, ObjKey& k);
  const ObjVersion* Latest(std::string_view key) const;
  Status CheckReadRevision(uint64_t rev, uint64_t current) const;
  void ScriptsToProto(log::v1::Snapshot* snap) const;
  Status ScriptsFromProto(const log::v1::Snapshot& snap);
  Result<bool> EvalCompare(const log::v1::TxnCompareCmd& cmp, uint64_t session,
                           const LockTable& locks) const;

  std::map<std::string, ObjKey, std::less<>> keys_;
  uint64_t compact_revision_ = 0;
  std::vector<ObjChange> changes_;
  // Derived (rebuilt on restore, not in snapshots):
  std::map<uint64_t, std::set<std::string>> reservations_;  // session -> keys
  std::set<std::pair<uint64_t, std::string>> deadlines_;    // absolute TTLs
  std::set<std::string> sliding_;                           // sliding TTLs
  std::deque<std::pair<uint64_t, std::string>> obsolete_;   // (rev, key) to compact
  std::map<std::string, Script, std::less<>> scripts_;      // Lua user methods (snapshot)
};

ObjView ToView(std::string_view key, const ObjVersion& v);
Status ValidateObjectKey(std::string_view key);
Status ValidateObjectValue(std::string_view value);

}  // namespace latchkey::core
