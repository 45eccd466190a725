// latchkey::Objects: the synchronization object store (seeds 001 and 004;
// docs/design/0008-object-store.md), used through a connected Client.
//
// Contract:
// - An object is absent, reserved (exists but has no value yet: one node is
//   computing it, the others wait) or available (has a value). Reserve is
//   owned by the Client's session: if the session ends, the reservation is
//   dropped and whoever waits for the object is answered (state kAbsent).
// - Every write gets a global revision (shared with fencing tokens). Reads
//   can ask for a past revision; below the server's compaction point they
//   fail with COMPACTED. Find pages are consistent at the revision they
//   report: pass it back to read the next page at the same revision.
// - Reads are linearizable (served by the leader after a read barrier).
// - Writes that time out or lose the connection report UNAVAILABLE or
//   MAYBE_APPLIED: they may have been applied.
// - Thread-safety: as Client (every method may be called from any thread).
// - Lifetime: the Client must outlive this object.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "latchkey/client.h"
#include "latchkey/lock_mode.h"
#include "latchkey/status.h"

namespace latchkey {

enum class ObjectState { kAbsent = 0, kReserved = 1, kAvailable = 2 };
std::string_view ObjectStateName(ObjectState s);  // "absent", "reserved", "available"

struct Object {
  std::string key;
  ObjectState state = ObjectState::kAbsent;
  std::string value;
  uint64_t create_revision = 0;
  uint64_t mod_revision = 0;
  uint64_t version = 0;      // writes since creation
  uint64_t reserved_by = 0;  // session holding the reservation
  uint64_t ttl_ms = 0;       // 0 = none
  bool ttl_sliding = false;
  uint64_t expires_at_ms = 0;  // absolute TTLs: server time of expiry
  uint64_t read_revision = 0;  // Get/WaitFor/Reserve: the store revision the read saw
};

struct ObjectPage {
  std::vector<Object> objects;
  uint64_t revision = 0;  // Find: every object is as of it; History: compaction point
  bool truncated = false;
};

// One condition of a transaction.
struct Compare {
  enum class Target {
    kValue,
    kVersion,
    kCreateRevision,
    kModRevision,
    kState,
    kLockMode,
    kLockToken
  };
  enum class Op { kEq, kNe, kLt, kLe, kGt, kGe };
  Target target = Target::kValue;
  Op op = Op::kEq;
  std::string key;
  std::string value{};
  uint64_t number = 0;
  LockMode mode = LockMode::kEX;
  std::string owner{};

  static Compare Value(std::string key, Op op, std::string value);
  static Compare Version(std::string key, Op op, uint64_t version);  // 0 = absent
  static Compare ModRevision(std::string key, Op op, uint64_t revision);
  static Compare CreateRevision(std::string key, Op op, uint64_t revision);
  static Compare State(std::string key, ObjectState state);
  // This session (owner) holds lock `name` in a mode covering `at_least`.
  static Compare HoldsLock(std::string name, LockMode at_least, std::string owner = {});
  // The highest fencing token among the holders of lock `name`.
  static Compare LockToken(std::string name, Op op, uint64_t token);
};

struct TxnOp {
  enum class Kind { kPut, kDelete, kGet, kReleaseLock };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value{};
  std::string owner{};

  static TxnOp Put(std::string key, std::string value);
  static TxnOp Delete(std::string key);
  static TxnOp Get(std::string key);
  static TxnOp ReleaseLock(std::string name, std::string owner = {});
};

struct TxnRequest {
  std::vector<Compare> compares{};
  std::vector<TxnOp> then_ops{};
  std::vector<TxnOp> else_ops{};
};

struct TxnResult {
  bool succeeded = false;  // every compare held: then_ops ran
  uint64_t revision = 0;
  std::vector<Object> gets;  // TxnOp::Get results in order
};

class Objects {
 public:
  explicit Objects(Client& client) : client_(client) {}

  // The object (kAbsent if there is none) as of `revision` (0 = latest).
  Result<Object> Get(std::string_view key, uint64_t revision = 0);
  // Creates or replaces the value; returns the write's revision.
  Result<uint64_t> Put(std::string_view key, std::string_view value);
  // Claims an absent key for this session. ALREADY_EXISTS if it is reserved
  // by another session or has a value (then Get or WaitFor it).
  Result<Object> Reserve(std::string_view key);
  // Like Get, but waits while the object is reserved. timeout 0 = no limit;
  // TIMEOUT if it is still reserved then.
  Result<Object> WaitFor(std::string_view key,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds{0});
  // Returns whether the object existed.
  Result<bool> Remove(std::string_view key);
  // TTLs: absolute, or sliding (restarted whenever the server sends the
  // object to a client). The Default variants use the server's configured TTL.
  Status SetTimeout(std::string_view key, std::chrono::milliseconds ttl);
  Status SetTimeoutAfterRequest(std::string_view key, std::chrono::milliseconds ttl);
  Status SetDefaultTimeout(std::string_view key);
  Status SetDefaultTimeoutAfterRequest(std::string_view key);
  Status ClearTimeout(std::string_view key);
  // Atomic compare -> then / else.
  Result<TxnResult> Txn(const TxnRequest& txn);
  // Versions of a key (ascending; kAbsent entries are removals).
  Result<ObjectPage> History(std::string_view key, uint64_t from_revision = 0, uint32_t limit = 0);
  // Objects whose key starts with prefix, at one revision (0 = latest).
  Result<ObjectPage> Find(std::string_view prefix, uint64_t revision = 0,
                          std::string_view start_after = {}, uint32_t limit = 0);
  // Runs a server-side method (counter.add, counter.get, cas, append, get,
  // lock_for, get_lock_holder, unlock) and returns its result.
  Result<std::string> ExecuteMethod(std::string_view key, std::string_view method,
                                    const std::vector<std::string>& args = {});
  // Forgets history below `revision` (0 = the current one); returns the
  // compaction point.
  Result<uint64_t> Compact(uint64_t revision = 0);
  // Registers (or replaces) Lua user method `name` (design 0012); an empty
  // source removes it. ExecuteMethod(key, name, args) runs it. INVALID_ARGUMENT
  // with Lua's message if it does not compile.
  Result<uint64_t> PutScript(std::string_view name, std::string_view source);

 private:
  Status SetTtl(std::string_view key, uint64_t ttl_ms, bool sliding, bool use_default);
  Client& client_;
};

}  // namespace latchkey
