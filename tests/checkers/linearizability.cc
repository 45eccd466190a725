#include "checkers/linearizability.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <sstream>
#include <unordered_set>

namespace latchkey::checkers {

namespace {

enum class Kind { kRead, kWrite, kCas };

struct LinOp {
  Kind kind = Kind::kRead;
  std::string value, expect;
  bool unknown = false;  // info: may take effect any time after the call, or never
  const Operation* source = nullptr;
};

// Register semantics. For an unknown cas the outcome is unknown too: it
// swaps if it can, and otherwise is a no-op (it "failed").
bool Step(const LinOp& op, const std::string& state, std::string* next) {
  switch (op.kind) {
    case Kind::kRead: *next = state; return state == op.value;
    case Kind::kWrite: *next = op.value; return true;
    case Kind::kCas:
      if (state == op.expect) {
        *next = op.value;
        return true;
      }
      *next = state;
      return op.unknown;
  }
  return false;
}

// Entries of the WGL list: a call and a return per operation, in time order,
// between a head and a tail sentinel.
struct Node {
  bool is_call = false;
  size_t op = 0;
  size_t match = 0;  // the other entry of the same operation
  size_t prev = 0, next = 0;
};

std::string Quote(const std::string& s) {
  return "\"" + s + "\"";
}

std::string DescribeOp(const LinOp& op) {
  std::ostringstream o;
  const Operation& s = *op.source;
  o << "process " << s.process << " ";
  switch (op.kind) {
    case Kind::kRead: o << "read " << Quote(op.value); break;
    case Kind::kWrite: o << "write " << Quote(op.value); break;
    case Kind::kCas: o << "cas " << Quote(op.expect) << "->" << Quote(op.value); break;
  }
  if (op.unknown) o << " (outcome unknown)";
  o.setf(std::ios::fixed);
  o.precision(3);
  o << " [" << static_cast<double>(s.invoke_time) / 1e9 << "s..";
  if (s.complete_time == INT64_MAX) {
    o << "?]";
  } else {
    o << static_cast<double>(s.complete_time) / 1e9 << "s]";
  }
  return o.str();
}

}  // namespace

CheckResult CheckRegisterLinearizable(const std::vector<Operation>& ops, const std::string& key,
                                      const LinearizabilityOptions& options) {
  CheckResult result{"linearizable(" + key + ")", {}};
  std::vector<LinOp> lin;
  for (const Operation& op : ops) {
    if (op.key != key) continue;
    LinOp l;
    l.source = &op;
    l.value = op.value;
    l.expect = op.expect;
    if (op.op == options.read_op) {
      if (op.outcome != EventType::kOk) continue;
      l.kind = Kind::kRead;
    } else if (op.op == options.write_op || op.op == options.cas_op) {
      if (op.outcome == EventType::kFail) continue;
      l.kind = op.op == options.write_op ? Kind::kWrite : Kind::kCas;
      l.unknown = op.outcome == EventType::kInfo;
    } else {
      continue;
    }
    lin.push_back(std::move(l));
  }
  const size_t n = lin.size();
  if (n == 0) return result;

  // Entries sorted by time; at equal times calls come first (the operations
  // are then taken as concurrent, the permissive reading).
  struct Stamp {
    int64_t time;
    bool is_call;
    size_t op;
  };
  std::vector<Stamp> stamps;
  for (size_t i = 0; i < n; ++i) {
    const Operation& s = *lin[i].source;
    stamps.push_back({s.invoke_time, true, i});
    stamps.push_back({lin[i].unknown ? INT64_MAX : s.complete_time, false, i});
  }
  std::stable_sort(stamps.begin(), stamps.end(), [](const Stamp& a, const Stamp& b) {
    if (a.time != b.time) return a.time < b.time;
    return a.is_call && !b.is_call;
  });
  const size_t head = 0, tail = 2 * n + 1;
  std::vector<Node> nodes(2 * n + 2);
  std::vector<size_t> call_of(n), ret_of(n);
  for (size_t k = 0; k < stamps.size(); ++k) {
    Node& nd = nodes[k + 1];
    nd.is_call = stamps[k].is_call;
    nd.op = stamps[k].op;
    (nd.is_call ? call_of : ret_of)[nd.op] = k + 1;
  }
  for (size_t k = 0; k <= 2 * n + 1; ++k) {
    nodes[k].prev = k == 0 ? 0 : k - 1;
    nodes[k].next = k == tail ? tail : k + 1;
  }
  for (size_t i = 0; i < n; ++i) {
    nodes[call_of[i]].match = ret_of[i];
    nodes[ret_of[i]].match = call_of[i];
  }
  auto unlink = [&](size_t k) {
    nodes[nodes[k].prev].next = nodes[k].next;
    nodes[nodes[k].next].prev = nodes[k].prev;
  };
  auto relink = [&](size_t k) {
    nodes[nodes[k].prev].next = k;
    nodes[nodes[k].next].prev = k;
  };

  std::vector<uint64_t> linearized((n + 63) / 64, 0);
  auto memo_key = [&](const std::string& state) {
    std::string k(reinterpret_cast<const char*>(linearized.data()), linearized.size() * 8);
    k.push_back('\0');
    k += state;
    return k;
  };
  std::unordered_set<std::string> seen;
  struct Frame {
    size_t call;
    std::string state;
  };
  std::vector<Frame> stack;
  std::string state = options.initial_value;
  size_t entry = nodes[head].next;
  size_t steps = 0;
  // The deepest point reached, to explain a failure.
  size_t best_depth = 0;
  std::string best_state = state;
  size_t best_stuck = SIZE_MAX;

  while (nodes[head].next != tail) {
    if (++steps > options.max_steps) {
      result.violations.push_back("unknown: search budget of " + std::to_string(options.max_steps) +
                                  " steps exhausted with " + std::to_string(n) + " operations");
      return result;
    }
    const Node& nd = nodes[entry];
    if (entry != tail && nd.is_call) {
      std::string next;
      const size_t op = nd.op;
      if (Step(lin[op], state, &next)) {
        linearized[op / 64] |= uint64_t{1} << (op % 64);
        if (seen.insert(memo_key(next)).second) {
          stack.push_back({entry, state});
          state = std::move(next);
          unlink(entry);
          unlink(nodes[entry].match);
          entry = nodes[head].next;
          continue;
        }
        linearized[op / 64] &= ~(uint64_t{1} << (op % 64));
      }
      entry = nodes[entry].next;
      continue;
    }
    // A return whose call could not be linearized before it (or the end of
    // the list): backtrack.
    if (stack.size() >= best_depth) {
      best_depth = stack.size();
      best_state = state;
      best_stuck = entry == tail ? SIZE_MAX : nd.op;
    }
    if (stack.empty()) break;
    Frame f = std::move(stack.back());
    stack.pop_back();
    state = std::move(f.state);
    const size_t op = nodes[f.call].op;
    linearized[op / 64] &= ~(uint64_t{1} << (op % 64));
    relink(nodes[f.call].match);
    relink(f.call);
    entry = nodes[f.call].next;
  }
  if (nodes[head].next == tail) return result;
  std::ostringstream o;
  o << "no linearization of " << n << " operations on " << key << ": at best " << best_depth
    << " fit, with the register at " << Quote(best_state);
  if (best_stuck != SIZE_MAX) {
    o << ", and then " << DescribeOp(lin[best_stuck])
      << " had to take effect but cannot from any order of the operations concurrent with it";
  }
  result.violations.push_back(o.str());
  return result;
}

}  // namespace latchkey::checkers
