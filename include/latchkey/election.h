// latchkey::Election: leader election over a Latchkey lock, in the spirit of
// etcd's concurrency.Election and Curator's LeaderLatch
// (docs/design/0016-election.md).
//
// Election NAME is the lock `election.NAME`:
// - Campaign = Acquire EX with the candidate's value written as the lock
//   value block in the same grant. Candidates queue FIFO on the server, so
//   a campaign blocks until every earlier candidate led and left.
// - The term is the grant's fencing token: strictly increasing per election,
//   so it fences a deposed leader's writes (pass it to the guarded resource).
// - Leadership lasts until Resign, the end of the session (its lease ran
//   out: a crashed or partitioned leader is replaced after session_ttl), or
//   Close. Proclaim rewrites the value without a new term.
// - Leader() reads the holder and value (linearizable by default).
// - Observe() follows the election lock with a LockWatch (pushed by the
//   first reachable node of the client's endpoint list after every entry it
//   applies) and calls back on every change, in term order: no term is
//   skipped however short. A follower's events come after the leader's, as
//   with an etcd watch. Against a server without lock watches, or when no
//   node can be reached for observe_reconnect_for, it polls Leader()
//   instead, and changes faster than observe_interval are coalesced.
//
// Thread-safety: every method may be called from any thread. The Client
// must outlive the Election, and the Election its observers and Leadership
// guards.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "latchkey/client.h"
#include "latchkey/status.h"

namespace latchkey {

struct ElectionOptions {
  // The candidate inside the session ("" = the session itself). Two
  // Elections of one Client on the same name need different owners.
  std::string owner{};
  // How soon an observer notices Stop(), and how often it reads the leader
  // when it has to poll.
  std::chrono::milliseconds observe_interval{100};
  // Reads while polling (the pushed states are the watched node's).
  ReadConsistency observe_consistency = ReadConsistency::kLinearizable;
  // How long a pushed observer keeps reconnecting before it polls instead.
  std::chrono::milliseconds observe_reconnect_for{30'000};
};

struct LeaderInfo {
  std::string election;         // NAME
  std::string value;            // what the leader campaigned with / proclaimed
  uint64_t term = 0;            // the leader's fencing token
  uint64_t session_id = 0;      // the leader's session
  std::string owner;            // candidate inside that session
  std::string client_name;      // the leader client's name
  uint64_t elected_at_ms = 0;   // server time of the grant
  uint64_t value_revision = 0;  // changes on every Proclaim
  uint64_t server_time_ms = 0;  // server clock at the read
};

struct LeaderEvent {
  enum class Kind {
    kElected,     // a new term began (leader has the new leader)
    kProclaimed,  // same term, new value
    kVacant,      // nobody leads right now (leader is empty)
  };
  Kind kind = Kind::kElected;
  LeaderInfo leader;
};

std::string_view LeaderEventKindName(LeaderEvent::Kind kind);  // "elected", ...

// Stops its polling thread when destroyed (or on Stop). Move-only.
class ElectionObserver {
 public:
  ElectionObserver() = default;
  ElectionObserver(ElectionObserver&&) noexcept = default;
  ElectionObserver& operator=(ElectionObserver&&) noexcept;
  ~ElectionObserver();
  void Stop();  // returns after the last callback finished; idempotent
  struct State;

 private:
  friend class Election;
  std::shared_ptr<State> state_;
  std::thread thread_;
};

class Election;

// RAII leadership: resigns when destroyed unless already resigned or lost.
class Leadership {
 public:
  Leadership(Leadership&& other) noexcept;
  Leadership& operator=(Leadership&& other) noexcept;
  Leadership(const Leadership&) = delete;
  Leadership& operator=(const Leadership&) = delete;
  ~Leadership();

  uint64_t term() const { return term_; }
  Status Proclaim(std::string_view value);
  // OK while this leadership may still hold (see Election::Check).
  Status Check() const;
  Status Resign();

 private:
  friend class Election;
  Leadership(Election* election, uint64_t term) : election_(election), term_(term) {}
  Election* election_ = nullptr;
  uint64_t term_ = 0;
};

class Election {
 public:
  // NAME follows the lock-name syntax (docs/protocol.md); the lock is
  // "election." + NAME.
  Election(Client& client, std::string name, ElectionOptions options = {});
  Election(const Election&) = delete;
  Election& operator=(const Election&) = delete;

  static std::string LockName(std::string_view name) { return "election." + std::string(name); }
  const std::string& name() const { return name_; }

  // Blocks until elected; returns the term. timeout 0 = without limit.
  // TIMEOUT: not elected in time (the candidacy is withdrawn).
  // SESSION_EXPIRED: the session ended; this candidate can never lead on
  // this Client again (connect a new one). Campaigning while leading returns
  // the current term and writes `value`. To give a campaign up, pass a
  // timeout or Close the Client (Resign only ends an elected leadership).
  Result<uint64_t> Campaign(std::string_view value,
                            std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // Campaign, then a guard that resigns when it goes out of scope.
  Result<Leadership> Lead(std::string_view value,
                          std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // Gives leadership up; the next candidate in line is elected at once.
  // NOT_HELD if this candidate does not lead (never elected, or lost it).
  Status Resign();
  // Rewrites the leader's value (same term). NOT_HELD if not the leader.
  Status Proclaim(std::string_view value);
  // The current leader; NOT_FOUND when nobody leads.
  Result<LeaderInfo> Leader(ReadConsistency consistency = ReadConsistency::kLinearizable);
  // Local check, no round trip: OK while this candidate was elected and
  // neither resigned nor saw its session or grant end. FAILED_PRECONDITION
  // when not elected; SESSION_EXPIRED / NOT_HELD when leadership ended.
  Status Check() const;
  // Asks the server (linearizable): OK if this candidate leads in term().
  Status Verify();
  // Term of this candidate's leadership, 0 when it does not lead.
  uint64_t term() const { return term_.load(); }

  // Calls `on_change` (on the observer's own thread) with the current state
  // first, then with every change seen, in term order.
  ElectionObserver Observe(std::function<void(const LeaderEvent&)> on_change);

 private:
  Result<LeaderInfo> LeaderFromLock(const LockInfo& l) const;
  Client& client_;
  const std::string name_;
  const std::string lock_;
  const ElectionOptions options_;
  std::atomic<uint64_t> term_{0};
};

}  // namespace latchkey
