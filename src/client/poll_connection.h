// Internal to the client library: a Connection whose replies a blocked
// caller can read on its own thread (design 0017).
//
// The asio StreamClient delivers every frame on its io thread, so a blocking
// call costs two wake-ups on the client: the io thread woken by the reply,
// then the caller woken by the io thread. Here the socket is a plain
// non-blocking descriptor and reading it is a token:
// - A caller blocked in Drive() takes the token and polls the socket itself.
//   Frames it reads are offered to its `inline_frame` function first; those
//   it declines (pushes, anything that may run user code) are queued for the
//   io thread. One wake-up per reply, like a blocking hiredis call.
// - The io thread reads (and delivers every frame to on_frame) only while
//   no caller drives. When a caller arrives while the io thread polls, it
//   kicks the io thread off the socket (an eventfd) and takes the token.
//   After the last caller leaves, the io thread takes reading back once the
//   connection has been without a driver for `handback`. While parked it
//   checks every handback, backing off to every 4 x handback while callers
//   keep driving, so a push that arrives right after a burst of calls is
//   read within about 5 x handback (25 ms by default).
// - Writes leave from the sending thread (non-blocking send(2) under the
//   mutex); what the kernel does not take is flushed by the io thread.
// - on_close runs exactly once, on the io thread, after every driver has
//   left the socket; it is the last callback. Frames deferred before the end
//   are delivered first, unless Close() was called.
#pragma once

#include <netdb.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "client/connection.h"

namespace latchkey::client_internal {

struct PollConnectionOptions {
  uint32_t max_frame_bytes = 4u << 20;
  size_t max_pending_write_bytes = 64u << 20;
  // Bound on flushing queued bytes after Close().
  std::chrono::milliseconds close_linger{500};
  // The io thread takes reading back after this long without a driver.
  std::chrono::milliseconds handback{5};
};

// Connects to "host:port", "[v6]:port" or "unix:/path" within `timeout`.
// INVALID_ARGUMENT for a malformed endpoint, TIMEOUT, or UNAVAILABLE.
Result<std::unique_ptr<Connection>> DialPollConnection(const std::string& endpoint,
                                                       std::chrono::milliseconds timeout,
                                                       Connection::Callbacks callbacks,
                                                       PollConnectionOptions options = {});

// Resolves a TCP host and port by the `deadline`. A numeric address never
// blocks; a name is looked up on a helper thread, which is abandoned (it
// frees its own result) if the deadline passes first: TIMEOUT then, and
// UNAVAILABLE if the name does not resolve. `lookup` is getaddrinfo except
// in tests.
using GetAddrInfoFn =
    std::function<int(const char*, const char*, const struct addrinfo*, struct addrinfo**)>;
struct AddrInfoFree {
  void operator()(struct addrinfo* a) const;
};
using AddrInfoList = std::unique_ptr<struct addrinfo, AddrInfoFree>;
Result<AddrInfoList> ResolveTcp(const std::string& host, uint16_t port,
                                std::chrono::steady_clock::time_point deadline,
                                GetAddrInfoFn lookup = ::getaddrinfo);

}  // namespace latchkey::client_internal
