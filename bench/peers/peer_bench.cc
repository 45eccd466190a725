// peer_bench: one load generator for Latchkey, etcd, ZooKeeper and Redis,
// each through its own lock recipe (backend_*.cc). bench/peers/run.sh starts
// the servers and calls it once per system and workload.
//
//   peer_bench --system latchkey|redis|zookeeper|etcd --endpoint HOST:PORT[,...]
//              --workload probe|w1|w2|w3 [--clients 1,8,32] [--seconds 3]
//              [--locks 10000] [--server-pid PID[,PID...]] [--label TEXT]
//              [--nodes N] [--jsonl FILE] [--settle-seconds S]
//
// W1: every client its own lock, acquire+release pairs/s, p50/p99 latency.
// W2: every client on one lock; a shared counter is read, spun on (1 us) and
//     written under the lock, and must equal the number of acquisitions at
//     the end (lost-update check); an in-critical-section counter catches
//     overlaps; max/min acquisitions per client give fairness.
// W3: --locks distinct locks acquired and held by --clients clients (split
//     evenly); time to hold them all and the servers' VmRSS before/after
//     (and, with --settle-seconds, the lowest VmRSS seen that long after).
// probe: one acquire+release; exit 0 if it worked (readiness polling).
// Every row is printed and appended to --jsonl as one JSON object.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backend.h"

using namespace std::chrono;
using latchkey::Status;
using latchkey::peers::BackendOptions;
using latchkey::peers::LockClient;

namespace {

struct Args {
  std::string system, endpoint, workload = "w1", label, jsonl;
  std::vector<int> clients = {1, 8, 32};
  std::vector<int> server_pids;
  double seconds = 3;
  int locks = 10'000;
  double settle_seconds = 0;  // W3: watch VmRSS this long after the last acquire
  int nodes = 1;
};

std::vector<int> ParseInts(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) v.push_back(std::stoi(x));
  return v;
}

// Sum of VmRSS (KiB) over the pids; 0 when one cannot be read.
long RssKb(const std::vector<int>& pids) {
  long total = 0;
  for (int pid : pids) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    bool found = false;
    while (std::getline(f, line)) {
      if (line.rfind("VmRSS:", 0) == 0) {
        total += std::stol(line.substr(6));
        found = true;
      }
    }
    if (!found) return 0;
  }
  return total;
}

std::vector<std::unique_ptr<LockClient>> ConnectAll(const Args& a, int n) {
  std::vector<std::unique_ptr<LockClient>> cs;
  for (int i = 0; i < n; ++i) {
    BackendOptions o;
    o.endpoint = a.endpoint;
    o.client_index = i;
    auto c = latchkey::peers::Connect(a.system, o);
    if (!c.ok()) {
      std::fprintf(stderr, "%s: connect client %d: %s\n", a.system.c_str(), i,
                   c.status().ToString().c_str());
      std::exit(1);
    }
    cs.push_back(std::move(c.value()));
  }
  return cs;
}

// One output row: printed as text and as a JSON line.
struct Row {
  std::string workload;
  int clients = 0;
  double seconds = 0;
  uint64_t ops = 0, errors = 0;
  double p50_us = 0, p99_us = 0;
  // W2
  uint64_t overlaps = 0, lost_updates = 0, fair_max = 0, fair_min = 0;
  // W3
  long rss_before_kb = 0, rss_after_kb = 0;
  // Lowest VmRSS seen during --settle-seconds after the last acquire, all
  // locks still held (0 = not measured).
  long rss_settled_kb = 0;
  // W1/W2/W4, Latchkey: the server's log appends during the row and their
  // mean time from hand-over to the disk to completion (0 = not measured).
  uint64_t log_appends = 0;
  double log_append_mean_us = 0;
  std::string first_error;
};

void Emit(const Args& a, const Row& r) {
  const double rate = r.seconds > 0 ? static_cast<double>(r.ops) / r.seconds : 0;
  std::printf("%-10s %-24s %-3s C=%-3d %9.0f ops/s p50 %7.0f us p99 %7.0f us errors %llu",
              a.system.c_str(), a.label.c_str(), r.workload.c_str(), r.clients, rate, r.p50_us,
              r.p99_us, static_cast<unsigned long long>(r.errors));
  if (r.workload == "W2") {
    std::printf(
        " overlaps %llu lost %llu fair %llu/%llu", static_cast<unsigned long long>(r.overlaps),
        static_cast<unsigned long long>(r.lost_updates),
        static_cast<unsigned long long>(r.fair_max), static_cast<unsigned long long>(r.fair_min));
  }
  if (r.workload == "W3") {
    std::printf(" held %llu in %.2f s rss %ld -> %ld KiB", static_cast<unsigned long long>(r.ops),
                r.seconds, r.rss_before_kb, r.rss_after_kb);
    if (r.rss_settled_kb > 0) std::printf(" (settled %ld KiB)", r.rss_settled_kb);
  }
  if (r.log_appends > 0) {
    std::printf(" log appends/op %.2f, mean %.0f us",
                static_cast<double>(r.log_appends) / static_cast<double>(r.ops ? r.ops : 1),
                r.log_append_mean_us);
  }
  if (!r.first_error.empty()) std::printf(" first error: %s", r.first_error.c_str());
  std::printf("\n");
  std::fflush(stdout);
  if (a.jsonl.empty()) return;
  std::string err;
  for (char c : r.first_error) err += (c == '"' || c == '\\') ? '\'' : (c < 32 ? ' ' : c);
  FILE* f = std::fopen(a.jsonl.c_str(), "a");
  if (f == nullptr) return;
  std::fprintf(
      f,
      "{\"system\":\"%s\",\"label\":\"%s\",\"nodes\":%d,\"workload\":\"%s\","
      "\"clients\":%d,\"seconds\":%.3f,\"ops\":%llu,\"ops_per_s\":%.1f,\"p50_us\":%.0f,"
      "\"p99_us\":%.0f,\"errors\":%llu,\"overlaps\":%llu,\"lost_updates\":%llu,"
      "\"fair_max\":%llu,\"fair_min\":%llu,\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,"
      "\"rss_settled_kb\":%ld,\"log_appends\":%llu,\"log_append_mean_us\":%.0f,"
      "\"first_error\":\"%s\"}\n",
      a.system.c_str(), a.label.c_str(), a.nodes, r.workload.c_str(), r.clients, r.seconds,
      static_cast<unsigned long long>(r.ops), rate, r.p50_us, r.p99_us,
      static_cast<unsigned long long>(r.errors), static_cast<unsigned long long>(r.overlaps),
      static_cast<unsigned long long>(r.lost_updates), static_cast<unsigned long long>(r.fair_max),
      static_cast<unsigned long long>(r.fair_min), r.rss_before_kb, r.rss_after_kb,
      r.rss_settled_kb, static_cast<unsigned long long>(r.log_appends), r.log_append_mean_us,
      err.c_str());
  std::fclose(f);
}

// Busy-waits about a microsecond: a window for lost updates in W2 that,
// unlike yield() or sleep, does not hand the CPU to other processes on a
// loaded machine (which would cap every system's handoff rate alike).
void SpinAbout1us() {
  const auto until = steady_clock::now() + microseconds(1);
  while (steady_clock::now() < until) {
  }
}

// W1 (contended=false) and W2 (contended=true).
Row RunPairs(const Args& a, int clients, bool contended) {
  auto cs = ConnectAll(a, clients);
  std::atomic<bool> go{false}, stop{false};
  std::atomic<uint64_t> errors{0}, overlaps{0};
  std::atomic<int> inside{0};
  std::atomic<uint64_t> counter{0};  // read-modify-written under the lock (W2)
  std::string first_error;
  std::mutex error_mu;
  std::vector<std::vector<uint32_t>> lat(static_cast<size_t>(clients));
  std::vector<uint64_t> acquired(static_cast<size_t>(clients), 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      LockClient& c = *cs[static_cast<size_t>(i)];
      const std::string name = contended ? "bench.hot" : "bench.w1.c" + std::to_string(i);
      auto& l = lat[static_cast<size_t>(i)];
      l.reserve(1 << 18);
      auto fail = [&](const Status& s) {
        ++errors;
        std::lock_guard<std::mutex> g(error_mu);
        if (first_error.empty()) first_error = s.ToString();
      };
      while (!go) std::this_thread::yield();
      while (!stop.load(std::memory_order_relaxed)) {
        auto t0 = steady_clock::now();
        Status s = c.Acquire(name);
        if (!s.ok()) {
          fail(s);
          continue;
        }
        ++acquired[static_cast<size_t>(i)];
        if (contended) {
          if (inside.fetch_add(1) != 0) ++overlaps;
          uint64_t v = counter.load(std::memory_order_relaxed);
          SpinAbout1us();  // widen the window a lost update needs
          counter.store(v + 1, std::memory_order_relaxed);
          inside.fetch_sub(1);
        }
        if (Status r = c.Release(name); !r.ok()) fail(r);
        l.push_back(
            static_cast<uint32_t>(duration_cast<microseconds>(steady_clock::now() - t0).count()));
      }
    });
  }
  uint64_t appends0 = 0, micros0 = 0, appends1 = 0, micros1 = 0;
  const bool timed = !cs.empty() && cs[0]->LogAppends(&appends0, &micros0);
  auto start = steady_clock::now();
  go = true;
  std::this_thread::sleep_for(duration<double>(a.seconds));  // the measurement window
  stop = true;
  for (auto& t : threads) t.join();
  Row r;
  if (timed && cs[0]->LogAppends(&appends1, &micros1) && appends1 > appends0) {
    r.log_appends = appends1 - appends0;
    r.log_append_mean_us =
        static_cast<double>(micros1 - micros0) / static_cast<double>(r.log_appends);
  }
  r.workload = contended ? "W2" : "W1";
  r.clients = clients;
  r.seconds = duration<double>(steady_clock::now() - start).count();
  std::vector<uint32_t> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0.0 : static_cast<double>(all[static_cast<size_t>(p * (all.size() - 1))]);
  };
  r.ops = all.size();
  r.p50_us = pct(0.50);
  r.p99_us = pct(0.99);
  r.errors = errors.load();
  r.first_error = first_error;
  if (contended) {
    uint64_t total = 0;
    for (uint64_t n : acquired) total += n;
    r.overlaps = overlaps.load();
    r.lost_updates = total - counter.load();
    r.fair_max = *std::max_element(acquired.begin(), acquired.end());
    r.fair_min = *std::min_element(acquired.begin(), acquired.end());
  }
  return r;
}

// W3: hold a.locks distinct locks at once.
Row RunHeld(const Args& a, int clients) {
  auto cs = ConnectAll(a, clients);
  std::atomic<uint64_t> errors{0};
  std::string first_error;
  std::mutex error_mu;
  Row r;
  r.workload = "W3";
  r.clients = clients;
  r.rss_before_kb = RssKb(a.server_pids);
  auto start = steady_clock::now();
  std::vector<std::thread> threads;
  std::vector<std::vector<std::string>> held(static_cast<size_t>(clients));
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      for (int k = i; k < a.locks; k += clients) {
        std::string name = "bench.w3." + std::to_string(k);
        Status s = cs[static_cast<size_t>(i)]->Acquire(name);
        if (s.ok()) {
          held[static_cast<size_t>(i)].push_back(std::move(name));
        } else {
          ++errors;
          std::lock_guard<std::mutex> g(error_mu);
          if (first_error.empty()) first_error = s.ToString();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  r.seconds = duration<double>(steady_clock::now() - start).count();
  r.rss_after_kb = RssKb(a.server_pids);
  if (a.settle_seconds > 0 && r.rss_after_kb > 0) {
    // A server may shrink once it has caught up (Latchkey drops the Raft log
    // kept in memory at its next snapshot); the locks stay held meanwhile.
    r.rss_settled_kb = r.rss_after_kb;
    const auto until = steady_clock::now() + duration<double>(a.settle_seconds);
    while (steady_clock::now() < until) {
      std::this_thread::sleep_for(milliseconds(100));
      const long kb = RssKb(a.server_pids);
      if (kb > 0) r.rss_settled_kb = std::min(r.rss_settled_kb, kb);
    }
  }
  for (auto& h : held) r.ops += h.size();
  r.errors = errors.load();
  r.first_error = first_error;
  threads.clear();
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      for (const auto& name : held[static_cast<size_t>(i)]) {
        (void)cs[static_cast<size_t>(i)]->Release(name);
      }
    });
  }
  for (auto& t : threads) t.join();
  return r;
}

int Usage() {
  std::fprintf(
      stderr,
      "usage: peer_bench --system latchkey|redis|zookeeper|etcd --endpoint HOST:PORT[,...]\n"
      "       --workload probe|w1|w2|w3 [--clients 1,8,32] [--seconds 3] [--locks 10000]\n"
      "       [--settle-seconds S] [--server-pid PID[,PID...]] [--label TEXT] [--nodes N] [--jsonl "
      "FILE]\n");
  return 64;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return Usage();
    const std::string v = argv[++i];
    if (arg == "--system")
      a.system = v;
    else if (arg == "--endpoint")
      a.endpoint = v;
    else if (arg == "--workload")
      a.workload = v;
    else if (arg == "--label")
      a.label = v;
    else if (arg == "--jsonl")
      a.jsonl = v;
    else if (arg == "--clients")
      a.clients = ParseInts(v);
    else if (arg == "--server-pid")
      a.server_pids = ParseInts(v);
    else if (arg == "--seconds")
      a.seconds = std::stod(v);
    else if (arg == "--settle-seconds")
      a.settle_seconds = std::stod(v);
    else if (arg == "--locks")
      a.locks = std::stoi(v);
    else if (arg == "--nodes")
      a.nodes = std::stoi(v);
    else
      return Usage();
  }
  if (a.system.empty() || a.endpoint.empty()) return Usage();
  if (a.label.empty()) a.label = a.system;
  if (a.workload == "probe") {
    BackendOptions o;
    o.endpoint = a.endpoint;
    o.timeout = seconds(2);
    auto c = latchkey::peers::Connect(a.system, o);
    if (!c.ok()) return 1;
    if (!c.value()->Acquire("bench.probe").ok()) return 1;
    return c.value()->Release("bench.probe").ok() ? 0 : 1;
  }
  for (int n : a.clients) {
    if (a.workload == "w1")
      Emit(a, RunPairs(a, n, false));
    else if (a.workload == "w2")
      Emit(a, RunPairs(a, n, true));
    else if (a.workload == "w3")
      Emit(a, RunHeld(a, n));
    else
      return Usage();
  }
  return 0;
}
