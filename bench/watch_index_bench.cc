// watch_index_bench: the cost of matching one change to its watchers with
// 1000 exact-key watches on a node (design 0013): the scan the server did
// before (every watcher compared, every watcher's next revision advanced per
// entry) against server::WatchIndex (a lookup by key).
//
//   watch_index_bench [--watchers 1000] [--changes 200000]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "server/watch_index.h"

using latchkey::server::Watcher;
using latchkey::server::WatchIndex;

int main(int argc, char** argv) {
  int watchers = 1000, changes = 200000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--watchers")) watchers = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--changes")) changes = std::atoi(argv[i + 1]);
  }
  std::map<uint64_t, Watcher> scan;
  WatchIndex index;
  for (int i = 0; i < watchers; ++i) {
    Watcher w{static_cast<uint64_t>(i % 16), "app/key/" + std::to_string(i), false, 0};
    scan[static_cast<uint64_t>(i) + 1] = w;
    index.Add(static_cast<uint64_t>(i) + 1, w);
  }
  std::vector<std::string> keys;
  for (int i = 0; i < 1024; ++i)
    keys.push_back("app/key/" + std::to_string(i * 7 % (2 * watchers)));
  size_t hits_scan = 0, hits_index = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int c = 0; c < changes; ++c) {  // the old HandleWatchChanges
    const std::string& k = keys[static_cast<size_t>(c) & 1023];
    for (auto& [id, w] : scan) {
      if (!w.prefix ? k == w.key : k.compare(0, w.key.size(), w.key) == 0) ++hits_scan;
    }
    for (auto& [id, w] : scan) w.next_revision = std::max<uint64_t>(w.next_revision, c + 1);
  }
  auto t1 = std::chrono::steady_clock::now();
  std::vector<uint64_t> ids;
  for (int c = 0; c < changes; ++c) {
    ids.clear();
    index.Match(keys[static_cast<size_t>(c) & 1023], &ids);
    hits_index += ids.size();
  }
  auto t2 = std::chrono::steady_clock::now();
  auto ns = [&](auto a, auto b) {
    return std::chrono::duration<double, std::nano>(b - a).count() / changes;
  };
  std::printf(
      "{\"bench\":\"watch_match\",\"exact_watchers\":%d,\"changes\":%d,\"scan_ns_per_change\":%.0f,"
      "\"index_ns_per_change\":%.0f,\"hits\":[%zu,%zu]}\n",
      watchers, changes, ns(t0, t1), ns(t1, t2), hits_scan, hits_index);
  return hits_scan == hits_index ? 0 : 1;
}
