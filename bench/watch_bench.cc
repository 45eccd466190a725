// watch_bench: watch delivery latency (design 0012). One writer puts a key
// (with the send time in the value) and N watchers on the key's prefix
// measure put-send -> event-received; reports p50/p99 per watcher count.
// Also times publish -> subscriber delivery the same way.
//
//   watch_bench [--endpoint HOST:PORT] [--events N] [--watchers 1,8] [--idle-exact N]
//
// --idle-exact N first registers N exact-key watches on keys nobody writes
// (raw connections of up to 1000 watches each): what the watch index saves
// (design 0013) shows as the latency the measured watchers pay for them.
//
// Without --endpoint it starts `latchkey server` itself on a temp data dir.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <thread>
#include <vector>

#include "latchkey/client.h"
#include "latchkey/objects.h"
#include "latchkey/pubsub.h"
#include "latchkey/watch.h"
#include "testlib/server_process.h"

using namespace std::chrono;

namespace {

uint64_t NowUs() {
  return static_cast<uint64_t>(
      duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count());
}

double Pct(std::vector<uint64_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))]);
}

void RunWatch(latchkey::Client& client, const std::string& ep, int watchers, int events) {
  std::vector<std::unique_ptr<latchkey::Watch>> ws;
  for (int i = 0; i < watchers; ++i) {
    latchkey::WatchOptions o;
    o.endpoint = ep;
    o.key = "bench/";
    o.prefix = true;
    auto w = latchkey::Watch::Open(o);
    if (!w.ok()) {
      std::fprintf(stderr, "watch: %s\n", w.status().ToString().c_str());
      std::exit(1);
    }
    ws.push_back(std::move(w.value()));
  }
  std::vector<std::vector<uint64_t>> lat(static_cast<size_t>(watchers));
  std::vector<std::thread> threads;
  for (int i = 0; i < watchers; ++i) {
    threads.emplace_back([&, i] {
      for (int n = 0; n < events; ++n) {
        auto ev = ws[static_cast<size_t>(i)]->Next(seconds(10));
        if (!ev.ok()) break;
        lat[static_cast<size_t>(i)].push_back(NowUs() - std::stoull(ev->value));
      }
    });
  }
  latchkey::Objects objs(client);
  std::vector<uint64_t> put_rtt;  // for comparison: the writer's own round trip
  for (int n = 0; n < events; ++n) {
    const uint64_t t0 = NowUs();
    (void)objs.Put("bench/k", std::to_string(t0));
    put_rtt.push_back(NowUs() - t0);
  }
  for (auto& t : threads) t.join();
  std::vector<uint64_t> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  std::printf(
      "{\"bench\":\"watch\",\"watchers\":%d,\"events\":%zu,\"p50_us\":%.0f,\"p99_us\":%.0f,"
      "\"put_rtt_p50_us\":%.0f}\n",
      watchers, all.size(), Pct(all, 0.5), Pct(all, 0.99), Pct(put_rtt, 0.5));
}

void RunPubSub(latchkey::Client& client, const std::string& ep, int events) {
  latchkey::SubscribeOptions o;
  o.endpoint = ep;
  o.namespace_name = "bench";
  auto sub = latchkey::Subscription::Open(o);
  if (!sub.ok()) std::exit(1);
  std::vector<uint64_t> lat;
  std::thread t([&] {
    for (int n = 0; n < events; ++n) {
      auto m = (*sub)->Next(seconds(10));
      if (!m.ok()) break;
      lat.push_back(NowUs() - std::stoull(m->payload));
    }
  });
  for (int n = 0; n < events; ++n)
    (void)latchkey::Publish(client, "bench", std::to_string(NowUs()));
  t.join();
  std::printf(
      "{\"bench\":\"pubsub\",\"subscribers\":1,\"events\":%zu,\"p50_us\":%.0f,\"p99_us\":%.0f}\n",
      lat.size(), Pct(lat, 0.5), Pct(lat, 0.99));
}

// Protobuf by hand (the bench does not link the generated code).
void Varint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
void Field(std::string* out, uint32_t num, const std::string& bytes) {
  Varint(out, (num << 3) | 2);
  Varint(out, bytes.size());
  *out += bytes;
}
std::string Frame(uint64_t id, uint32_t body_field, const std::string& body) {
  std::string req;
  Varint(&req, 1 << 3);  // Request.id
  Varint(&req, id);
  Field(&req, body_field, body);
  std::string frame;
  Field(&frame, 1, req);  // ClientFrame.request
  const uint32_t len = htonl(static_cast<uint32_t>(frame.size()));
  return std::string(reinterpret_cast<const char*>(&len), 4) + frame;
}

// Opens raw connections holding `n` exact-key watches; returns their fds
// (a thread per connection drains the replies).
std::vector<int> IdleExactWatches(const std::string& ep, int n, std::vector<std::thread>* drains) {
  std::vector<int> fds;
  const auto colon = ep.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(ep.substr(colon + 1))));
  ::inet_pton(AF_INET,
              ep.substr(0, colon) == "localhost" ? "127.0.0.1" : ep.substr(0, colon).c_str(),
              &addr.sin_addr);
  for (int done = 0; done < n;) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      std::fprintf(stderr, "idle watches: cannot connect to %s\n", ep.c_str());
      std::exit(69);
    }
    std::string hello;
    Varint(&hello, 1 << 3);
    Varint(&hello, 1);
    std::string out = Frame(1, 10, hello);
    for (int i = 0; i < 1000 && done < n; ++i, ++done) {
      std::string watch;
      Field(&watch, 1, "idle/" + std::to_string(done));
      out += Frame(static_cast<uint64_t>(i) + 2, 75, watch);
    }
    for (size_t off = 0; off < out.size();) {
      ssize_t w = ::write(fd, out.data() + off, out.size() - off);
      if (w <= 0) std::exit(69);
      off += static_cast<size_t>(w);
    }
    drains->emplace_back([fd] {
      char buf[65536];
      while (::read(fd, buf, sizeof buf) > 0) {
      }
    });
    fds.push_back(fd);
  }
  return fds;
}

}  // namespace

int main(int argc, char** argv) {
  std::string endpoint;
  int events = 2000;
  std::vector<int> watcher_counts = {1, 8};
  int idle_exact = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--endpoint") && i + 1 < argc) {
      endpoint = argv[++i];
    } else if (!std::strcmp(argv[i], "--events") && i + 1 < argc) {
      events = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--idle-exact") && i + 1 < argc) {
      idle_exact = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--watchers") && i + 1 < argc) {
      watcher_counts.clear();
      std::stringstream ss(argv[++i]);
      for (std::string x; std::getline(ss, x, ',');) watcher_counts.push_back(std::stoi(x));
    } else {
      std::fprintf(
          stderr,
          "usage: watch_bench [--endpoint E] [--events N] [--watchers 1,8] [--idle-exact N]\n");
      return 64;
    }
  }
  std::unique_ptr<latchkey::testing::TempDir> dir;
  std::unique_ptr<latchkey::testing::ServerProcess> server;
  if (endpoint.empty()) {
    dir = std::make_unique<latchkey::testing::TempDir>();
    server = std::make_unique<latchkey::testing::ServerProcess>(dir->File("data"));
    if (!server->Start()) return 69;
    endpoint = server->endpoint();
  }
  latchkey::ClientOptions o;
  o.endpoint = endpoint;
  auto client = latchkey::Client::Connect(o);
  if (!client.ok()) return 69;
  std::vector<std::thread> drains;
  std::vector<int> idle = IdleExactWatches(endpoint, idle_exact, &drains);
  if (idle_exact > 0) std::printf("{\"idle_exact_watches\":%d}\n", idle_exact);
  for (int w : watcher_counts) RunWatch(**client, endpoint, w, events);
  RunPubSub(**client, endpoint, events);
  for (int fd : idle) ::shutdown(fd, SHUT_RDWR);
  for (auto& t : drains) t.join();
  for (int fd : idle) ::close(fd);
  return 0;
}
