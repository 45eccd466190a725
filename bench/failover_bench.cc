// failover_bench: time from SIGKILL of the leader of a 3-node cluster to the
// first grant served by the new leader, as a client sees it.
//
//   failover_bench [--kills N] [--nodes 3] [--election-timeout-ms E]
//                  [--heartbeat-timeout-ms H]
//
// Each round: wait until every node agrees on a leader, SIGKILL it, and at
// once issue an acquire from a client connected to the cluster (its session
// fails over and the acquire is re-sent); the time to its grant is recorded.
// The killed node is restarted before the next round. Prints median, p90 and
// max. Without --election/heartbeat flags the server defaults are measured.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "latchkey/client.h"
#include "testlib/cluster_process.h"

using namespace std::chrono;

int main(int argc, char** argv) {
  int kills = 10;
  int nodes = 3;
  std::vector<std::string> server_args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--kills") {
      kills = std::stoi(next());
    } else if (a == "--nodes") {
      nodes = std::stoi(next());
    } else if (a == "--election-timeout-ms" || a == "--heartbeat-timeout-ms") {
      server_args.push_back(a);
      server_args.push_back(next());
    } else {
      std::fprintf(stderr,
                   "usage: failover_bench [--kills N] [--nodes 3] [--election-timeout-ms E] "
                   "[--heartbeat-timeout-ms H]\n");
      return 64;
    }
  }
  latchkey::testing::ClusterProcess cluster(nodes, server_args);
  if (!cluster.Start()) {
    std::fprintf(stderr, "could not start the cluster\n");
    return 1;
  }
  const std::string endpoints = cluster.Endpoints();
  latchkey::ClientOptions o;
  o.endpoint = endpoints;
  o.client_name = "failover-bench";
  auto client = latchkey::Client::Connect(o);
  if (!client.ok()) {
    std::fprintf(stderr, "connect: %s\n", client.status().ToString().c_str());
    return 1;
  }
  latchkey::Client& c = **client;
  std::vector<double> ms;
  for (int round = 0; round < kills; ++round) {
    const uint64_t leader = cluster.WaitForLeader();
    if (leader == 0) {
      std::fprintf(stderr, "round %d: no leader\n", round);
      return 1;
    }
    // Make sure the client sits on the leader (its session lives there).
    const std::string warm = "failover.warm" + std::to_string(round);
    if (!c.Acquire(warm).ok() || !c.Release(warm).ok()) {
      std::fprintf(stderr, "round %d: warm-up failed\n", round);
      return 1;
    }
    const std::string name = "failover.round" + std::to_string(round);
    const auto t0 = steady_clock::now();
    cluster.node(leader).Kill9();
    auto g = c.Acquire(name);
    const auto t1 = steady_clock::now();
    if (!g.ok()) {
      std::fprintf(stderr, "round %d: acquire after kill: %s\n", round,
                   g.status().ToString().c_str());
      return 1;
    }
    ms.push_back(duration<double, std::milli>(t1 - t0).count());
    std::printf("round %2d: killed node %llu, first grant after %.0f ms\n", round,
                static_cast<unsigned long long>(leader), ms.back());
    std::fflush(stdout);
    (void)c.Release(name);
    if (!cluster.node(leader).Restart()) {
      std::fprintf(stderr, "round %d: restart of node %llu failed\n", round,
                   static_cast<unsigned long long>(leader));
      return 1;
    }
    // Let the restarted node catch up so the next kill leaves a majority.
    if (!cluster.WaitForEqualDigests()) {
      std::fprintf(stderr, "round %d: replicas did not converge\n", round);
      return 1;
    }
  }
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) { return ms[static_cast<size_t>(p * (ms.size() - 1) + 0.5)]; };
  std::printf("\nfailover (SIGKILL leader -> first grant on the new leader), %d nodes, %zu kills\n",
              nodes, ms.size());
  std::printf("median %.0f ms   p90 %.0f ms   max %.0f ms\n", pct(0.5), pct(0.9), ms.back());
  return 0;
}
