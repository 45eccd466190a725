// Helpers for hand-written histories in the checkers' unit tests.
#pragma once

#include <string>
#include <vector>

#include "checkers/history.h"

namespace latchkey::checkers::testing {

// Builds a history with explicit times (ms, stored as ns).
class H {
 public:
  H& Invoke(int64_t p, const std::string& op, const std::string& key, int64_t ms,
            const std::string& value = "", const std::string& expect = "", uint64_t session = 0) {
    return Push(EventType::kInvoke, p, op, key, ms, value, expect, 0, session, "");
  }
  H& Ok(int64_t p, const std::string& op, const std::string& key, int64_t ms,
        const std::string& value = "", uint64_t token = 0, uint64_t session = 0) {
    return Push(EventType::kOk, p, op, key, ms, value, "", token, session, "");
  }
  H& Fail(int64_t p, const std::string& op, const std::string& key, int64_t ms,
          const std::string& error = "", uint64_t session = 0) {
    return Push(EventType::kFail, p, op, key, ms, "", "", 0, session, error);
  }
  H& Info(int64_t p, const std::string& op, const std::string& key, int64_t ms,
          const std::string& error = "", uint64_t session = 0) {
    return Push(EventType::kInfo, p, op, key, ms, "", "", 0, session, error);
  }
  // A whole operation at once.
  H& Op(int64_t p, const std::string& op, const std::string& key, int64_t from, int64_t to,
        const std::string& value = "", uint64_t token = 0) {
    Invoke(p, op, key, from, op == "read" ? "" : value);
    return Ok(p, op, key, to, value, token);
  }
  H& Cas(int64_t p, const std::string& key, int64_t from, int64_t to, const std::string& expect,
         const std::string& value, bool swapped) {
    Invoke(p, "cas", key, from, value, expect);
    return swapped ? Ok(p, "cas", key, to) : Fail(p, "cas", key, to, "mismatch");
  }
  // Sets the revision of the last event (object writes, reads, watch events).
  H& Rev(uint64_t revision) {
    events_.back().revision = revision;
    return *this;
  }
  std::vector<Event> events() const { return events_; }
  std::vector<Operation> ops() const { return Pair(events_); }

 private:
  H& Push(EventType t, int64_t p, const std::string& op, const std::string& key, int64_t ms,
          const std::string& value, const std::string& expect, uint64_t token, uint64_t session,
          const std::string& error) {
    Event e;
    e.type = t;
    e.process = p;
    e.op = op;
    e.key = key;
    e.value = value;
    e.expect = expect;
    e.token = token;
    e.session = session;
    e.time = ms * 1'000'000;
    e.error = error;
    events_.push_back(e);
    return *this;
  }
  std::vector<Event> events_;
};

}  // namespace latchkey::checkers::testing
