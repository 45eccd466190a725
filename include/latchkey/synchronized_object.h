// latchkey::SynchronizedObject: a base class for objects that keep a local
// state (e.g. a cache) in step across nodes by exchanging commands through a
// pub/sub namespace (seed 001's SynchronizedObject; design 0012).
//
//   class PriceCache : public latchkey::SynchronizedObject {
//    public:
//     PriceCache(Client& c, std::string ep) : SynchronizedObject(c, std::move(ep), "prices") {}
//     ~PriceCache() override { Stop(); }  // before members go away
//     void Invalidate(const std::string& sku) { (void)send("drop " + sku); }
//    protected:
//     void receive(const std::string& cmd) override { ... erase the entry ... }
//     void resynchronize() override { ... clear everything ... }
//   };
//
// Contract:
// - send(cmd) publishes through the log: every started instance, including
//   the sender, receives every command in the same order.
// - receive runs on the object's own thread, one command at a time.
// - After a lost connection the object re-subscribes and calls
//   resynchronize() first: commands published meanwhile were not seen.
// - Derived classes must call Stop() in their destructor (the thread calls
//   the virtual functions). The Client must outlive the object.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "latchkey/client.h"
#include "latchkey/pubsub.h"
#include "latchkey/status.h"

namespace latchkey {

class SynchronizedObject {
 public:
  // `endpoint`: where to subscribe (any node; comma-separated list).
  SynchronizedObject(Client& client, std::string endpoint, std::string namespace_name);
  virtual ~SynchronizedObject();
  SynchronizedObject(const SynchronizedObject&) = delete;
  SynchronizedObject& operator=(const SynchronizedObject&) = delete;

  // Subscribes and starts the receive thread. Commands published after
  // Start returns are received.
  Status Start();
  // Stops the thread; idempotent. No callback runs after it returns.
  void Stop();
  // Publishes a command to every instance of this namespace.
  Status send(std::string_view command);
  const std::string& namespace_name() const { return namespace_; }
  // Test hook: drop the subscription's connection.
  void DropConnectionForTesting();

 protected:
  virtual void receive(const std::string& command) = 0;
  virtual void resynchronize() {}

 private:
  void Run();
  Client& client_;
  std::string endpoint_;
  std::string namespace_;
  std::mutex mu_;  // guards replacing sub_ (Run) against DropConnectionForTesting
  std::unique_ptr<Subscription> sub_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace latchkey
