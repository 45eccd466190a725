#include "transport/frame.h"

#include <limits>

namespace latchkey::transport {
namespace {

// Buffers larger than this are released (not just cleared) once drained, so a
// single huge frame does not pin its memory for the life of the stream.
constexpr size_t kKeepCapacityBytes = 1u << 20;

uint32_t LoadBigEndian32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | uint32_t{u[3]};
}

}  // namespace

void AppendFrame(std::string_view payload, std::string* out) {
  LATCHKEY_CHECK(payload.size() <= std::numeric_limits<uint32_t>::max());
  const auto n = static_cast<uint32_t>(payload.size());
  const char header[kFrameHeaderBytes] = {
      static_cast<char>((n >> 24) & 0xff), static_cast<char>((n >> 16) & 0xff),
      static_cast<char>((n >> 8) & 0xff), static_cast<char>(n & 0xff)};
  out->append(header, kFrameHeaderBytes);
  out->append(payload.data(), payload.size());
}

std::string EncodeFrame(std::string_view payload) {
  std::string out;
  out.reserve(kFrameHeaderBytes + payload.size());
  AppendFrame(payload, &out);
  return out;
}

void FrameDecoder::Feed(const char* data, size_t n) {
  if (failed_) return;  // the stream is unusable; do not buffer any more
  if (pos_ > 0) {
    if (pos_ == buf_.size()) {
      if (buf_.capacity() > kKeepCapacityBytes) {
        std::string().swap(buf_);
      } else {
        buf_.clear();
      }
      pos_ = 0;
    } else if (pos_ >= buf_.size() - pos_) {
      // At least half of the buffer is consumed: moving the rest costs no
      // more than the bytes already consumed, so compaction is amortized O(1).
      buf_.erase(0, pos_);
      pos_ = 0;
    }
  }
  if (n == 0) return;
  buf_.append(data, n);
}

Result<bool> FrameDecoder::Next(std::string_view* payload_out) {
  if (!failed_) {
    const size_t avail = buf_.size() - pos_;
    if (avail < kFrameHeaderBytes) return false;
    const uint32_t len = LoadBigEndian32(buf_.data() + pos_);
    if (len > max_frame_bytes_) {
      failed_ = true;
      failed_len_ = len;
      std::string().swap(buf_);
      pos_ = 0;
    } else {
      if (avail - kFrameHeaderBytes < len) return false;
      *payload_out = std::string_view(buf_.data() + pos_ + kFrameHeaderBytes, len);
      pos_ += kFrameHeaderBytes + len;
      return true;
    }
  }
  return Status(Code::kFrameTooLarge, "frame of " + std::to_string(failed_len_) +
                                          " bytes exceeds the limit of " +
                                          std::to_string(max_frame_bytes_) + " bytes");
}

}  // namespace latchkey::transport
