// Pub/sub by namespace (design 0012). Publish goes through the replicated
// log, so messages are totally ordered with lock grants and object writes.
// A Subscription receives every message published to its namespace while
// its connection is open, in publish order; messages published while it is
// disconnected are not replayed (Next reports UNAVAILABLE: subscribe again
// and resynchronize, as SynchronizedObject does).
//
// Thread-safety: one thread calls Subscription::Next at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "latchkey/client.h"
#include "latchkey/status.h"

namespace latchkey {

struct Message {
  std::string namespace_name;
  std::string payload;
  uint64_t revision = 0;  // the message's position in the log order
};

struct SubscribeOptions {
  std::string endpoint = "127.0.0.1:7411";  // comma-separated; any node serves it
  std::string auth_token{};                 // as ClientOptions::auth_token
  std::string namespace_name{};
  std::chrono::milliseconds connect_timeout{5'000};
};

// Publishes `payload` (at most 512 KiB) to every subscriber of the
// namespace (1..256 bytes). Returns the message's revision.
Result<uint64_t> Publish(Client& client, std::string_view namespace_name, std::string_view payload);

class Subscription {
 public:
  static Result<std::unique_ptr<Subscription>> Open(SubscribeOptions options);
  ~Subscription();
  // The next message; TIMEOUT if none arrived in time; UNAVAILABLE once the
  // connection is lost (final).
  Result<Message> Next(std::chrono::milliseconds timeout);
  // Messages with a revision above this one will be delivered.
  uint64_t start_revision() const { return start_revision_; }
  void DropConnectionForTesting();

  struct Impl;

 private:
  Subscription();
  std::unique_ptr<Impl> impl_;
  uint64_t start_revision_ = 0;
};

}  // namespace latchkey
