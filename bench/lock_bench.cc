// lock_bench: acquire+release pairs per second and latency percentiles at
// several client counts. Each client has its own connection, session and
// lock name (uncontended: workload W1 of docs/benchmarks.md).
//
//   lock_bench [--endpoint HOST:PORT[,HOST:PORT...]] [--cluster N] [--seconds N]
//              [--clients 1,8,32] [--workload uncontended|contended|rw|reads]
//
// reads: linearizable GetLock of each client's own lock instead of pairs
// (the rate is reads/s).
//
// Without --endpoint it starts `latchkey server` itself on a temp data dir
// (--cluster N: N nodes on 127.0.0.1, one Raft group).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <thread>
#include <vector>

#include "latchkey/client.h"
#include "testlib/cluster_process.h"
#include "testlib/server_process.h"

using namespace std::chrono;
using latchkey::Client;
using latchkey::ClientOptions;

namespace {

struct Row {
  int clients;
  double pairs_per_s;
  double p50_us, p99_us;
  uint64_t errors;
};

// Workload: each client its own lock (W1), everyone on one lock (W2), one
// lock with 1 writer in 8 taking EX and the rest PR (rw), or linearizable
// reads (GetLock) of each client's own lock (reads).
enum class Workload { kUncontended, kContended, kReadWrite, kReads };

Row RunOnce(const std::string& endpoint, int clients, double seconds, Workload workload) {
  std::vector<std::unique_ptr<Client>> cs;
  for (int i = 0; i < clients; ++i) {
    ClientOptions o;
    o.endpoint = endpoint;
    o.client_name = "bench-" + std::to_string(i);
    auto c = Client::Connect(o);
    if (!c.ok()) {
      std::fprintf(stderr, "connect: %s\n", c.status().ToString().c_str());
      std::exit(1);
    }
    cs.push_back(std::move(c.value()));
  }
  std::atomic<bool> go{false}, stop{false};
  std::atomic<uint64_t> errors{0};
  std::atomic<int> inside{0};
  std::atomic<uint64_t> overlaps{0};
  std::vector<std::vector<uint32_t>> lat(static_cast<size_t>(clients));
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      Client& c = *cs[static_cast<size_t>(i)];
      const std::string name = workload == Workload::kUncontended || workload == Workload::kReads
                                   ? "bench.w1.c" + std::to_string(i)
                                   : "bench.hot";
      latchkey::AcquireOptions ao;
      if (workload == Workload::kReadWrite && i % 8 != 0) ao.mode = latchkey::LockMode::kPR;
      auto& l = lat[static_cast<size_t>(i)];
      l.reserve(1 << 20);
      while (!go) std::this_thread::yield();
      while (!stop.load(std::memory_order_relaxed)) {
        auto t0 = steady_clock::now();
        if (workload == Workload::kReads) {
          if (!c.GetLock(name).ok()) ++errors;
          l.push_back(
              static_cast<uint32_t>(duration_cast<microseconds>(steady_clock::now() - t0).count()));
          continue;
        }
        auto g = c.Acquire(name, ao);
        if (g.ok() && ao.mode == latchkey::LockMode::kEX) {
          // Mutual exclusion check on the contended lock.
          if (inside.fetch_add(1) != 0) ++overlaps;
          inside.fetch_sub(1);
        }
        latchkey::Status r = g.ok() ? c.Release(name) : g.status();
        if (!r.ok()) ++errors;
        l.push_back(
            static_cast<uint32_t>(duration_cast<microseconds>(steady_clock::now() - t0).count()));
      }
    });
  }
  auto start = steady_clock::now();
  go = true;
  std::this_thread::sleep_for(duration<double>(seconds));  // the measurement window
  stop = true;
  for (auto& t : threads) t.join();
  double elapsed = duration<double>(steady_clock::now() - start).count();
  std::vector<uint32_t> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0.0 : static_cast<double>(all[static_cast<size_t>(p * (all.size() - 1))]);
  };
  if (overlaps.load() != 0 && workload == Workload::kContended) {
    std::fprintf(stderr, "MUTUAL EXCLUSION VIOLATED: %llu overlaps\n",
                 static_cast<unsigned long long>(overlaps.load()));
  }
  return {clients, static_cast<double>(all.size()) / elapsed, pct(0.50), pct(0.99), errors.load()};
}

}  // namespace

int main(int argc, char** argv) {
  std::string endpoint;
  int cluster_size = 1;
  double seconds = 5;
  std::vector<int> counts = {1, 8, 32};
  Workload workload = Workload::kUncontended;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--endpoint") {
      endpoint = next();
    } else if (a == "--cluster") {
      cluster_size = std::stoi(next());
    } else if (a == "--seconds") {
      seconds = std::stod(next());
    } else if (a == "--workload") {
      std::string w = next();
      workload = w == "contended" ? Workload::kContended
                 : w == "rw"      ? Workload::kReadWrite
                 : w == "reads"   ? Workload::kReads
                                  : Workload::kUncontended;
    } else if (a == "--clients") {
      counts.clear();
      std::stringstream ss(next());
      for (std::string x; std::getline(ss, x, ',');) counts.push_back(std::stoi(x));
    } else {
      std::fprintf(stderr,
                   "usage: lock_bench [--endpoint HOST:PORT[,...]] [--cluster N] [--seconds N] "
                   "[--clients 1,8,32] [--workload uncontended|contended|rw|reads]\n");
      return 64;
    }
  }
  std::unique_ptr<latchkey::testing::TempDir> dir;
  std::unique_ptr<latchkey::testing::ServerProcess> server;
  std::unique_ptr<latchkey::testing::ClusterProcess> cluster;
  if (endpoint.empty() && cluster_size > 1) {
    cluster = std::make_unique<latchkey::testing::ClusterProcess>(cluster_size);
    if (!cluster->Start() || cluster->WaitForLeader() == 0) {
      std::fprintf(stderr, "could not start a %d-node cluster\n", cluster_size);
      return 1;
    }
    endpoint = cluster->Endpoints();
  } else if (endpoint.empty()) {
    dir = std::make_unique<latchkey::testing::TempDir>();
    server = std::make_unique<latchkey::testing::ServerProcess>(dir->File("data"));
    if (!server->Start()) {
      std::fprintf(stderr, "could not start latchkey server\n");
      return 1;
    }
    endpoint = server->endpoint();
  }
  const char* what = workload == Workload::kContended   ? "W2 one contended EX lock (FIFO handoffs)"
                     : workload == Workload::kReadWrite ? "one lock, 1 in 8 clients EX, the rest PR"
                     : workload == Workload::kReads     ? "linearizable GetLock (rate = reads/s)"
                                                        : "W1 uncontended acquire+release";
  std::printf("%s, durable, %s, %s, %.0fs per row\n\n", what,
              cluster_size > 1 ? (std::to_string(cluster_size) + " nodes").c_str() : "1 node",
              endpoint.c_str(), seconds);
  std::printf("| clients | pairs/s | p50 (us) | p99 (us) | errors |\n");
  std::printf("|--------:|--------:|---------:|---------:|-------:|\n");
  for (int c : counts) {
    Row r = RunOnce(endpoint, c, seconds, workload);
    std::printf("| %7d | %7.0f | %8.0f | %8.0f | %6llu |\n", r.clients, r.pairs_per_s, r.p50_us,
                r.p99_us, static_cast<unsigned long long>(r.errors));
    std::fflush(stdout);
  }
  return 0;
}
