// Snapshot encoding, streamed: the bytes are exactly what SerializeToString
// of the whole lv::Snapshot gives (fields in number order), but only one
// LockState message exists at a time. Building the full message for 1 M held
// locks took ~250 bytes a lock of short-lived heap on top of the table
// (docs/design/0015-compact-lock-table.md).
#include <string>

#include "core/state_machine.h"

namespace latchkey::core {

namespace lv = log::v1;

namespace {

uint64_t Fnv1aUpdate(uint64_t h, std::string_view bytes) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}
constexpr uint64_t kFnvBasis = 1469598103934665603ull;

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Field numbers of lv::Snapshot written by hand (wire types: 2 = length-
// delimited, 0 = varint).
constexpr uint32_t kLocksTag = (lv::Snapshot::kLocksFieldNumber << 3) | 2;
constexpr uint32_t kDigestTag = (lv::Snapshot::kDigestFieldNumber << 3) | 0;
// The applied index is the highest field and outside the digest: written last.
constexpr uint32_t kAppliedIndexTag = (lv::Snapshot::kAppliedIndexFieldNumber << 3) | 0;
static_assert(lv::Snapshot::kAppliedIndexFieldNumber > lv::Snapshot::kRecordLockCondsFieldNumber &&
                  lv::Snapshot::kAppliedIndexFieldNumber > lv::Snapshot::kScriptsFieldNumber,
              "Snapshot() appends the applied index after every other field");
static_assert(lv::Snapshot::kSessionsFieldNumber < lv::Snapshot::kLocksFieldNumber &&
                  lv::Snapshot::kLocksFieldNumber < lv::Snapshot::kDigestFieldNumber &&
                  lv::Snapshot::kDigestFieldNumber < lv::Snapshot::kNextSeqFieldNumber,
              "EncodeSnapshot writes head, locks, digest, tail in this order");

void FillLock(std::string_view name, const Resource& res, lv::LockState* p) {
  p->set_name(name.data(), name.size());
  for (const auto& [who, g] : res.holders) {
    auto* h = p->add_holders();
    h->set_session_id(who.session);
    h->set_owner(who.owner);
    h->set_fencing_token(g.fencing_token);
    h->set_granted_at_ms(g.granted_at_ms);
    h->set_lock_ttl_ms(g.lock_ttl_ms);
    h->set_mode(ModeToLog(g.mode));
    h->set_count(g.count);
    h->set_cacheable(g.cacheable);
    if (g.callback_sent) h->set_callback_sent(ModeToLog(*g.callback_sent));
  }
  for (const WaitEntry& w : res.waiters()) {
    auto* pw = p->add_waiters();
    pw->set_session_id(w.who.session);
    pw->set_owner(w.who.owner);
    pw->set_queued_at_ms(w.queued_at_ms);
    pw->set_lock_ttl_ms(w.lock_ttl_ms);
    pw->set_mode(ModeToLog(w.mode));
    pw->set_seq(w.seq);
    pw->set_conversion(w.conversion);
    pw->set_reentrant(w.reentrant);
    pw->set_group(w.group);
    pw->set_set_value(w.set_value);
    pw->set_value(w.value);
    pw->set_cacheable(w.cacheable);
  }
  p->set_value(res.value());
  p->set_value_token(res.value_token());
}

}  // namespace

void StateMachine::EncodeSnapshot(std::string* head_and_locks, std::string* tail) const {
  lv::Snapshot head;
  head.set_version(kSnapshotVersion);
  head.set_revision(revision_);
  head.set_time_ms(time_ms_);
  for (const auto& [id, s] : sessions_) {
    auto* p = head.add_sessions();
    p->set_id(id);
    p->set_ttl_ms(s.ttl_ms);
    p->set_client_name(s.client_name);
    p->set_opened_at_ms(s.opened_at_ms);
    for (uint64_t rid : s.recent_reentrant) p->add_recent_reentrant(rid);
  }
  // Reserve ~64 bytes a resource (a held lock with one holder encodes to
  // 40-70) so the string rarely doubles past its final size (0015).
  head_and_locks->reserve(head_and_locks->size() + head.ByteSizeLong() +
                          locks_.resources().size() * 64);
  head.AppendToString(head_and_locks);
  lv::LockState one;
  std::string bytes;
  for (const auto& [name, res] : locks_.resources()) {
    if (res.holders.empty() && res.waiters().empty() && res.value().empty()) continue;  // derived
    one.Clear();
    FillLock(name, res, &one);
    bytes.clear();
    one.AppendToString(&bytes);
    PutVarint(head_and_locks, kLocksTag);
    PutVarint(head_and_locks, bytes.size());
    head_and_locks->append(bytes);
  }
  lv::Snapshot rest;
  rest.set_next_seq(locks_.next_seq());
  sync_.ToProto(&rest);
  objects_.ToProto(&rest);
  records_.ToProto(&rest);
  for (const auto& [prefix, rank] : locks_.ranks()) {
    auto* pr = rest.add_ranks();
    pr->set_prefix(prefix);
    pr->set_rank(rank);
  }
  rest.AppendToString(tail);
}

uint64_t StateMachine::Digest() const {
  std::string body, tail;
  EncodeSnapshot(&body, &tail);
  return Fnv1aUpdate(Fnv1aUpdate(kFnvBasis, body), tail);
}

std::string StateMachine::Snapshot() const {
  std::string bytes, tail;
  EncodeSnapshot(&bytes, &tail);
  const uint64_t digest = Fnv1aUpdate(Fnv1aUpdate(kFnvBasis, bytes), tail);
  if (digest != 0) {  // proto3 leaves a zero out
    PutVarint(&bytes, kDigestTag);
    PutVarint(&bytes, digest);
  }
  bytes.reserve(bytes.size() + tail.size() + 2 * 11);  // exact: no doubling for the tail
  bytes.append(tail);
  if (applied_index_ != 0) {
    PutVarint(&bytes, kAppliedIndexTag);
    PutVarint(&bytes, applied_index_);
  }
  return bytes;
}

}  // namespace latchkey::core
