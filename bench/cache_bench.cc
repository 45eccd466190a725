// cache_bench: cached locks and owned-state migration (issue 4).
//   1. cached re-acquire: Lock+Unlock of a name this node already holds (no
//      message), ops/s on 1 and 2 threads of one client (CachedLock handle);
//   2. migration latency: two clients alternately Update one StateStore key;
//      each Update moves the key (callback -> release -> grant): p50/p99;
//   3. migrations/s under that ping-pong.
//
//   cache_bench [--endpoint HOST:PORT] [--seconds N] [--migrations N]
//
// Without --endpoint it starts `latchkey server` itself on a temp data dir.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "latchkey/cached_lock.h"
#include "latchkey/client.h"
#include "latchkey/state_store.h"
#include "testlib/server_process.h"

using namespace std::chrono;
using latchkey::CachedLock;
using latchkey::Client;
using latchkey::ClientOptions;
using latchkey::LockCache;
using latchkey::LockMode;
using latchkey::StateStore;

namespace {

std::unique_ptr<Client> Connect(const std::string& endpoint, const std::string& name) {
  ClientOptions o;
  o.endpoint = endpoint;
  o.client_name = name;
  auto c = Client::Connect(o);
  if (!c.ok()) {
    std::fprintf(stderr, "connect: %s\n", c.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(c.value());
}

// Lock+Unlock pairs per second on `threads` threads sharing one cache.
double CachedReacquire(const std::string& endpoint, int threads, double seconds, LockMode mode) {
  auto c = Connect(endpoint, "cache-bench");
  LockCache cache(*c);
  {
    CachedLock warm(cache, "bench.cached", mode);
    warm.lock();
    warm.unlock();
  }
  std::atomic<bool> stop{false};
  std::vector<uint64_t> counts(static_cast<size_t>(threads));
  std::vector<std::thread> ts;
  const auto start = steady_clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      CachedLock l(cache, "bench.cached", mode);
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 1024; ++i) {
          l.lock();
          l.unlock();
        }
        n += 1024;
      }
      counts[static_cast<size_t>(t)] = n;
    });
  }
  std::this_thread::sleep_for(duration<double>(seconds));
  stop = true;
  for (auto& t : ts) t.join();
  const double secs = duration<double>(steady_clock::now() - start).count();
  uint64_t total = 0;
  for (uint64_t n : counts) total += n;
  if (cache.messages_sent() != 1) {
    std::fprintf(stderr, "unexpected: %llu messages\n",
                 static_cast<unsigned long long>(cache.messages_sent()));
  }
  return static_cast<double>(total) / secs;
}

void Migrations(const std::string& endpoint, int count) {
  auto a = Connect(endpoint, "mig-a"), b = Connect(endpoint, "mig-b");
  StateStore sa(*a), sb(*b);
  std::vector<double> lat_us;
  lat_us.reserve(static_cast<size_t>(count));
  auto inc = [](const std::optional<std::string>& cur) {
    return std::to_string((cur ? std::stoll(*cur) : 0) + 1);
  };
  if (!sa.Update("pingpong", inc).ok()) std::exit(1);
  const auto start = steady_clock::now();
  for (int i = 0; i < count; ++i) {
    StateStore& s = (i % 2 == 0) ? sb : sa;  // always the node that does not own it
    const auto t0 = steady_clock::now();
    auto r = s.Update("pingpong", inc);
    const auto t1 = steady_clock::now();
    if (!r.ok()) {
      std::fprintf(stderr, "update: %s\n", r.status().ToString().c_str());
      std::exit(1);
    }
    lat_us.push_back(duration<double, std::micro>(t1 - t0).count());
  }
  const double secs = duration<double>(steady_clock::now() - start).count();
  std::sort(lat_us.begin(), lat_us.end());
  auto pct = [&](double p) {
    return lat_us[std::min(lat_us.size() - 1, static_cast<size_t>(p * lat_us.size()))];
  };
  auto final_value = sa.Read("pingpong");
  std::printf(
      "migration (Update on the non-owner: callback + release + grant + SetLockValue)\n"
      "  %d migrations in %.2f s: %.0f migrations/s, p50 %.0f us, p99 %.0f us (counter %s)\n",
      count, secs, count / secs, pct(0.50), pct(0.99),
      final_value.ok() ? final_value->value_or("?").c_str() : "?");
}

}  // namespace

int main(int argc, char** argv) {
  std::string endpoint;
  double seconds = 1.0;
  int migrations = 500;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--endpoint") && i + 1 < argc)
      endpoint = argv[++i];
    else if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc)
      seconds = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--migrations") && i + 1 < argc)
      migrations = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: cache_bench [--endpoint E] [--seconds N] [--migrations N]\n");
      return 2;
    }
  }
  std::unique_ptr<latchkey::testing::TempDir> dir;
  std::unique_ptr<latchkey::testing::ServerProcess> server;
  if (endpoint.empty()) {
    dir = std::make_unique<latchkey::testing::TempDir>();
    server = std::make_unique<latchkey::testing::ServerProcess>(dir->File("data"));
    if (!server->Start()) {
      std::fprintf(stderr, "server did not start\n");
      return 1;
    }
    endpoint = server->endpoint();
  }
  std::printf("cached re-acquire (CachedLock lock+unlock, no message), %.1f s each\n", seconds);
  for (int threads : {1, 2}) {
    for (LockMode m : {LockMode::kEX, LockMode::kPR}) {
      std::printf("  %d thread(s) %s: %.2f M ops/s\n", threads, m == LockMode::kEX ? "EX" : "PR",
                  CachedReacquire(endpoint, threads, seconds, m) / 1e6);
    }
  }
  Migrations(endpoint, migrations);
  return 0;
}
