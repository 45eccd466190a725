// History of client operations for the nemesis checkers (design record 0011).
//
// A history is a sequence of events, one JSON object per line (JSONL):
//   {"type":"invoke","process":3,"op":"acquire","key":"nemesis.lock",
//    "value":"","expect":"","token":0,"session":17,"time":123456789,"error":"",
//    "revision":0}
// - type: invoke, ok, fail (definitely did not take effect) or info (outcome
//   unknown: it may or may not have taken effect, e.g. MAYBE_APPLIED).
// - process: one sequential actor; a completion (ok/fail/info) belongs to the
//   latest invoke of the same process. A process has at most one operation
//   in flight.
// - time: nanoseconds of CLOCK_MONOTONIC (shared by every process on one
//   machine, so histories of several worker processes merge by time).
// Events of other kinds (e.g. "session_lost" notes) use type "info" with no
// open invoke: Pair() reports them as standalone notes.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace latchkey::checkers {

enum class EventType { kInvoke, kOk, kFail, kInfo };

struct Event {
  EventType type = EventType::kInvoke;
  int64_t process = 0;
  std::string op{};      // acquire, release, incr, read, write, cas, session_lost, ...
  std::string key{};     // lock name or resource key
  std::string value{};   // written / read value
  std::string expect{};  // cas: the expected value
  uint64_t token = 0;    // fencing token (acquire ok, resource ops)
  uint64_t session = 0;  // Latchkey session id of the process at the time
  int64_t time = 0;      // monotonic ns
  std::string error{};   // fail / info: why
  // Object store (design 0008): the revision a write got, or the
  // mod_revision of the object a read returned; a watch event's revision.
  uint64_t revision = 0;
};

// CLOCK_MONOTONIC in nanoseconds.
int64_t MonotonicNanos();

const char* TypeName(EventType t);
std::string ToJson(const Event& e);
// Parses one line written by ToJson (a flat object of string and integer
// members; unknown members are ignored). nullopt on malformed input.
std::optional<Event> FromJson(const std::string& line);

// Reads a JSONL file; malformed lines are returned in *bad (if given).
std::vector<Event> ReadHistory(const std::string& path, std::vector<std::string>* bad = nullptr);
// Merges several histories by time (stable for equal times).
std::vector<Event> MergeByTime(std::vector<std::vector<Event>> parts);

// Appends events to a JSONL file, one line each, flushed per event (a worker
// killed or stopped mid-run leaves every earlier event on disk).
// Thread-safe.
class HistoryWriter {
 public:
  explicit HistoryWriter(const std::string& path);
  ~HistoryWriter();
  HistoryWriter(const HistoryWriter&) = delete;
  HistoryWriter& operator=(const HistoryWriter&) = delete;
  bool ok() const { return fd_ >= 0; }
  // Stamps e.time if it is 0.
  void Append(Event e);

 private:
  std::mutex mu_;
  int fd_ = -1;
};

// One operation: an invoke with its completion (if any).
struct Operation {
  int64_t process = 0;
  std::string op{};
  std::string key{};
  std::string value{};   // invoke's value, or the ok's value if it has one (reads)
  std::string expect{};  // cas
  uint64_t token = 0;    // the completion's token if set, else the invoke's
  uint64_t session = 0;
  int64_t invoke_time = 0;
  int64_t complete_time = 0;             // INT64_MAX when the completion is info or missing
  EventType outcome = EventType::kInfo;  // kOk, kFail or kInfo (info / missing)
  std::string error{};
  uint64_t revision = 0;  // the completion's revision (objects), 0 = none
};

// Pairs invokes with completions per process. Completions without an invoke
// (notes such as session_lost) are returned in *notes if given.
std::vector<Operation> Pair(const std::vector<Event>& history, std::vector<Event>* notes = nullptr);

}  // namespace latchkey::checkers
