// A bound, listening socket for an Endpoint, shared by both listeners (the
// asio Listener and the LoopListener): TCP with SO_REUSEADDR, or a unix
// socket, replacing a stale socket file but never a live server's.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "common/status.h"
#include "transport/endpoint.h"

namespace latchkey::transport::internal {

struct ListenSocket {
  int fd = -1;          // non-blocking, close-on-exec; the caller closes it
  bool is_v6 = false;   // TCP: the address family
  std::string address;  // the bound address with the real port, or "unix:/path"
  uint16_t port = 0;    // 0 for unix sockets
  // unix: the socket file this process created (RemoveSocketFile only
  // removes that one, not a file a later server put at the same path).
  std::string path;
  bool unix_bound = false;
  ino_t unix_ino = 0;
  dev_t unix_dev = 0;
};

// UNAVAILABLE naming the address and what to do (address in use, cannot
// resolve...), INVALID_ARGUMENT for a unix path that is too long.
Result<ListenSocket> OpenListenSocket(const Endpoint& endpoint);

// Removes the unix socket file `s` created, if it is still that file.
void RemoveSocketFile(const ListenSocket& s);

// "127.0.0.1:53422" / "[::1]:53422" for a connected TCP socket, "unix" for a
// unix one, "unknown" when the peer cannot be read.
std::string PeerName(int fd);

}  // namespace latchkey::transport::internal
