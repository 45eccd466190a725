// nemesis_watcher: one watch client of the nemesis (issue 7, design records
// 0011 and 0012). It watches the object prefix from a revision with a
// latchkey::Watch and records every event it returns (op "event": key,
// value, revision) in a JSONL history, across the faults: the Watch
// reconnects by itself when its node dies or is cut off; every 1-4 s (from
// the seed) this process also drops the connection itself or closes the
// watch and opens a new one from the last revision + 1 (a client resuming).
// Notes (op watch-open / watch-drop / watch-error) say what happened.
// Runs until SIGTERM.
//
//   nemesis_watcher ENDPOINTS PREFIX PROCESS HISTORY SEED FROM_REVISION
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "checkers/history.h"
#include "latchkey/watch.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using checkers::Event;
using checkers::EventType;
using SteadyClock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};

void OnTerm(int) {
  g_stop = true;
}

class Watcher {
 public:
  Watcher(std::string endpoints, std::string prefix, int64_t process, const std::string& history,
          uint64_t seed, uint64_t from)
      : endpoints_(std::move(endpoints)),
        prefix_(std::move(prefix)),
        process_(process),
        history_(history),
        rng_(seed),
        next_(from) {}

  int Run() {
    if (!history_.ok()) {
      std::fprintf(stderr, "cannot open history\n");
      return 2;
    }
    auto next_fault = SteadyClock::now() + Pause();
    while (!g_stop) {
      if (!watch_ && !Open()) {
        std::this_thread::sleep_for(100ms);  // back off: no node reachable
        continue;
      }
      auto ev = watch_->Next(200ms);
      if (ev.ok()) {
        Event e;
        e.type = EventType::kInfo;
        e.process = process_;
        e.op = "event";
        e.key = ev->key;
        e.value = ev->value;
        e.revision = ev->mod_revision;
        if (ev->state != ObjectState::kAvailable) e.error = std::string(ObjectStateName(ev->state));
        history_.Append(e);
        next_ = ev->mod_revision + 1;
      } else if (ev.status().code() != Code::kTimeout) {
        Note("watch-error", next_, ev.status().ToString());
        watch_.reset();  // resume from the last revision seen + 1
      }
      if (SteadyClock::now() >= next_fault && watch_) {
        next_fault = SteadyClock::now() + Pause();
        if (std::uniform_int_distribution<int>(0, 1)(rng_) == 0) {
          Note("watch-drop", next_, "connection dropped");
          watch_->DropConnectionForTesting();
        } else {
          watch_.reset();  // reopened from next_ by the next round
        }
      }
    }
    return 0;
  }

 private:
  std::chrono::milliseconds Pause() {
    return std::chrono::milliseconds(std::uniform_int_distribution<int>(1000, 4000)(rng_));
  }

  void Note(const std::string& op, uint64_t revision, const std::string& error) {
    Event e;
    e.type = EventType::kInfo;
    e.process = process_;
    e.op = op;
    e.key = prefix_;
    e.revision = revision;
    e.error = error;
    history_.Append(e);
  }

  bool Open() {
    WatchOptions o;
    o.endpoint = endpoints_;
    o.key = prefix_;
    o.prefix = true;
    o.from_revision = next_;
    o.connect_timeout = 1s;
    o.reconnect_for = 10s;
    auto w = Watch::Open(o);
    if (!w.ok()) {
      Note("watch-error", next_, "open: " + w.status().ToString());
      return false;
    }
    watch_ = std::move(w.value());
    Note("watch-open", next_, {});
    return true;
  }

  std::string endpoints_, prefix_;
  int64_t process_;
  checkers::HistoryWriter history_;
  std::mt19937_64 rng_;
  uint64_t next_;
  std::unique_ptr<Watch> watch_;
};

}  // namespace
}  // namespace latchkey

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: %s ENDPOINTS PREFIX PROCESS HISTORY SEED FROM_REVISION\n",
                 argv[0]);
    return 64;
  }
  std::signal(SIGPIPE, SIG_IGN);
  const pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) return 0;
  struct sigaction sa {};
  sa.sa_handler = latchkey::OnTerm;
  sigaction(SIGTERM, &sa, nullptr);
  latchkey::Watcher w(argv[1], argv[2], std::stoll(argv[3]), argv[4], std::stoull(argv[5]),
                      std::stoull(argv[6]));
  return w.Run();
}
