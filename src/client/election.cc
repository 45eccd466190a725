// latchkey::Election (include/latchkey/election.h): leader election built on
// an exclusive lock and its value block; no server command of its own.
#include "latchkey/election.h"

#include <optional>
#include <utility>

#include "latchkey/watch.h"

namespace latchkey {

std::string_view LeaderEventKindName(LeaderEvent::Kind kind) {
  switch (kind) {
    case LeaderEvent::Kind::kElected: return "elected";
    case LeaderEvent::Kind::kProclaimed: return "proclaimed";
    case LeaderEvent::Kind::kVacant: return "vacant";
  }
  return "unknown";
}

// ---- Observer ------------------------------------------------------------------

struct ElectionObserver::State {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
};

ElectionObserver& ElectionObserver::operator=(ElectionObserver&& other) noexcept {
  if (this != &other) {
    Stop();
    state_ = std::move(other.state_);
    thread_ = std::move(other.thread_);
  }
  return *this;
}

ElectionObserver::~ElectionObserver() {
  Stop();
}

void ElectionObserver::Stop() {
  if (state_) {
    std::lock_guard<std::mutex> g(state_->mu);
    state_->stop = true;
    state_->cv.notify_all();
  }
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();  // Stop from inside a callback: the loop ends by itself
    } else {
      thread_.join();
    }
  }
}

// ---- Leadership guard ------------------------------------------------------------

Leadership::Leadership(Leadership&& other) noexcept
    : election_(std::exchange(other.election_, nullptr)), term_(std::exchange(other.term_, 0)) {}

Leadership& Leadership::operator=(Leadership&& other) noexcept {
  if (this != &other) {
    if (election_ != nullptr) (void)Resign();
    election_ = std::exchange(other.election_, nullptr);
    term_ = std::exchange(other.term_, 0);
  }
  return *this;
}

Leadership::~Leadership() {
  if (election_ != nullptr) (void)Resign();
}

Status Leadership::Proclaim(std::string_view value) {
  if (election_ == nullptr) return Status(Code::kNotHeld, "leadership was resigned");
  return election_->Proclaim(value);
}

Status Leadership::Check() const {
  if (election_ == nullptr) return Status(Code::kNotHeld, "leadership was resigned");
  if (election_->term() != term_) {
    return Status(Code::kNotHeld, "leadership of term " + std::to_string(term_) + " ended");
  }
  return election_->Check();
}

Status Leadership::Resign() {
  Election* e = std::exchange(election_, nullptr);
  if (e == nullptr || e->term() != term_) return Status();  // already over
  if (Status s = e->Check(); !s.ok()) return s;  // e.g. the session is gone: nothing is held
  return e->Resign();
}

// ---- Election ----------------------------------------------------------------------

Election::Election(Client& client, std::string name, ElectionOptions options)
    : client_(client),
      name_(std::move(name)),
      lock_(LockName(name_)),
      options_(std::move(options)) {}

Result<uint64_t> Election::Campaign(std::string_view value, std::chrono::milliseconds timeout) {
  AcquireOptions ao;
  ao.mode = LockMode::kEX;
  ao.owner = options_.owner;
  ao.wait_timeout = timeout;
  ao.value = std::string(value);
  Result<Grant> g = client_.Acquire(lock_, ao);
  if (!g.ok()) {
    const Status& s = g.status();
    switch (s.code()) {
      case Code::kTimeout:
        return Status(Code::kTimeout, "not elected leader of '" + name_ + "' within the timeout");
      case Code::kSessionExpired:
        return Status(Code::kSessionExpired, "campaign for '" + name_ +
                                                 "' ended: the session is lost (" + s.message() +
                                                 "); connect a new client to run again");
      default: return s;
    }
  }
  term_ = g->fencing_token;
  return g->fencing_token;
}

Result<Leadership> Election::Lead(std::string_view value, std::chrono::milliseconds timeout) {
  Result<uint64_t> t = Campaign(value, timeout);
  if (!t.ok()) return t.status();
  return Leadership(this, *t);
}

Status Election::Resign() {
  Status s = client_.Release(lock_, options_.owner);
  if (s.code() == Code::kMaybeApplied) {  // the leader failed over: retry once
    s = client_.Release(lock_, options_.owner);
    if (s.code() == Code::kNotHeld) s = Status();
  }
  term_ = 0;
  if (s.code() == Code::kNotHeld) {
    return Status(Code::kNotHeld, "not the leader of '" + name_ + "' (never elected, or lost it)");
  }
  return s;
}

Status Election::Proclaim(std::string_view value) {
  Status s = client_.SetLockValue(lock_, value, options_.owner);
  if (s.code() == Code::kNotHeld) {
    term_ = 0;
    return Status(Code::kNotHeld, "not the leader of '" + name_ + "': cannot proclaim");
  }
  return s;
}

Result<LeaderInfo> Election::Leader(ReadConsistency consistency) {
  Result<LockInfo> l = client_.GetLock(lock_, consistency);
  if (!l.ok()) return l.status();
  return LeaderFromLock(*l);
}

Status Election::Check() const {
  const uint64_t t = term_.load();
  if (t == 0) return Status(Code::kFailedPrecondition, "not the leader of '" + name_ + "'");
  if (Status s = client_.session_status(); !s.ok()) {
    return Status(Code::kSessionExpired,
                  "leadership of '" + name_ + "' ended: session lost (" + s.message() + ")");
  }
  for (const LockLost& lost : client_.lost_locks()) {
    if (lost.name == lock_ && lost.owner == options_.owner && lost.fencing_token == t) {
      return Status(Code::kNotHeld, "leadership of '" + name_ + "' ended: " + lost.reason);
    }
  }
  return Status();
}

Status Election::Verify() {
  if (Status s = Check(); !s.ok()) return s;
  const uint64_t t = term_.load();
  Result<LeaderInfo> l = Leader(ReadConsistency::kLinearizable);
  if (!l.ok() && l.status().code() != Code::kNotFound) return l.status();
  if (l.ok() && l->term == t && l->session_id == client_.session_id() &&
      l->owner == options_.owner) {
    return Status();
  }
  uint64_t expected = t;
  term_.compare_exchange_strong(expected, 0);
  return Status(Code::kNotHeld,
                "no longer the leader of '" + name_ + "' (term " + std::to_string(t) + " ended)");
}

namespace {

// Turns successive leader reads into events: elected on a newer term,
// proclaimed on a newer value in the same term, vacant when the lock is
// free after a leader; never back to an older term (a stale read).
class LeaderEventFilter {
 public:
  explicit LeaderEventFilter(std::string election) : election_(std::move(election)) {}

  std::optional<LeaderEvent> Feed(const Result<LeaderInfo>& l) {
    std::optional<LeaderEvent> ev;
    if (l.ok()) {
      if (first_ || l->term > last_term_) {
        ev = LeaderEvent{LeaderEvent::Kind::kElected, *l};
      } else if (had_leader_ && l->term == last_term_ && l->value_revision > last_value_rev_) {
        ev = LeaderEvent{LeaderEvent::Kind::kProclaimed, *l};
      }  // else an older state (a stale serializable read): never go back
      if (ev) {
        had_leader_ = true;
        last_term_ = l->term;
        last_value_rev_ = l->value_revision;
      }
    } else if (l.status().code() == Code::kNotFound && (first_ || had_leader_)) {
      LeaderEvent vacant;
      vacant.kind = LeaderEvent::Kind::kVacant;
      vacant.leader.election = election_;
      ev = std::move(vacant);
      had_leader_ = false;
    }
    if (ev) first_ = false;
    return ev;
  }

 private:
  const std::string election_;
  bool first_ = true;
  bool had_leader_ = false;
  uint64_t last_term_ = 0;
  uint64_t last_value_rev_ = 0;
};

}  // namespace

Result<LeaderInfo> Election::LeaderFromLock(const LockInfo& l) const {
  if (!l.held) return NotFound("election '" + name_ + "' has no leader");
  LeaderInfo info;
  info.election = name_;
  info.value = l.value;
  info.term = l.holder.fencing_token;
  info.session_id = l.holder.session_id;
  info.owner = l.holder.owner;
  info.client_name = l.holder.client_name;
  info.elected_at_ms = l.holder.granted_at_ms;
  info.value_revision = l.value_token;
  info.server_time_ms = l.server_time_ms;
  return info;
}

ElectionObserver Election::Observe(std::function<void(const LeaderEvent&)> on_change) {
  ElectionObserver obs;
  obs.state_ = std::make_shared<ElectionObserver::State>();
  auto state = obs.state_;
  obs.thread_ = std::thread([this, state, on_change = std::move(on_change)] {
    LeaderEventFilter filter(name_);
    auto deliver = [&](const Result<LeaderInfo>& l) {
      if (std::optional<LeaderEvent> ev = filter.Feed(l)) on_change(*ev);
    };
    auto stopped = [&] {
      std::lock_guard<std::mutex> g(state->mu);
      return state->stop;
    };
    // Pushed: the lock's state after every entry the watched node applies,
    // so no term is skipped. observe_interval bounds how long Stop waits.
    LockWatchOptions wo;
    wo.endpoint = client_.endpoint();
    wo.auth_token = client_.auth_token();
    wo.name = lock_;
    wo.reconnect_for = options_.observe_reconnect_for;
    if (auto watch = LockWatch::Open(wo); watch.ok()) {
      while (!stopped()) {
        Result<LockInfo> l = (*watch)->Next(options_.observe_interval);
        if (l.ok()) {
          deliver(LeaderFromLock(*l));
        } else if (l.status().code() != Code::kTimeout) {
          break;  // no node reachable for observe_reconnect_for: poll instead
        }
      }
    }
    // Polled (a server without lock watches, or none reachable): changes
    // faster than observe_interval are coalesced.
    while (!stopped()) {
      deliver(Leader(options_.observe_consistency));
      if (client_.session_gone()) return;  // no read can succeed any more
      std::unique_lock<std::mutex> lk(state->mu);
      state->cv.wait_for(lk, options_.observe_interval, [&] { return state->stop; });
    }
  });
  return obs;
}

}  // namespace latchkey
