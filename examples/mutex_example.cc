// The README's C++ example, compiled with the project so it stays true.
//   ./build/examples/mutex_example [HOST:PORT]
#include <chrono>
#include <cstdio>
#include <mutex>

#include "latchkey/client.h"
#include "latchkey/mutex.h"

int main(int argc, char** argv) {
  latchkey::ClientOptions options;
  options.endpoint = argc > 1 ? argv[1] : "127.0.0.1:7411";
  options.client_name = "release-bot";
  auto client = latchkey::Client::Connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "cannot connect: %s\n", client.status().ToString().c_str());
    return 1;
  }
  latchkey::Mutex m(**client, "build.artifacts");
  {
    std::lock_guard<latchkey::Mutex> g(m);  // throws latchkey::Error if it cannot lock
    std::printf("holding %s with fencing token %llu\n", m.name().c_str(),
                static_cast<unsigned long long>(m.fencing_token()));
  }
  if (m.try_lock_for(std::chrono::seconds(2))) {
    std::printf("took it again: token %llu\n", static_cast<unsigned long long>(m.fencing_token()));
    m.unlock();
  }
  latchkey::Status s = m.LockFor(std::chrono::seconds(2));  // errors as values
  std::printf("LockFor: %s\n", s.ToString().c_str());
  if (s.ok()) (void)m.Unlock();
  return 0;
}
