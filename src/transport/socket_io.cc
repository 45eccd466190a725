#include "transport/socket_io.h"

#include <sys/socket.h>

#include <cerrno>

namespace latchkey::transport {

size_t SendNonBlocking(int fd, std::string_view data, int* error) {
  *error = 0;
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) *error = errno;
    break;
  }
  return off;
}

}  // namespace latchkey::transport
