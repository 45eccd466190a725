// Length-prefixed framing: each frame is a 4-byte big-endian payload length
// followed by the payload. Knows nothing about what the payload means.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace latchkey::transport {

inline constexpr size_t kFrameHeaderBytes = 4;
inline constexpr uint32_t kDefaultMaxFrameBytes = 4u << 20;  // 4 MiB

// Appends header + payload to out.
void AppendFrame(std::string_view payload, std::string* out);
std::string EncodeFrame(std::string_view payload);

// Incremental decoder. Not thread-safe.
class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_frame_bytes = kDefaultMaxFrameBytes)
      : max_frame_bytes_(max_frame_bytes) {}

  // Appends raw bytes from the stream. Memory stays bounded by roughly one
  // partial frame plus the bytes of the last Feed() (consumed bytes are
  // compacted away, amortized O(1) per byte). Once failed, input is dropped.
  void Feed(const char* data, size_t n);

  // Next complete frame payload, if any. The view stays valid until the next
  // call to Feed() or Next(). Returns FRAME_TOO_LARGE (and stays failed) when
  // a header announces more than max_frame_bytes; the stream is then unusable.
  // Returns OK with *payload_out untouched and false when more bytes are needed.
  Result<bool> Next(std::string_view* payload_out);

  size_t buffered_bytes() const { return buf_.size() - pos_; }
  bool failed() const { return failed_; }
  uint32_t max_frame_bytes() const { return max_frame_bytes_; }

 private:
  uint32_t max_frame_bytes_;
  std::string buf_;
  size_t pos_ = 0;
  bool failed_ = false;
  uint32_t failed_len_ = 0;  // the announced length that failed the stream
};

}  // namespace latchkey::transport
