// Configuration push and cross-node cache invalidation (design 0012),
// compiled with the project so it stays true.
//   ./build/examples/config_example [HOST:PORT]
// Mirrors every object under "config/" and prints each change; a
// SynchronizedObject drops cache entries when any instance says so.
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "latchkey/client.h"
#include "latchkey/objects.h"
#include "latchkey/synchronized_object.h"
#include "latchkey/watch.h"

namespace {

class PriceCache : public latchkey::SynchronizedObject {
 public:
  PriceCache(latchkey::Client& c, std::string endpoint)
      : SynchronizedObject(c, std::move(endpoint), "prices") {}
  ~PriceCache() override { Stop(); }

 protected:
  void receive(const std::string& cmd) override {
    std::lock_guard lk(mu_);
    std::printf("cache: %s\n", cmd.c_str());
    if (cmd.rfind("drop ", 0) == 0) prices_.erase(cmd.substr(5));
  }
  void resynchronize() override {
    std::lock_guard lk(mu_);
    prices_.clear();  // commands may have been missed while disconnected
  }

 private:
  std::mutex mu_;
  std::map<std::string, double> prices_;
};

}  // namespace

int main(int argc, char** argv) {
  const std::string endpoint = argc > 1 ? argv[1] : "127.0.0.1:7411";
  latchkey::ClientOptions options;
  options.endpoint = endpoint;
  auto client = latchkey::Client::Connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "cannot connect: %s\n", client.status().ToString().c_str());
    return 1;
  }
  latchkey::WatchOptions w;
  w.endpoint = endpoint;
  w.key = "config/";
  auto mirror = latchkey::ObjectMirror::Start(**client, w, [](const latchkey::Object& o) {
    std::printf("config %s %s\n", o.key.c_str(),
                o.state == latchkey::ObjectState::kAbsent ? "removed" : o.value.c_str());
  });
  if (!mirror.ok()) {
    std::fprintf(stderr, "mirror: %s\n", mirror.status().ToString().c_str());
    return 1;
  }
  PriceCache cache(**client, endpoint);
  if (!cache.Start().ok()) return 1;
  latchkey::Objects objects(**client);
  auto rev = objects.Put("config/feature.x", "on");
  (void)cache.send("drop sku-42");
  if (rev.ok()) (*mirror)->WaitForRevision(*rev, std::chrono::seconds(5));
  std::printf("mirror has %zu keys at revision %llu\n", (*mirror)->Values().size(),
              static_cast<unsigned long long>((*mirror)->revision()));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the cache print
  return 0;
}
