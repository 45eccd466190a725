// libFuzzer target for transport::FrameDecoder.
//
//   clang++-14 -std=c++20 -fsanitize=fuzzer,address -Isrc \
//     tests/fuzz/frame_decoder_fuzz.cc src/transport/frame.cc src/common/status.cc
//
// Input layout: byte 0 picks the max frame size, byte 1 seeds the chunking,
// the rest is the byte stream, fed in pseudo-random chunk sizes. Checks the
// decoder's contract: payloads never exceed the max, failure is sticky and
// FRAME_TOO_LARGE, the buffer stays bounded, and decoded frames re-encode to
// exactly the consumed prefix of the stream.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "transport/frame.h"

using latchkey::Code;
using latchkey::Result;
using latchkey::transport::AppendFrame;
using latchkey::transport::FrameDecoder;
using latchkey::transport::kFrameHeaderBytes;

namespace {
void Require(bool cond) {
  if (!cond) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static constexpr uint32_t kMaxes[] = {0, 1, 3, 4, 16, 255, 256, 4096, 65536};
  const uint32_t max = kMaxes[data[0] % (sizeof kMaxes / sizeof kMaxes[0])];
  uint32_t rng = 0x9e3779b9u ^ data[1];
  const char* stream = reinterpret_cast<const char*>(data + 2);
  const size_t n = size - 2;

  FrameDecoder decoder(max);
  std::string reencoded;
  bool failed = false;
  size_t off = 0;
  while (off < n) {
    rng = rng * 1664525u + 1013904223u;
    const size_t chunk = std::min<size_t>(1 + (rng >> 24) % 64, n - off);
    decoder.Feed(stream + off, chunk);
    off += chunk;
    for (;;) {
      std::string_view payload;
      Result<bool> r = decoder.Next(&payload);
      if (!r.ok()) {
        Require(r.status().code() == Code::kFrameTooLarge);
        failed = true;
        break;
      }
      Require(!failed);
      if (!*r) break;
      Require(payload.size() <= max);
      AppendFrame(payload, &reencoded);
    }
    if (!failed) Require(decoder.buffered_bytes() <= size_t{max} + kFrameHeaderBytes + 64);
  }
  if (!failed) {
    Require(reencoded.size() + decoder.buffered_bytes() == n);
    Require(std::string_view(stream, reencoded.size()) == reencoded);
  }
  return 0;
}
