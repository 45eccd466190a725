// Wire helpers of latchkey::Client (client_wire.h).
#include "client/client_wire.h"

#include <algorithm>

namespace latchkey::client_detail {

Status StatusFromError(const pb::Error& e) {
  const int c = static_cast<int>(e.code());
  if (c == 0) return Status();
  const Code code =
      (c > 0 && IsKnownCode(static_cast<uint32_t>(c))) ? static_cast<Code>(c) : Code::kInternal;
  std::string msg = e.message();
  if (msg.empty()) msg = "server returned " + std::string(CodeName(code));
  return Status(code, std::move(msg));
}

std::vector<std::string> SplitEndpoints(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    std::string part = s.substr(start, comma - start);
    const auto b = part.find_first_not_of(" \t");
    const auto e = part.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(part.substr(b, e - b + 1));
    start = comma + 1;
  }
  return out;
}

std::string Frame(const pb::Request& req) {
  pb::ClientFrame f;
  *f.mutable_request() = req;
  return f.SerializeAsString();
}

milliseconds Remaining(TimePoint deadline) {
  const auto left = std::chrono::ceil<milliseconds>(deadline - SteadyClock::now());
  return std::max(left, milliseconds(1));
}

void SafeInvoke(const DoneFn& done, Outcome o) {
  if (done) done(std::move(o));
}

pb::LockMode WireMode(LockMode m) {
  return static_cast<pb::LockMode>(static_cast<int>(m) + 1);
}

LockMode ApiMode(pb::LockMode m) {
  // MODE_DEFAULT (0) means EX on the wire.
  if (m == pb::MODE_DEFAULT || !pb::LockMode_IsValid(m)) return LockMode::kEX;
  return static_cast<LockMode>(static_cast<int>(m) - 1);
}

LockHolderInfo ToHolder(const pb::LockHolder& h) {
  LockHolderInfo out;
  out.session_id = h.session_id();
  out.owner = h.owner();
  out.client_name = h.client_name();
  out.fencing_token = h.fencing_token();
  out.granted_at_ms = h.granted_at_ms();
  out.lock_ttl_ms = h.lock_ttl_ms();
  out.mode = ApiMode(h.mode());
  out.count = std::max<uint32_t>(1, h.count());
  out.cacheable = h.cacheable();
  out.called_back = h.called_back();
  out.callback_to = h.called_back() ? ApiMode(h.callback_to()) : LockMode::kNL;
  return out;
}

std::vector<Grant> HeldFromAttach(const pb::AttachSessionReply& r) {
  std::vector<Grant> out;
  for (const pb::HeldLock& h : r.held()) {
    Grant g;
    g.name = h.name();
    g.owner = h.owner();
    g.fencing_token = h.fencing_token();
    g.granted_at_ms = h.granted_at_ms();
    g.mode = ApiMode(h.mode());
    g.count = std::max<uint32_t>(1, h.count());
    g.value = h.value();
    g.value_token = h.value_token();
    out.push_back(std::move(g));
  }
  return out;
}

LockInfo ToLockInfo(const pb::GetLockReply& r, std::string_view asked) {
  LockInfo info;
  info.name = r.name().empty() ? std::string(asked) : r.name();
  info.held = r.held();
  if (r.held()) info.holder = ToHolder(r.holder());
  for (const auto& h : r.holders()) info.holders.push_back(ToHolder(h));
  for (const auto& w : r.waiters()) {
    info.waiter_list.push_back({w.session_id(), w.owner(), w.client_name(), w.queued_at_ms(),
                                ApiMode(w.mode()), w.conversion()});
  }
  info.waiters = static_cast<size_t>(r.waiters_size());
  info.server_time_ms = r.server_time_ms();
  info.value = r.value();
  info.value_token = r.value_token();
  return info;
}

}  // namespace latchkey::client_detail
