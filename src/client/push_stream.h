// Internal to the client library: a connection of its own that carries one
// streaming request (Watch or Subscribe) and the pushes that follow it.
// Used by Watch, ObjectMirror and Subscription; no session is involved.
//
// Thread-safety: Next and Abort may be called from any thread, one Next at
// a time. The destructor closes the connection.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "client/connection.h"
#include "common/status.h"
#include "latchkey.pb.h"

namespace latchkey::client_internal {

std::vector<std::string> SplitEndpointList(const std::string& s);
Status StatusFromWire(const v1::Error& e);

// Calls `subscribe` until it succeeds, fails with an error that retrying
// cannot fix (COMPACTED, INVALID_ARGUMENT, UNAUTHENTICATED), or `reconnect_for`
// has passed, backing off from 20 ms to 1 s between attempts; counts the
// attempts in *attempts. Returns the last status.
Status Resubscribe(std::chrono::milliseconds reconnect_for,
                   const std::function<Status()>& subscribe, uint64_t* attempts);

class PushStream {
 public:
  // Tries each endpoint of the comma-separated list in order: connects,
  // says Hello, sends `request` and waits for its reply (an error reply is
  // returned as its status).
  static Result<std::unique_ptr<PushStream>> Open(const std::string& endpoints,
                                                  const std::string& auth_token,
                                                  std::chrono::milliseconds timeout,
                                                  const v1::Request& request, v1::Response* reply);
  ~PushStream();

  // The next push, oldest first. TIMEOUT if none arrived within `timeout`;
  // UNAVAILABLE once the connection is gone and every push was taken.
  Result<v1::Push> Next(std::chrono::milliseconds timeout);
  // Drops the connection (tests: a network fault).
  void Abort();

  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<v1::ServerFrame> frames;
    bool closed = false;
    Status why;
  };

 private:
  PushStream() = default;
  std::shared_ptr<State> state_;
  std::unique_ptr<Connection> conn_;
};

}  // namespace latchkey::client_internal
