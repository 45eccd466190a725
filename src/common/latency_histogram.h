// A fixed-bucket latency histogram for Prometheus (`_bucket`, `_sum`,
// `_count`): what a server measures about its own io (the Raft log's append
// latency, RaftInfo). Not thread-safe: one owner thread records, readers get
// a copy from it.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace latchkey {

class LatencyHistogram {
 public:
  // Upper bounds of the buckets, in microseconds (the last bucket, +Inf, is
  // implicit): from 100 µs, a sync write on fast storage, to 5 s, a disk
  // that is failing.
  static constexpr std::array<uint64_t, 15> kUpperBoundsUs = {
      100,    250,     500,     1'000,   2'500,     5'000,     10'000,   25'000,
      50'000, 100'000, 250'000, 500'000, 1'000'000, 2'500'000, 5'000'000};

  void Record(std::chrono::nanoseconds d) {
    const uint64_t ns = d.count() < 0 ? 0 : static_cast<uint64_t>(d.count());
    const uint64_t us = ns / 1000;
    size_t i = 0;
    while (i < kUpperBoundsUs.size() && us > kUpperBoundsUs[i]) ++i;
    ++counts_[i];
    ++count_;
    sum_ns_ += ns;
  }

  uint64_t count() const { return count_; }
  double sum_seconds() const { return static_cast<double>(sum_ns_) / 1e9; }
  // Observations at or below kUpperBoundsUs[i] (i < size), or all of them
  // (i == size, the +Inf bucket): Prometheus's cumulative `le` counts.
  uint64_t CumulativeCount(size_t i) const {
    uint64_t n = 0;
    for (size_t k = 0; k <= i && k < counts_.size(); ++k) n += counts_[k];
    return n;
  }

  // Appends `# HELP`, `# TYPE` and the _bucket/_sum/_count lines of `name`.
  void AppendPrometheus(std::string* out, const std::string& name, const std::string& help) const {
    *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
    for (size_t i = 0; i <= kUpperBoundsUs.size(); ++i) {
      std::string le = "+Inf";
      if (i < kUpperBoundsUs.size()) le = FormatSeconds(kUpperBoundsUs[i]);
      *out += name + "_bucket{le=\"" + le + "\"} " + std::to_string(CumulativeCount(i)) + "\n";
    }
    char sum[64];
    std::snprintf(sum, sizeof sum, "%.6f", sum_seconds());
    *out += name + "_sum " + sum + "\n" + name + "_count " + std::to_string(count_) + "\n";
  }

 private:
  // 2500 µs -> "0.0025": exact decimal, no trailing zeros.
  static std::string FormatSeconds(uint64_t us) {
    std::string s = std::to_string(us / 1'000'000);
    uint64_t frac = us % 1'000'000;
    if (frac == 0) return s;
    std::string f = std::to_string(frac);
    f = std::string(6 - f.size(), '0') + f;
    while (f.back() == '0') f.pop_back();
    return s + "." + f;
  }

  std::array<uint64_t, kUpperBoundsUs.size() + 1> counts_{};
  uint64_t count_ = 0;
  uint64_t sum_ns_ = 0;
};

}  // namespace latchkey
