#include "fault/nemesis.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "checkers/fenced_resource.h"
#include "checkers/history.h"
#include "checkers/linearizability.h"
#include "fault/nemesis_cluster.h"
#include "fault/nemesis_keys.h"
#include "fault/nemesis_objects.h"
#include "latchkey/client.h"
#include "testlib/server_process.h"

namespace latchkey::testing {

namespace {

using namespace std::chrono_literals;
using checkers::CheckResult;
using checkers::EventType;
using SteadyClock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

constexpr const char* kLock = "nemesis.lock";
constexpr const char* kReg = "nemesis.reg";
constexpr const char* kResourceKey = "resource.counter";

// A counter value ("" = 0); nullopt if it is not a number (reported).
std::optional<int64_t> ParseCounter(const std::string& v) {
  if (v.empty()) return 0;
  int64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
  return out;
}

// A worker process pid per process number (1-based), SIGSTOP/SIGCONT-able.
struct Workers {
  std::vector<pid_t> pids;
  std::vector<bool> stopped;
  void Stop(size_t k) {
    if (pids[k] > 0) kill(pids[k], SIGSTOP);
    stopped[k] = true;
  }
  void Cont(size_t k) {
    if (pids[k] > 0) kill(pids[k], SIGCONT);
    stopped[k] = false;
  }
  // Notes (in *deaths) and forgets every worker that has exited: none should
  // before Terminate. `mu` guards pids against the HolderTrap's thread.
  void Reap(std::mutex& mu, std::vector<std::string>* deaths) {
    for (size_t k = 1; k < pids.size(); ++k) {
      const std::optional<std::string> how = ReapIfExited(pids[k]);
      if (!how) continue;
      deaths->push_back("worker " + std::to_string(k) + " " + *how);
      std::lock_guard<std::mutex> lk(mu);
      pids[k] = -1;
    }
  }
  // SIGTERM to every worker, and each must exit with status 0 within 15 s;
  // those that do not are noted in *deaths (and killed if they hang).
  void Terminate(std::mutex& mu, std::vector<std::string>* deaths) {
    for (size_t k = 1; k < pids.size(); ++k) {
      if (pids[k] > 0) kill(pids[k], SIGTERM);
    }
    for (size_t k = 1; k < pids.size(); ++k) {
      if (pids[k] <= 0) continue;
      if (auto bad = AwaitCleanExit(pids[k], 15s)) {
        deaths->push_back("worker " + std::to_string(k) + " " + *bad);
      }
      std::lock_guard<std::mutex> lk(mu);
      pids[k] = -1;
    }
  }
};

// Catches the next worker that reads the counter in the fenced resource and
// SIGSTOPs it before it hears the answer: it will write back value + 1 after
// it wakes up, whatever happened meanwhile.
struct HolderTrap {
  std::mutex mu;
  bool armed = false;
  int64_t caught_process = -1;
  uint64_t caught_token = 0;
  std::atomic<uint64_t> max_begin_token{0};  // highest token that entered
  std::atomic<uint64_t> max_write_token{0};  // highest token that wrote the counter
  std::vector<pid_t>* pids = nullptr;
};

void WriteResourceLog(const std::vector<checkers::ResourceEntry>& log, const std::string& path) {
  std::ofstream f(path);
  for (const auto& e : log) {
    f << "{\"seq\":" << e.seq << ",\"time\":" << e.time << ",\"process\":" << e.process
      << ",\"key\":\"" << e.key << "\",\"token\":" << e.token << ",\"op\":\"" << e.op
      << "\",\"value\":\"" << e.value << "\",\"accepted\":" << (e.accepted ? "true" : "false")
      << "}\n";
  }
}

}  // namespace

bool NemesisReport::checkers_ok() const {
  for (const auto& r : results) {
    if (!r.ok()) return false;
  }
  return !results.empty();
}

std::string NemesisReport::Explain() const {
  std::ostringstream o;
  o << "nemesis seed=" << seed << " (replay: LATCHKEY_NEMESIS_SEED=" << seed << ")"
    << " network=" << network << " ran " << seconds << " s\n";
  if (!setup_error.empty()) o << "SETUP FAILED: " << setup_error << "\n";
  o << "schedule:\n";
  for (const auto& s : schedule) o << "  " << s << "\n";
  o << "workload: " << ok_acquires << " grants, " << ok_increments << " acknowledged increments, "
    << ok_register_ops << " register ops, " << sessions_lost << " sessions lost, "
    << rejected_by_fencing << " requests refused by fencing, " << holder_pauses
    << " holders paused inside, " << ok_object_ops << " object ops, " << watch_events
    << " watch events\n";
  if (!convergence.empty()) o << "NOT CONVERGED: " << convergence << "\n";
  for (const auto& d : node_deaths) o << "NODE DIED (not killed by the nemesis): " << d << "\n";
  for (const auto& d : client_deaths)
    o << "CLIENT DIED (not stopped by the nemesis): " << d << "\n";
  o << "checkers:\n";
  for (const auto& r : results) o << "  " << r.Summary() << "\n";
  if (!history_dir.empty()) o << "histories kept in " << history_dir << "\n";
  return o.str();
}

uint64_t SeedFromEnv() {
  if (const char* s = std::getenv("LATCHKEY_NEMESIS_SEED")) return std::strtoull(s, nullptr, 10);
  return static_cast<uint64_t>(SteadyClock::now().time_since_epoch().count()) % 1000000007ull;
}

int SecondsFromEnv(int default_seconds) {
  if (const char* s = std::getenv("LATCHKEY_NEMESIS_SECONDS")) return std::atoi(s);
  return default_seconds;
}

NemesisReport RunNemesis(const NemesisOptions& opt) {
  NemesisReport rep;
  rep.seed = opt.seed;
  const auto t0 = SteadyClock::now();
  const int64_t base_ns = checkers::MonotonicNanos();
  std::mt19937_64 rng(opt.seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto stamp = [&]() {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%7.3fs ",
                  std::chrono::duration<double>(SteadyClock::now() - t0).count());
    return std::string(buf);
  };
  auto note = [&](const std::string& what) {
    rep.schedule.push_back(stamp() + what);
    std::printf("nemesis %s%s\n", stamp().c_str(), what.c_str());
    std::fflush(stdout);
  };
  std::printf("nemesis seed=%llu seconds=%d nodes=%d workers=%d fencing=%s\n",
              static_cast<unsigned long long>(opt.seed), opt.seconds, opt.nodes, opt.workers,
              opt.fencing ? "on" : "OFF (broken mode)");

  TempDir work;
  NemesisCluster cluster(opt.nodes, opt.netns, opt.server_args);
  if (!cluster.Init()) {
    rep.setup_error =
        "cluster did not start: " + cluster.fallback_reason() + "\n" + cluster.NodeLog(1);
    return rep;
  }
  rep.network = cluster.partitions_supported()
                    ? "netns"
                    : "loopback" + (cluster.fallback_reason().empty()
                                        ? std::string()
                                        : " (" + cluster.fallback_reason() + ")");
  if (!WaitFor([&] { return cluster.Leader() != 0; }, 20s)) {
    rep.setup_error = "no leader elected; node 1 said:\n" + cluster.NodeLog(1);
    return rep;
  }

  checkers::FencedResource resource(opt.fencing);
  Workers workers;
  HolderTrap trap;
  trap.pids = &workers.pids;
  resource.set_on_accept([&trap](const checkers::ResourceEntry& e) {
    auto raise = [&e](std::atomic<uint64_t>& max) {
      uint64_t prev = max.load();
      while (e.token > prev && !max.compare_exchange_weak(prev, e.token)) {
      }
    };
    if (e.op == "begin") return raise(trap.max_begin_token);
    if (e.op == "write") return raise(trap.max_write_token);
    // Caught between reading the counter and writing it back.
    if (e.op != "read") return;
    std::lock_guard<std::mutex> lk(trap.mu);
    if (!trap.armed || e.process <= 0 || static_cast<size_t>(e.process) >= trap.pids->size()) {
      return;
    }
    trap.armed = false;
    trap.caught_process = e.process;
    trap.caught_token = e.token;
    // A worker that died is -1 here: kill(-1) would stop every process.
    if (const pid_t pid = (*trap.pids)[static_cast<size_t>(e.process)]; pid > 0) kill(pid, SIGSTOP);
  });
  checkers::ResourceServer server(&resource);
  const std::string sock = work.File("resource.sock");
  if (!server.Start(sock)) {
    rep.setup_error = "fenced resource did not start on " + sock;
    return rep;
  }

  // Workers: process numbers 1..workers (index 0 unused).
  workers.pids.assign(static_cast<size_t>(opt.workers) + 1, -1);
  workers.stopped.assign(workers.pids.size(), false);
  for (int k = 1; k <= opt.workers; ++k) {
    const std::string cwd = work.File("worker-" + std::to_string(k));
    std::filesystem::create_directories(cwd);
    const pid_t pid =
        SpawnCommand({NEMESIS_WORKER_BIN, cluster.Endpoints(), sock, std::to_string(k),
                      work.File("history-" + std::to_string(k) + ".jsonl"),
                      std::to_string(opt.seed * 1000 + static_cast<uint64_t>(k)),
                      std::to_string(opt.session_ttl_ms), opt.objects ? "1" : "0"},
                     work.File("worker-" + std::to_string(k) + ".log"), cwd);
    std::lock_guard<std::mutex> lk(trap.mu);
    workers.pids[static_cast<size_t>(k)] = pid;
  }
  NemesisWatchers watchers;
  if (opt.objects) watchers.Start(opt.watchers, cluster.Endpoints(), work.path(), opt.seed);
  // The workload runs before the first fault.
  if (!WaitFor([&] { return trap.max_begin_token.load() != 0; }, 20s)) {
    note("no worker entered the resource within 20 s");
  }
  if (opt.test_only_abort_a_worker && workers.pids.size() > 1 && workers.pids[1] > 0) {
    kill(workers.pids[1], SIGABRT);
    note("test only: SIGABRT worker 1 (as if its client library aborted)");
  }

  // ---- the schedule -----------------------------------------------------------
  std::vector<std::string> faults;
  for (const auto& f : opt.faults) {
    if (f == "partition" && !cluster.partitions_supported()) continue;
    faults.push_back(f);
  }
  const int ttl = opt.session_ttl_ms;
  const uint64_t n = static_cast<uint64_t>(opt.nodes);
  auto pick_node = [&]() -> uint64_t {
    const uint64_t leader = cluster.Leader();
    if (leader != 0 && uniform(0, 1) == 0) return leader;
    return static_cast<uint64_t>(uniform(1, opt.nodes));
  };
  auto pick_other = [&](uint64_t than) -> uint64_t {  // uniform among the nodes but `than`
    const uint64_t k = static_cast<uint64_t>(uniform(1, opt.nodes - 1));
    return than != 0 && k >= than ? k + 1 : k;
  };
  auto hold = [&](int ms) { std::this_thread::sleep_for(Ms(ms)); };  // the fault's duration
  const auto end = SteadyClock::now() + std::chrono::seconds(opt.seconds);
  // A node that crashed is noted (and fails the run) before a later kill or
  // restart of that node would hide it.
  auto reap = [&] {
    for (const auto& d : cluster.TakeDeaths()) {
      note("UNEXPECTED: " + d);
      rep.node_deaths.push_back(stamp() + d);
    }
    std::vector<std::string> clients;
    workers.Reap(trap.mu, &clients);
    watchers.Reap(&clients);
    for (const auto& d : clients) {
      note("UNEXPECTED: " + d);
      rep.client_deaths.push_back(stamp() + d);
    }
  };
  while (!faults.empty() && SteadyClock::now() < end) {
    hold(uniform(300, 1200));  // quiet period between faults
    reap();
    const std::string f =
        faults[static_cast<size_t>(uniform(0, static_cast<int>(faults.size()) - 1))];
    if (f == "kill") {
      const uint64_t id = pick_node();
      const int down = uniform(300, 2500);
      note("kill -9 node " + std::to_string(id) + " for " + std::to_string(down) + " ms");
      cluster.Kill9(id);
      hold(down);
      note(cluster.StartNode(id) ? "restarted node " + std::to_string(id)
                                 : "node " + std::to_string(id) + " did not restart");
    } else if (f == "pause") {
      const uint64_t id = pick_node();
      const int ms = uniform(ttl + 300, 2 * ttl + 1000);
      note("SIGSTOP node " + std::to_string(id) + " for " + std::to_string(ms) + " ms");
      cluster.Stop(id);
      hold(ms);
      cluster.Cont(id);
      note("SIGCONT node " + std::to_string(id));
    } else if (f == "partition") {
      std::vector<std::vector<uint64_t>> groups(2);
      if (n >= 5 && uniform(0, 1) == 0) {
        std::vector<uint64_t> ids;
        for (uint64_t id = 1; id <= n; ++id) ids.push_back(id);
        std::shuffle(ids.begin(), ids.end(), rng);
        for (size_t i = 0; i < ids.size(); ++i) groups[i < 2 ? 0 : 1].push_back(ids[i]);
      } else {
        const uint64_t id = pick_node();
        groups[0].push_back(id);
        for (uint64_t o = 1; o <= n; ++o) {
          if (o != id) groups[1].push_back(o);
        }
      }
      const int ms = uniform(1000, 3000);
      // Half the time the first group loses its clients too (a client stuck
      // with a minority leader).
      const bool cut_clients = uniform(0, 1) == 0;
      std::string desc;
      for (const auto& g : groups) {
        desc += desc.empty() ? "" : " | ";
        for (size_t i = 0; i < g.size(); ++i) desc += (i ? "," : "") + std::to_string(g[i]);
      }
      note("partition " + desc + (cut_clients ? " (clients cut from the first)" : "") + " for " +
           std::to_string(ms) + " ms" +
           (cluster.Partition(groups, cut_clients) ? "" : " (ip failed)"));
      hold(ms);
      cluster.Heal();
      note("healed");
    } else if (f == "transfer") {
      const uint64_t leader = cluster.Leader();
      const uint64_t to = pick_other(leader);
      const int rc = cluster.TransferLeader(to, 10s);
      note("transfer leadership " + std::to_string(leader) + " -> " + std::to_string(to) +
           ": exit " + std::to_string(rc));
    } else if (f == "member") {
      const uint64_t leader = cluster.Leader();
      if (leader == 0) {
        note("membership change skipped: no leader");
        continue;
      }
      const uint64_t id = pick_other(leader);
      note("membership: " + cluster.RemoveAndRejoin(id, 20s));
    } else if (f == "member-leave") {  // not in the default set: heal re-adds it
      const uint64_t leader = cluster.Leader();
      if (leader == 0) continue;
      const uint64_t id = pick_other(leader);
      note("membership: remove node " + std::to_string(id) +
           " until the heal: " + cluster.RemoveOnly(id, 20s));
    } else if (f == "client-pause") {
      const size_t k = static_cast<size_t>(uniform(1, opt.workers));
      const int ms = uniform(ttl + 300, 2 * ttl + 1000);
      note("SIGSTOP worker " + std::to_string(k) + " for " + std::to_string(ms) + " ms");
      workers.Stop(k);
      hold(ms);
      workers.Cont(k);
      note("SIGCONT worker " + std::to_string(k));
    } else if (f == "holder-pause") {
      {
        std::lock_guard<std::mutex> lk(trap.mu);
        trap.armed = true;
        trap.caught_process = -1;
      }
      int64_t caught = -1;
      uint64_t token = 0;
      WaitFor(
          [&] {
            std::lock_guard<std::mutex> lk(trap.mu);
            caught = trap.caught_process;
            token = trap.caught_token;
            return caught > 0;
          },
          10s);
      if (caught <= 0) {
        std::lock_guard<std::mutex> lk(trap.mu);
        trap.armed = false;
        caught = trap.caught_process;  // it may have fired just now
        token = trap.caught_token;
      }
      if (caught <= 0) {
        note("holder-pause: no worker entered the resource within 10 s");
        continue;
      }
      workers.stopped[static_cast<size_t>(caught)] = true;
      note("SIGSTOP worker " + std::to_string(caught) + " inside the resource with token " +
           std::to_string(token));
      // Until its lease ran out and another holder wrote the counter
      // (bounded): the paused one then writes back a stale value + 1.
      const auto paused_at = SteadyClock::now();
      const bool other = WaitFor(
          [&] {
            return SteadyClock::now() - paused_at > Ms(ttl * 3 / 2) &&
                   trap.max_write_token.load() > token;
          },
          Ms(ttl * 3 / 2 + 20000));
      if (other) ++rep.holder_pauses;
      workers.Cont(static_cast<size_t>(caught));
      note("SIGCONT worker " + std::to_string(caught) +
           (other ? " (another holder wrote meanwhile)" : " (nobody else wrote)"));
    }
  }

  // ---- heal and let the workload show it goes on ---------------------------------
  reap();
  cluster.Heal();
  for (uint64_t id = 1; id <= n; ++id) {
    if (cluster.stopped(id)) cluster.Cont(id);
    if (!cluster.running(id)) cluster.StartNode(id);
  }
  const bool rejoined = cluster.Rejoin(30s);
  for (const auto& line : cluster.rejoin_log()) note("rejoin: " + line);
  if (!rejoined) note("a removed node could not be added back");
  for (size_t k = 1; k < workers.pids.size(); ++k) {
    if (workers.stopped[k]) workers.Cont(k);
  }
  note("heal: every node running and connected, every worker running");
  const uint64_t token_at_heal = trap.max_begin_token.load();
  if (!WaitFor([&] { return trap.max_begin_token.load() > token_at_heal; }, 30s)) {
    rep.convergence = "no worker entered the resource within 30 s after healing";
  }
  reap();  // a worker that died before being told to stop
  std::vector<std::string> stopping;
  workers.Terminate(trap.mu, &stopping);
  std::string why;
  if (!cluster.WaitConverged(30s, &why) && rep.convergence.empty()) {
    rep.convergence = "replicas did not converge within 30 s: " + why;
  }
  reap();
  server.Stop();

  // ---- final values -------------------------------------------------------------
  std::optional<int64_t> lk_final;
  {
    ClientOptions o;
    o.endpoint = cluster.Endpoints();
    o.client_name = "nemesis-final";
    o.connect_timeout = 2s;
    WaitFor(
        [&] {
          auto c = Client::Connect(o);
          if (!c.ok()) return false;
          auto info = (*c)->GetLock(kLock);
          if (!info.ok()) return false;
          lk_final = ParseCounter(info->value);
          (void)(*c)->Close();
          return true;
        },
        20s);
  }
  std::map<std::string, checkers::FinalObject> obj_final;
  if (opt.objects) {
    obj_final = ReadFinalObjects(cluster.Endpoints(), 20s);
    uint64_t final_rev = 0;
    for (const auto& [key, f] : obj_final) final_rev = std::max(final_rev, f.mod_revision);
    if (!watchers.WaitCaughtUp(final_rev, 20s, &why)) note(why);
    watchers.StopAll(&stopping);
  }
  for (const auto& d : stopping) {
    note("UNEXPECTED: " + d);
    rep.client_deaths.push_back(stamp() + d);
  }
  const std::string res_value = resource.Value(kResourceKey);
  const std::optional<int64_t> res_final = ParseCounter(res_value);

  // ---- histories and checkers ------------------------------------------------------
  std::vector<std::vector<checkers::Event>> parts;
  for (int k = 1; k <= opt.workers; ++k) {
    std::vector<std::string> bad;
    parts.push_back(
        checkers::ReadHistory(work.File("history-" + std::to_string(k) + ".jsonl"), &bad));
    if (!bad.empty())
      note("worker " + std::to_string(k) + ": " + std::to_string(bad.size()) +
           " malformed history lines");
  }
  // Times relative to the start of the run, so explanations read "5.217s".
  for (auto& part : parts) {
    for (auto& e : part) e.time -= base_ns;
  }
  const auto history = checkers::MergeByTime(std::move(parts));
  std::vector<checkers::Event> notes;
  const auto ops = checkers::Pair(history, &notes);
  auto log = resource.Log();
  for (auto& e : log) e.time -= base_ns;
  for (const auto& op : ops) {
    if (op.outcome != EventType::kOk) continue;
    if (op.op == "acquire" || op.op == "write") ++rep.ok_acquires;
    if (op.op == "incr") ++rep.ok_increments;
    if (op.key == kReg && op.op != "acquire" && op.op != "release") ++rep.ok_register_ops;
  }
  for (const auto& e : notes) rep.sessions_lost += e.op == "session_lost";
  for (const auto& e : log) rep.rejected_by_fencing += !e.accepted;

  std::vector<checkers::Operation> latchkey_ops;  // every op but the resource's own
  for (const auto& op : ops) {
    if (op.key != kResourceKey) latchkey_ops.push_back(op);
  }
  rep.results.push_back(checkers::CheckMutualExclusion(log));
  rep.results.push_back(checkers::CheckLockOverlap(ops));
  rep.results.push_back(checkers::CheckFencingMonotonic(ops));
  rep.results.push_back(checkers::CheckCounter(ops, kResourceKey, res_final));
  rep.results.push_back(checkers::CheckCounter(ops, kLock, lk_final));
  if (!lk_final) rep.results.back().violations.push_back("could not read a final number");
  if (!res_final) rep.results[3].violations.push_back("final value is not a number: " + res_value);
  rep.results.push_back(checkers::CheckRegisterLinearizable(ops, kReg));
  rep.results.push_back(checkers::CheckSessionExpiry(
      latchkey_ops, notes, {"acquire", "release", "write", "cas", "incr"}));
  if (opt.objects) {
    const auto streams = watchers.Streams(base_ns);
    for (const auto& r : CheckObjects(ops, streams, obj_final)) rep.results.push_back(r);
    for (const auto& op : ops) {
      rep.ok_object_ops += op.outcome == EventType::kOk && op.key.starts_with(nemesis::kObjPrefix);
    }
    for (const auto& st : streams) {
      for (const auto& e : st.events) rep.watch_events += e.op == "event";
    }
    if (rep.ok_object_ops == 0) rep.results.push_back({"progress", {"no object op acknowledged"}});
  }
  if (rep.ok_acquires == 0 || rep.ok_increments == 0) {
    rep.results.push_back({"progress", {"the workload acknowledged nothing"}});
  }
  rep.seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();

  // Keep the evidence when something failed (or when asked).
  if ((!rep.ok() && opt.keep_on_failure) || !opt.keep_dir.empty()) {
    rep.history_dir = opt.keep_dir.empty() ? "/tmp/latchkey-nemesis-" + std::to_string(opt.seed) +
                                                 "-" + std::to_string(getpid())
                                           : opt.keep_dir;
    std::error_code ec;
    std::filesystem::create_directories(rep.history_dir, ec);
    for (const auto& entry : std::filesystem::directory_iterator(work.path(), ec)) {
      if (entry.path().extension() == ".sock") continue;
      if (!entry.is_regular_file()) continue;
      std::filesystem::copy(entry.path(),
                            std::filesystem::path(rep.history_dir) / entry.path().filename(),
                            std::filesystem::copy_options::overwrite_existing, ec);
    }
    WriteResourceLog(log, rep.history_dir + "/resource.jsonl");
    std::ofstream(rep.history_dir + "/report.txt") << rep.Explain();
    for (uint64_t id = 1; id <= n; ++id) {
      std::ofstream(rep.history_dir + "/node" + std::to_string(id) + ".log") << cluster.NodeLog(id);
    }
  }
  return rep;
}

}  // namespace latchkey::testing
