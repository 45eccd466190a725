// LockTable: the lock engine of the core. Hierarchical names, six DLM modes,
// counted reentrancy, conversions with priority, fair FIFO queues and exact
// deadlock detection. Pure and deterministic (no clocks: callers pass the
// entry time), driven by the StateMachine.
//
// Rules (docs/design/0006-lock-engine.md has the reasoning):
// - A grant on a.b.c in mode M also holds IntentionFor(M) on a.b and a, so it
//   conflicts with incompatible explicit grants on its ancestors and an
//   explicit grant on a.b conflicts with grants below it.
// - An owner never conflicts with itself.
// - FIFO: a request is granted only if it is compatible with every grant and
//   with every earlier waiter it is related to (same name, an ancestor or a
//   descendant). So a waiting parent is not starved by a stream of children,
//   nor a writer by readers; the head of a queue and the compatible requests
//   right behind it are granted together.
// - Conversions (an owner asking for a stronger mode on a lock it holds) go
//   ahead of every new request; among themselves they keep FIFO order.
// - A request that would wait first runs deadlock detection over the
//   wait-for graph (owner -> owners it waits for); if it would close a cycle
//   it fails with DEADLOCK naming the cycle, and nothing changes.
// - Releasing (or losing) a lock while a conversion of it waits turns the
//   conversion into a plain request for the wanted mode, keeping its place.
// - Fencing tokens: every new grant, and every conversion that gains a write
//   mode, takes the next revision as its token.
//
// Thread-safety: none (owned by the StateMachine on one thread).
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "core/lock_resource.h"
#include "core/modes.h"

namespace latchkey::core {

// A grant that changed hands: emitted for queued requests that were granted
// later (and for conversions), so the server can answer them.
struct GrantEvent {
  OwnerId who;
  std::string name;
  HeldGrant grant;
};

// A request waits behind a cacheable grant: ask its holder to downgrade to
// `downgrade_to` (NL = release). One per (grant, downgrade_to).
struct CallbackEvent {
  OwnerId holder;
  std::string name;
  HeldGrant grant;  // the grant called back (token, mode held)
  Mode wanted = Mode::kEX;
  Mode downgrade_to = Mode::kNL;
};

// The strongest mode covered by `held` that is compatible with `wanted`.
Mode DowngradeTarget(Mode held, Mode wanted);

struct AcquireRequest {
  OwnerId who;
  std::string name;
  Mode mode = Mode::kEX;
  bool try_only = false;
  bool reentrant = false;  // count nested acquisitions (else idempotent)
  uint64_t lock_ttl_ms = 0;
  bool set_value = false;  // on grant, write `value` (needs a write mode)
  std::string value;
  bool cacheable = false;  // the grant takes blocking callbacks
  // A retry of a request id already applied: a holder's covering grant is
  // reported without counting again or rewriting the value.
  bool retry = false;
};

struct LockPart {
  std::string name;
  Mode mode = Mode::kEX;
};

struct AcquireOutcome {
  enum class Kind { kGranted, kQueued, kBusy, kDeadlock, kOrder };
  Kind kind = Kind::kGranted;
  HeldGrant grant;      // kGranted
  std::string message;  // kBusy / kDeadlock: who is in the way
};

struct WaitEdge {
  OwnerId waiter;
  std::string name;  // what the waiter waits for
  Mode mode = Mode::kEX;
  OwnerId blocker;
};

class LockTable {
 public:
  LockTable() = default;
  LockTable(LockTable&&) noexcept = default;
  // Drops this table's contents before taking o's: the default would free
  // the block pool before the resources allocated in it.
  LockTable& operator=(LockTable&& o) noexcept;
  ~LockTable() = default;

  // `revision` is the state machine's counter; tokens are taken from it.
  AcquireOutcome Acquire(const AcquireRequest& req, uint64_t now_ms, uint64_t* revision);
  // All-or-nothing: grants every part at once or waits (as one request) until
  // it can. Parts must be distinct names none of which the owner holds.
  AcquireOutcome AcquireMany(const OwnerId& who, const std::vector<LockPart>& parts, bool try_only,
                             uint64_t lock_ttl_ms, uint64_t now_ms, uint64_t* revision);
  // Writes the lock value; the owner must hold the lock in a write mode.
  Status SetValue(const OwnerId& who, const std::string& name, std::string value,
                  uint64_t* revision);
  // Lock ordering: names under `prefix` get `rank`; an owner holding a lock
  // of a higher rank may not take one of a lower rank (FAILED_PRECONDITION).
  Status DeclareRank(const std::string& prefix, uint32_t rank);
  const std::map<std::string, uint32_t, std::less<>>& ranks() const { return ranks_; }
  // Decrements the count (all=true: drops it) and grants what became
  // grantable. NOT_HELD if the owner holds nothing there.
  Status Release(const OwnerId& who, const std::string& name, bool all, uint64_t* revision);
  // Downgrade in place (mode must be covered by the held mode).
  Status Downgrade(const OwnerId& who, const std::string& name, Mode mode, uint64_t* revision);
  // Withdraws a waiting request; false if not waiting.
  bool CancelWait(const OwnerId& who, const std::string& name, uint64_t* revision);
  // Moves a grant to another owner (a new token is issued).
  Status Transfer(const OwnerId& from, const OwnerId& to, const std::string& name, uint64_t now_ms,
                  uint64_t* revision);
  // Releases every grant and withdraws every wait of the session.
  void DropSession(uint64_t session, uint64_t* revision);
  // Expires the grant with `token` on `name` if its TTL ran out by now_ms.
  // Returns the owner that lost it.
  Result<OwnerId> ExpireGrant(const std::string& name, uint64_t token, uint64_t now_ms,
                              uint64_t* revision);

  // Events accumulated by the calls above; the caller drains them.
  std::vector<GrantEvent> TakeGrantEvents();
  std::vector<CallbackEvent> TakeCallbackEvents();

  // ---- Queries ----
  const Resource* Find(std::string_view name) const;
  const HeldGrant* FindGrant(const OwnerId& who, std::string_view name) const;
  bool IsWaiting(const OwnerId& who, std::string_view name) const;
  // The waiting request of `who` on `name` (an owner waits at most once per
  // name), or null.
  const WaitEntry* FindWait(std::string_view name, const OwnerId& who) const;
  // (name, grant) held by any owner of the session.
  std::vector<std::pair<std::string, std::pair<OwnerId, HeldGrant>>> HeldBySession(
      uint64_t session) const;
  // Grants whose TTL ended at or before now_ms: (name, token).
  std::vector<std::pair<std::string, uint64_t>> Expired(uint64_t now_ms) const;
  std::vector<WaitEdge> WaitForGraph() const;
  // Every name with state, ascending; iterating yields (LockName, Resource&).
  const NameIndex& resources() const { return resources_; }
  size_t grant_count() const { return grant_count_; }
  size_t waiter_count() const { return waiter_count_; }
  uint64_t next_seq() const { return next_seq_; }

  // ---- Snapshot support ----
  void RestoreGrant(const std::string& name, const OwnerId& who, const HeldGrant& g);
  void RestoreWaiter(const std::string& name, const WaitEntry& w);
  void RestoreValue(const std::string& name, std::string value, uint64_t token);
  void set_next_seq(uint64_t seq) { next_seq_ = seq; }
  // Time stamped on grants made by later calls (the current entry's time).
  void set_time(uint64_t now_ms) { grant_time_ms_ = now_ms; }

 private:
  struct OwnerState {
    explicit OwnerState(BlockPool* pool) : held(pool) {}
    NameIndex held;  // the Resources this owner holds a grant on, by name
    std::set<std::string> waiting;
  };

  // The resource of `name` (null if none) / created if absent / destroyed.
  Resource* Mut(std::string_view name) const { return resources_.Find(name); }
  Resource& Ensure(std::string_view name);
  void Drop(std::string_view name);

  // Owners whose grants keep `who` from holding `mode` on `name`.
  void HolderBlockers(const OwnerId& who, const std::string& name, Mode mode, bool first_only,
                      std::set<OwnerId>* out) const;
  // Owners of earlier related waiters that conflict with a request of `who`
  // for `mode` on `name` with arrival `seq` (conversion: only conversions).
  void WaiterBlockers(const OwnerId& who, const std::string& name, Mode mode, uint64_t seq,
                      bool conversion, bool first_only, std::set<OwnerId>* out) const;
  bool Blocked(const OwnerId& who, const std::string& name, Mode mode, uint64_t seq,
               bool conversion) const;
  // Cycle through `who` if it waited for `blockers`; the cycle as text.
  std::string FindCycle(const OwnerId& who, const std::set<OwnerId>& blockers) const;

  void AddGrant(const std::string& name, const OwnerId& who, const HeldGrant& g);
  void RemoveGrant(const std::string& name, const OwnerId& who);
  void AddWaiter(const std::string& name, WaitEntry w);
  void RemoveWaiter(const std::string& name, const OwnerId& who);
  // Grants every waiter related to `name` that has become grantable.
  void Reschedule(const std::string& name, uint64_t* revision);
  // A waiting conversion of a grant that just went away becomes a plain
  // request for the same mode, keeping its place in line.
  void DemoteConversion(const std::string& name, const OwnerId& who);
  void EraseIfIdle(const std::string& name);
  void AdjustAncestors(const std::string& name, int d_cr, int d_cw, int d_waiters);
  // Grants a waiting entry (and, for a group, every part of it).
  void GrantWaiter(const std::string& name, const WaitEntry& w, uint64_t* revision);
  bool GroupUnblocked(uint64_t group, const OwnerId& who) const;
  // Rank of a name (longest declared prefix), if any.
  std::optional<uint32_t> RankOf(std::string_view name) const;
  Status CheckOrder(const OwnerId& who, const std::string& name) const;
  // Blocking callbacks (lock_callbacks.cc): asks each cacheable holder that
  // blocks a waiter on `name`, or whose grant on `name` blocks a related
  // waiter, to downgrade (deduplicated); also for the names of grant events
  // from index `new_grants_from` on.
  void EmitCallbacks(const std::string& name, size_t new_grants_from = SIZE_MAX);

  // The lock blocks and the name indexes' chunks (core/block_pool.h); first
  // member, so it is destroyed after everything that allocated from it.
  std::unique_ptr<BlockPool> pool_ = std::make_unique<BlockPool>();
  OwnedNameIndex resources_{pool_.get()};
  std::map<std::string, uint32_t, std::less<>> ranks_;
  // group -> parts (name) of a waiting AcquireMany
  std::map<uint64_t, std::vector<std::string>> groups_;
  std::map<OwnerId, OwnerState> owners_;
  std::set<std::tuple<uint64_t, std::string, uint64_t>> ttl_deadlines_;  // (deadline, name, token)
  std::vector<GrantEvent> grant_events_;
  std::vector<CallbackEvent> callback_events_;
  size_t grant_count_ = 0;
  size_t waiter_count_ = 0;
  uint64_t next_seq_ = 1;
  uint64_t grant_time_ms_ = 0;
};

// "a.b.c" -> {"a", "a.b"} (strict ancestors, outermost first).
std::vector<std::string_view> Ancestors(std::string_view name);
std::string DescribeOwner(const OwnerId& who);

}  // namespace latchkey::core
