// nemesis_worker: one client process of the nemesis (design record 0011).
// It runs a Latchkey client against the cluster and the fenced resource
// served by the test, and records every operation in a JSONL history:
// - counter cycle on LOCK: acquire; resource begin; resource counter
//   increment (read, work, write, all with the fencing token: op "incr" on
//   key "resource.counter"); increment of the counter kept in LOCK's value
//   block (GetLock + SetLockValue: op "incr" on key LOCK); resource end;
//   release.
// - register ops on REG's value block: read (GetLock, linearizable), write
//   (Acquire EX with the value, then release), cas (acquire, read, write if
//   it matches, release).
// - with OBJECTS=1, object store ops on a few keys under kObjPrefix: get
//   (linearizable, with the object's mod_revision), put (with the write's
//   revision), txn-cas (Txn: value == last value this process saw -> put,
//   else get), every written value unique.
// Runs until SIGTERM. The test may SIGSTOP it (a paused client).
//
//   nemesis_worker ENDPOINTS RESOURCE_SOCKET PROCESS HISTORY SEED SESSION_TTL_MS [OBJECTS]
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "checkers/fenced_resource.h"
#include "checkers/history.h"
#include "fault/nemesis_keys.h"
#include "latchkey/client.h"
#include "latchkey/objects.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using checkers::Event;
using checkers::EventType;

constexpr const char* kLock = "nemesis.lock";
constexpr const char* kReg = "nemesis.reg";
constexpr const char* kResourceKey = "resource.counter";

std::atomic<bool> g_stop{false};

void OnTerm(int) {
  g_stop = true;
}

class Worker {
 public:
  Worker(std::string endpoints, std::string resource, int64_t process, const std::string& history,
         uint64_t seed, int ttl_ms, bool objects)
      : objects_(objects),
        endpoints_(std::move(endpoints)),
        resource_path_(std::move(resource)),
        process_(process),
        history_(history),
        rng_(seed),
        ttl_(ttl_ms) {}

  int Run() {
    if (!history_.ok()) {
      std::fprintf(stderr, "cannot open history\n");
      return 2;
    }
    if (!resource_.Connect(resource_path_)) {
      std::fprintf(stderr, "cannot reach the resource at %s\n", resource_path_.c_str());
      return 2;
    }
    while (!g_stop) {
      if (!client_ || !client_->session_status().ok()) {
        if (!Connect()) continue;
      }
      const int pick = std::uniform_int_distribution<int>(0, 99)(rng_);
      if (pick < (objects_ ? 40 : 50)) {
        CounterCycle();
      } else if (!objects_ || pick < 65) {
        RegisterOp();
      } else {
        ObjectOp();
      }
    }
    if (client_) (void)client_->Close();
    return 0;
  }

 private:
  bool Connect() {
    client_.reset();
    ClientOptions o;
    o.endpoint = endpoints_;
    o.client_name = "nemesis-" + std::to_string(process_);
    o.session_ttl = ttl_;
    o.connect_timeout = 1s;
    auto sid = std::make_shared<std::atomic<uint64_t>>(0);
    checkers::HistoryWriter* h = &history_;
    const int64_t p = process_;
    o.on_session_lost = [h, sid, p](const Status& st) {
      Event e;
      e.type = EventType::kInfo;
      e.process = p;
      e.op = "session_lost";
      e.session = sid->load();
      e.error = st.ToString();
      h->Append(e);
    };
    auto c = Client::Connect(o);
    if (!c.ok()) {
      std::this_thread::sleep_for(100ms);  // back off before the next attempt (cluster down)
      return false;
    }
    client_ = std::move(c.value());
    session_ = client_->session_id();
    sid->store(session_);
    return true;
  }

  void Record(EventType t, const std::string& op, const std::string& key,
              const std::string& value = {}, uint64_t token = 0, const std::string& error = {},
              const std::string& expect = {}) {
    Event e;
    e.type = t;
    e.process = process_;
    e.op = op;
    e.key = key;
    e.value = value;
    e.expect = expect;
    e.token = token;
    e.session = session_;
    e.error = error;
    history_.Append(e);
  }
  // Outcome of a failed write: definitely not applied, or unknown.
  static EventType WriteFailure(const Status& st) {
    switch (st.code()) {
      case Code::kTimeout:
      case Code::kLockBusy:
      case Code::kNotHeld:
      case Code::kInvalidArgument:
      case Code::kFailedPrecondition:
      case Code::kCancelled: return EventType::kFail;
      default: return EventType::kInfo;  // MAYBE_APPLIED, UNAVAILABLE, SESSION_EXPIRED, ...
    }
  }

  // "" = 0. Anything else that is not a number (a corrupted value block)
  // restarts the count at a value no correct history has: the counter
  // checker then reports it.
  static int64_t Counter(const std::string& v) {
    if (v.empty()) return 0;
    int64_t out = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    return ec == std::errc() && p == v.data() + v.size() ? out : -1000000;
  }

  std::optional<uint64_t> Acquire(const char* name, std::optional<std::string> value) {
    AcquireOptions ao;
    ao.wait_timeout = 3s;
    ao.value = value;
    Record(EventType::kInvoke, value ? "write" : "acquire", name, value.value_or(""));
    auto g = client_->Acquire(name, ao);
    if (!g.ok()) {
      const EventType outcome = WriteFailure(g.status());
      Record(outcome, value ? "write" : "acquire", name, {}, 0, g.status().ToString());
      // It may have been granted: let it go, as a careful user would (a
      // later Acquire by a holder returns the old grant without writing its
      // value).
      if (outcome == EventType::kInfo && client_->session_status().ok()) Release(name);
      return std::nullopt;
    }
    Record(EventType::kOk, value ? "write" : "acquire", name, value.value_or(""), g->fencing_token);
    return g->fencing_token;
  }

  void Release(const char* name) {
    Record(EventType::kInvoke, "release", name);
    Status r = client_->Release(name);
    bool retried = false;
    for (int i = 0; i < 20 && (r.code() == Code::kMaybeApplied || r.code() == Code::kUnavailable);
         ++i) {
      retried = true;
      r = client_->Release(name);
      if (r.code() == Code::kNotHeld) r = Status();  // the earlier attempt applied
    }
    if (r.ok() && !retried) {
      Record(EventType::kOk, "release", name);
    } else if (r.ok()) {
      // Released, but when (and whether the lock was still held) is not
      // certain: not evidence for the lock-exclusive checker.
      Record(EventType::kInfo, "release", name, {}, 0, "released after retries");
    } else {
      Record(WriteFailure(r), "release", name, {}, 0, r.ToString());
    }
  }

  void CounterCycle() {
    auto token = Acquire(kLock, std::nullopt);
    if (!token) return;
    auto begin = resource_.Call(process_, kResourceKey, *token, "begin");
    if (begin && begin->accepted) {
      // The resource counter, fenced by the token.
      Record(EventType::kInvoke, "incr", kResourceKey, {}, *token);
      auto rd = resource_.Call(process_, kResourceKey, *token, "read");
      if (!rd || !rd->accepted) {
        Record(EventType::kFail, "incr", kResourceKey, {}, *token, "REJECTED read");
      } else {
        const int64_t next = Counter(rd->value) + 1;
        std::this_thread::sleep_for(
            std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 5)(rng_)));  // work
        auto wr = resource_.Call(process_, kResourceKey, *token, "write", std::to_string(next));
        if (wr && wr->accepted) {
          Record(EventType::kOk, "incr", kResourceKey, std::to_string(next), *token);
        } else {
          Record(EventType::kFail, "incr", kResourceKey, {}, *token, "REJECTED write");
        }
      }
      // The counter in Latchkey's own lock value block.
      Record(EventType::kInvoke, "incr", kLock, {}, *token);
      auto info = client_->GetLock(kLock);
      if (!info.ok()) {
        Record(EventType::kFail, "incr", kLock, {}, *token, info.status().ToString());
      } else {
        const int64_t next = Counter(info->value) + 1;
        Status st = client_->SetLockValue(kLock, std::to_string(next));
        if (st.ok()) {
          Record(EventType::kOk, "incr", kLock, std::to_string(next), *token);
        } else {
          Record(WriteFailure(st), "incr", kLock, {}, *token, st.ToString());
        }
      }
      resource_.Call(process_, kResourceKey, *token, "end");
    }
    Release(kLock);
  }

  void RegisterOp() {
    const int r = std::uniform_int_distribution<int>(0, 99)(rng_);
    if (r < 40) {
      Record(EventType::kInvoke, "read", kReg);
      auto info = client_->GetLock(kReg);
      if (info.ok()) {
        last_seen_ = info->value;
        Record(EventType::kOk, "read", kReg, info->value);
      } else {
        Record(EventType::kFail, "read", kReg, {}, 0, info.status().ToString());
      }
      return;
    }
    const std::string value = "p" + std::to_string(process_) + "-" + std::to_string(++writes_);
    if (r < 70) {
      if (Acquire(kReg, value)) {
        last_seen_ = value;
        Release(kReg);
      }
      return;
    }
    // cas(last value this process saw -> value) under the lock.
    if (!Acquire(kReg, std::nullopt)) return;
    const std::string expect = last_seen_;
    Record(EventType::kInvoke, "cas", kReg, value, 0, {}, expect);
    auto info = client_->GetLock(kReg);
    if (!info.ok()) {
      Record(EventType::kFail, "cas", kReg, {}, 0, info.status().ToString());
    } else if (info->value != expect) {
      last_seen_ = info->value;
      Record(EventType::kFail, "cas", kReg, {}, 0, "mismatch: found \"" + info->value + "\"");
    } else {
      Status st = client_->SetLockValue(kReg, value);
      if (st.ok()) {
        last_seen_ = value;
        Record(EventType::kOk, "cas", kReg);
      } else {
        Record(WriteFailure(st), "cas", kReg, {}, 0, st.ToString());
      }
    }
    Release(kReg);
  }

  // Object store ops (see the header comment). Write failures are unknown
  // unless the request was refused before it was proposed.
  static EventType ObjectWriteFailure(const Status& st) {
    return st.code() == Code::kInvalidArgument || st.code() == Code::kFailedPrecondition
               ? EventType::kFail
               : EventType::kInfo;
  }
  void RecordObj(EventType t, const std::string& op, const std::string& key,
                 const std::string& value, uint64_t revision, const std::string& error = {},
                 const std::string& expect = {}) {
    Event e;
    e.type = t;
    e.process = process_;
    e.op = op;
    e.key = key;
    e.value = value;
    e.expect = expect;
    e.session = session_;
    e.error = error;
    e.revision = revision;
    history_.Append(e);
  }

  void ObjectOp() {
    Objects objects(*client_);
    const std::string key =
        std::string(nemesis::kObjPrefix) +
        std::to_string(std::uniform_int_distribution<int>(0, nemesis::kObjKeys - 1)(rng_));
    const int r = std::uniform_int_distribution<int>(0, 99)(rng_);
    if (r < 40) {
      RecordObj(EventType::kInvoke, "get", key, {}, 0);
      auto o = objects.Get(key);
      if (o.ok()) {
        last_obj_[key] = o->value;
        RecordObj(EventType::kOk, "get", key, o->value, o->mod_revision);
      } else {
        RecordObj(EventType::kFail, "get", key, {}, 0, o.status().ToString());
      }
      return;
    }
    const std::string value = "p" + std::to_string(process_) + "-o" + std::to_string(++writes_);
    if (r < 70) {
      RecordObj(EventType::kInvoke, "put", key, value, 0);
      auto rev = objects.Put(key, value);
      if (rev.ok()) {
        last_obj_[key] = value;
        RecordObj(EventType::kOk, "put", key, value, *rev);
      } else {
        RecordObj(ObjectWriteFailure(rev.status()), "put", key, {}, 0, rev.status().ToString());
      }
      return;
    }
    const std::string expect = last_obj_[key];
    TxnRequest t;
    t.compares.push_back(expect.empty() ? Compare::Version(key, Compare::Op::kEq, 0)
                                        : Compare::Value(key, Compare::Op::kEq, expect));
    t.then_ops.push_back(TxnOp::Put(key, value));
    t.else_ops.push_back(TxnOp::Get(key));
    RecordObj(EventType::kInvoke, "txn-cas", key, value, 0, {}, expect);
    auto res = objects.Txn(t);
    if (!res.ok()) {
      RecordObj(ObjectWriteFailure(res.status()), "txn-cas", key, {}, 0, res.status().ToString());
    } else if (res->succeeded) {
      last_obj_[key] = value;
      RecordObj(EventType::kOk, "txn-cas", key, value, res->revision);
    } else {
      const std::string found = res->gets.empty() ? std::string("?") : res->gets[0].value;
      if (!res->gets.empty()) last_obj_[key] = found;
      RecordObj(EventType::kFail, "txn-cas", key, {}, 0, "mismatch: found \"" + found + "\"");
    }
  }

  bool objects_ = false;
  std::map<std::string, std::string> last_obj_;
  std::string endpoints_, resource_path_;
  int64_t process_;
  checkers::HistoryWriter history_;
  checkers::ResourceClient resource_;
  std::mt19937_64 rng_;
  std::chrono::milliseconds ttl_;
  std::unique_ptr<Client> client_;
  uint64_t session_ = 0;
  std::string last_seen_;
  uint64_t writes_ = 0;
};

}  // namespace
}  // namespace latchkey

int main(int argc, char** argv) {
  if (argc != 7 && argc != 8) {
    std::fprintf(stderr,
                 "usage: %s ENDPOINTS RESOURCE_SOCKET PROCESS HISTORY SEED SESSION_TTL_MS "
                 "[OBJECTS]\n",
                 argv[0]);
    return 64;
  }
  std::signal(SIGPIPE, SIG_IGN);
  // Never outlive the test (e.g. killed by a ctest timeout).
  const pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) return 0;
  struct sigaction sa {};
  sa.sa_handler = latchkey::OnTerm;
  sigaction(SIGTERM, &sa, nullptr);
  latchkey::Worker w(argv[1], argv[2], std::stoll(argv[3]), argv[4], std::stoull(argv[5]),
                     std::stoi(argv[6]), argc == 8 && std::string(argv[7]) == "1");
  return w.Run();
}
