// Helper process for cache_integration_test: increments a counter kept as
// owned state (StateStore) `count` times and prints one line per
// acknowledged increment ("ack <value>"), flushed, so a test that SIGKILLs
// it knows which increments were acknowledged before the kill.
//   state_worker ENDPOINT KEY COUNT SESSION_TTL_MS [hold]
// With "hold" it keeps the key cached after the last increment and waits
// (printing "holding") until it is killed.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "latchkey/client.h"
#include "latchkey/state_store.h"

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::fprintf(stderr, "usage: state_worker ENDPOINT KEY COUNT SESSION_TTL_MS [hold]\n");
    return 2;
  }
  latchkey::ClientOptions o;
  o.endpoint = argv[1];
  o.client_name = "state-worker";
  o.session_ttl = std::chrono::milliseconds(std::atoi(argv[4]));
  auto client = latchkey::Client::Connect(o);
  if (!client.ok()) {
    std::fprintf(stderr, "connect: %s\n", client.status().ToString().c_str());
    return 1;
  }
  const std::string key = argv[2];
  const int count = std::atoi(argv[3]);
  {
    latchkey::StateStore store(**client);
    std::printf("ready\n");
    std::fflush(stdout);
    for (int i = 0; i < count; ++i) {
      auto r = store.Update(key, [](const std::optional<std::string>& cur) {
        return std::to_string((cur ? std::stoll(*cur) : 0) + 1);
      });
      if (!r.ok()) {
        std::fprintf(stderr, "update: %s\n", r.status().ToString().c_str());
        return 1;
      }
      std::printf("ack %s\n", r->value_or("").c_str());
      std::fflush(stdout);
    }
    if (argc == 6) {
      std::printf("holding\n");
      std::fflush(stdout);
      for (;;) pause();
    }
  }
  return 0;
}
