// Clock interface: the only way code outside the core reads time, so tests
// can substitute a manual clock. The core never reads a clock: time reaches
// it inside log entries.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace latchkey {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch (wall clock: stamped into log entries
  // so that ages shown to users are meaningful).
  virtual uint64_t WallMs() const = 0;
  // Monotonic milliseconds from an arbitrary origin (for deadlines).
  virtual uint64_t MonoMs() const = 0;
};

class SystemClock final : public Clock {
 public:
  uint64_t WallMs() const override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  }
  uint64_t MonoMs() const override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
  }
  static SystemClock& Instance() {
    static SystemClock clock;
    return clock;
  }
};

// Thread-safe manual clock for tests.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(uint64_t start_ms = 1'000'000) : now_(start_ms) {}
  uint64_t WallMs() const override { return now_.load(); }
  uint64_t MonoMs() const override { return now_.load(); }
  void Advance(uint64_t ms) { now_ += ms; }

 private:
  std::atomic<uint64_t> now_;
};

}  // namespace latchkey
