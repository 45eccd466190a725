// The 8-byte entry envelope every Latchkey log entry is wrapped in before it
// reaches libraft. Internal to the replication adapter (raft_node.cc and the
// simulation fixture raft_sim.cc share it); raft-free.
//
// Why: libraft 0.15's segment and network decoders assume every entry's data
// length is a multiple of 8 (they skip padding the writers never wrote), so an
// odd-length entry corrupts the log on disk. Every command entry is written as
//   [0..1] 'L' 'K'   [2] envelope version (1)   [3] reserved (0)
//   [4..7] payload length, little endian   [8..] payload, zero-padded to 8.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace latchkey::replication::envelope {

inline constexpr size_t kHeader = 8;
inline constexpr uint8_t kVersion = 1;

inline size_t Size(size_t payload) {
  return kHeader + ((payload + 7) / 8) * 8;
}

// REQUIRES: out has room for Size(payload.size()) bytes.
inline void Encode(std::string_view payload, uint8_t* out) {
  const size_t total = Size(payload.size());
  std::memset(out, 0, total);
  out[0] = 'L';
  out[1] = 'K';
  out[2] = kVersion;
  const auto len = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) out[4 + i] = static_cast<uint8_t>(len >> (8 * i));
  if (!payload.empty()) std::memcpy(out + kHeader, payload.data(), payload.size());
}

// Returns the payload, or nullopt if buf is not an envelope this code wrote.
inline std::optional<std::string_view> Decode(const void* base, size_t len) {
  const auto* p = static_cast<const uint8_t*>(base);
  if (p == nullptr || len < kHeader || p[0] != 'L' || p[1] != 'K' || p[2] != kVersion) {
    return std::nullopt;
  }
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= static_cast<uint32_t>(p[4 + i]) << (8 * i);
  if (Size(n) != len) return std::nullopt;
  return std::string_view(reinterpret_cast<const char*>(p + kHeader), n);
}

}  // namespace latchkey::replication::envelope
