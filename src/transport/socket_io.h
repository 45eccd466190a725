// Non-blocking socket writes shared by the transport's connections and the
// client's PollConnection.
#pragma once

#include <cstddef>
#include <string_view>

namespace latchkey::transport {

// Writes what non-blocking send(2) calls take of `data` (MSG_DONTWAIT |
// MSG_NOSIGNAL, EINTR retried) and returns how many bytes that was.
// *error is 0 when everything was written or the kernel stopped taking bytes
// (EAGAIN), otherwise the errno of the failed send.
size_t SendNonBlocking(int fd, std::string_view data, int* error);

}  // namespace latchkey::transport
