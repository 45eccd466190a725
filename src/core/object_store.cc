#include "core/object_store.h"

#include <algorithm>

namespace latchkey::core {

namespace lv = log::v1;

namespace {

Status Compacted(uint64_t rev, uint64_t compact) {
  return {Code::kCompacted, "revision " + std::to_string(rev) + " was compacted (oldest kept: " +
                                std::to_string(compact) + "); read at a newer revision"};
}

bool Exists(const ObjVersion* v) {
  return v != nullptr && v->state != ObjState::kAbsent;
}

// The version visible at rev, or nullptr.
const ObjVersion* VisibleAt(const ObjKey& k, uint64_t rev) {
  auto it = std::upper_bound(k.versions.begin(), k.versions.end(), rev,
                             [](uint64_t r, const ObjVersion& v) { return r < v.mod_revision; });
  if (it == k.versions.begin()) return nullptr;
  return &*std::prev(it);
}

}  // namespace

Status ValidateObjectKey(std::string_view key) {
  if (key.empty()) return InvalidArgument("object key is empty");
  if (key.size() > kMaxObjectKeyBytes) {
    return InvalidArgument("object key is " + std::to_string(key.size()) + " bytes; the limit is " +
                           std::to_string(kMaxObjectKeyBytes));
  }
  for (unsigned char c : key) {
    if (c < 0x20 || c == 0x7f) {
      return InvalidArgument("object key contains a control character (byte " +
                             std::to_string(static_cast<int>(c)) + ")");
    }
  }
  return Status::Ok();
}

Status ValidateObjectValue(std::string_view value) {
  if (value.size() <= kMaxObjectValueBytes) return Status::Ok();
  return InvalidArgument("object value is " + std::to_string(value.size()) +
                         " bytes; the limit is " + std::to_string(kMaxObjectValueBytes));
}

ObjView ToView(std::string_view key, const ObjVersion& v) {
  ObjView o;
  o.key = std::string(key);
  o.state = v.state;
  o.mod_revision = v.mod_revision;
  if (v.state == ObjState::kAbsent) return o;  // a removal: no value, no counters
  o.value = v.value;
  o.create_revision = v.create_revision;
  o.version = v.version;
  o.reserved_by = v.reserved_by;
  return o;
}

// ---- Writes ------------------------------------------------------------------

void ObjectStore::Write(const std::string& key, ObjState state, std::string value,
                        uint64_t reserved_by, uint64_t rev, uint64_t now_ms,
                        ObjChange::Cause cause) {
  ObjKey& k = keys_[key];
  const ObjVersion* prev = k.versions.empty() ? nullptr : &k.versions.back();
  if (prev != nullptr && prev->state == ObjState::kReserved) {
    auto rit = reservations_.find(prev->reserved_by);
    if (rit != reservations_.end()) {
      rit->second.erase(key);
      if (rit->second.empty()) reservations_.erase(rit);
    }
  }
  ObjVersion v;
  v.mod_revision = rev;
  v.state = state;
  v.value = std::move(value);
  v.reserved_by = state == ObjState::kReserved ? reserved_by : 0;
  v.mod_time_ms = now_ms;
  if (state != ObjState::kAbsent) {
    if (Exists(prev)) {
      v.create_revision = prev->create_revision;
      v.version = prev->version + 1;
    } else {
      v.create_revision = rev;
      v.version = 1;
    }
  }
  // The previous version (or this removal itself) is what compaction drops.
  if (prev != nullptr || state == ObjState::kAbsent) obsolete_.emplace_back(rev, key);
  k.versions.push_back(std::move(v));
  if (state == ObjState::kReserved) reservations_[reserved_by].insert(key);
  if (state == ObjState::kAbsent) ClearTtl(key, k);
  changes_.push_back(ObjChange{cause, key, rev, state});
}

void ObjectStore::ClearTtl(const std::string& key, ObjKey& k) {
  if (k.ttl.ttl_ms == 0) return;
  if (k.ttl.sliding) {
    sliding_.erase(key);
  } else {
    deadlines_.erase({k.ttl.deadline_ms, key});
  }
  k.ttl = ObjTtl{};
}

const ObjVersion* ObjectStore::Latest(std::string_view key) const {
  auto it = keys_.find(key);
  return it == keys_.end() ? nullptr : &it->second.versions.back();
}

Result<ObjView> ObjectStore::Reserve(uint64_t session, std::string_view key, uint64_t now_ms,
                                     uint64_t* revision) {
  LATCHKEY_RETURN_IF_ERROR(ValidateObjectKey(key));
  const ObjVersion* cur = Latest(key);
  if (Exists(cur)) {
    if (cur->state == ObjState::kReserved && cur->reserved_by == session) {
      return Get(key, 0, *revision);  // a retry: already ours
    }
    return Status(Code::kAlreadyExists,
                  cur->state == ObjState::kReserved
                      ? "object '" + std::string(key) + "' is reserved by session " +
                            std::to_string(cur->reserved_by)
                      : "object '" + std::string(key) + "' already has a value (revision " +
                            std::to_string(cur->mod_revision) + ")");
  }
  Write(std::string(key), ObjState::kReserved, {}, session, ++*revision, now_ms,
        ObjChange::Cause::kReserve);
  return Get(key, 0, *revision);
}

Result<ObjView> ObjectStore::Put(std::string_view key, std::string value, uint64_t now_ms,
                                 uint64_t* revision) {
  LATCHKEY_RETURN_IF_ERROR(ValidateObjectKey(key));
  LATCHKEY_RETURN_IF_ERROR(ValidateObjectValue(value));
  Write(std::string(key), ObjState::kAvailable, std::move(value), 0, ++*revision, now_ms,
        ObjChange::Cause::kPut);
  return Get(key, 0, *revision);
}

Result<bool> ObjectStore::Delete(std::string_view key, uint64_t now_ms, uint64_t* revision) {
  LATCHKEY_RETURN_IF_ERROR(ValidateObjectKey(key));
  if (!Exists(Latest(key))) return false;
  Write(std::string(key), ObjState::kAbsent, {}, 0, ++*revision, now_ms, ObjChange::Cause::kDelete);
  return true;
}

Status ObjectStore::SetTtl(std::string_view key, uint64_t ttl_ms, bool sliding, uint64_t now_ms,
                           uint64_t* revision) {
  LATCHKEY_RETURN_IF_ERROR(ValidateObjectKey(key));
  auto it = keys_.find(key);
  if (it == keys_.end() || !Exists(&it->second.versions.back())) {
    return NotFound("object '" + std::string(key) + "' does not exist");
  }
  if (ttl_ms > kMaxObjectTtlMs) {
    return InvalidArgument("object ttl " + std::to_string(ttl_ms) + "ms exceeds the limit of " +
                           std::to_string(kMaxObjectTtlMs) + "ms");
  }
  ClearTtl(it->first, it->second);
  const uint64_t rev = ++*revision;
  if (ttl_ms != 0) {
    ObjTtl& t = it->second.ttl;
    t.ttl_ms = ttl_ms;
    t.sliding = sliding;
    t.revision = rev;
    if (sliding) {
      sliding_.insert(it->first);
    } else {
      t.deadline_ms = now_ms + ttl_ms;
      deadlines_.insert({t.deadline_ms, it->first});
    }
  }
  changes_.push_back(
      ObjChange{ObjChange::Cause::kTtlSet, it->first, rev, it->second.versions.back().state});
  return Status::Ok();
}

Status ObjectStore::Expire(std::string_view key, uint64_t ttl_revision, uint64_t now_ms,
                           uint64_t* revision) {
  auto it = keys_.find(key);
  if (it == keys_.end() || !Exists(&it->second.versions.back()) || it->second.ttl.ttl_ms == 0 ||
      it->second.ttl.revision != ttl_revision) {
    return Status(Code::kFailedPrecondition,
                  "object '" + std::string(key) + "' no longer has that TTL");
  }
  if (!it->second.ttl.sliding && now_ms < it->second.ttl.deadline_ms) {
    return Status(Code::kFailedPrecondition, "object '" + std::string(key) + "' is not due yet");
  }
  Write(it->first, ObjState::kAbsent, {}, 0, ++*revision, now_ms, ObjChange::Cause::kExpire);
  return Status::Ok();
}

void ObjectStore::DropSession(uint64_t session, uint64_t now_ms, uint64_t* revision) {
  auto it = reservations_.find(session);
  if (it == reservations_.end()) return;
  const std::set<std::string> keys = it->second;  // Write edits the index
  const uint64_t rev = ++*revision;
  for (const std::string& k : keys) {
    Write(k, ObjState::kAbsent, {}, 0, rev, now_ms, ObjChange::Cause::kSessionEnded);
  }
}

Status ObjectStore::Compact(uint64_t rev, uint64_t current) {
  if (rev > current) {
    return InvalidArgument("cannot compact at revision " + std::to_string(rev) +
                           "; the store is at " + std::to_string(current));
  }
  if (rev <= compact_revision_) return Status::Ok();
  while (!obsolete_.empty() && obsolete_.front().first <= rev) {
    const std::string key = std::move(obsolete_.front().second);
    obsolete_.pop_front();
    auto it = keys_.find(key);
    if (it == keys_.end()) continue;
    auto& vs = it->second.versions;
    // Keep the version visible at rev and everything after it.
    auto vis = std::upper_bound(vs.begin(), vs.end(), rev,
                                [](uint64_t r, const ObjVersion& v) { return r < v.mod_revision; });
    if (vis == vs.begin()) continue;
    vs.erase(vs.begin(), std::prev(vis));
    if (vs.front().state == ObjState::kAbsent) vs.erase(vs.begin());  // absent needs no record
    if (vs.empty()) keys_.erase(it);
  }
  compact_revision_ = rev;
  return Status::Ok();
}

std::vector<ObjChange> ObjectStore::TakeChanges() {
  std::vector<ObjChange> out;
  out.swap(changes_);
  return out;
}

// ---- Reads -------------------------------------------------------------------

Status ObjectStore::CheckReadRevision(uint64_t rev, uint64_t current) const {
  if (rev == 0) return Status::Ok();
  if (rev < compact_revision_) return Compacted(rev, compact_revision_);
  if (rev > current) {
    return InvalidArgument("revision " + std::to_string(rev) +
                           " is in the future; the store is at " + std::to_string(current));
  }
  return Status::Ok();
}

Result<ObjView> ObjectStore::Get(std::string_view key, uint64_t rev, uint64_t current) const {
  LATCHKEY_RETURN_IF_ERROR(ValidateObjectKey(key));
  LATCHKEY_RETURN_IF_ERROR(CheckReadRevision(rev, current));
  ObjView absent;
  absent.key = std::string(key);
  auto it = keys_.find(key);
  if (it == keys_.end()) return absent;
  const ObjVersion* v = rev == 0 ? &it->second.versions.back() : VisibleAt(it->second, rev);
  if (!Exists(v)) return absent;
  ObjView out = ToView(key, *v);
  if (rev == 0) out.ttl = it->second.ttl;
  return out;
}

Result<ObjPage> ObjectStore::History(std::string_view key, uint64_t from_rev,
                                     uint32_t limit) const {
  LATCHKEY_RETURN_IF_ERROR(ValidateObjectKey(key));
  if (from_rev != 0 && from_rev < compact_revision_) {
    return Compacted(from_rev, compact_revision_);
  }
  if (limit == 0) limit = kDefaultObjectPage;
  limit = std::min(limit, kMaxObjectPage);
  ObjPage page;
  auto it = keys_.find(key);
  if (it == keys_.end()) return page;
  for (const ObjVersion& v : it->second.versions) {
    if (v.mod_revision < from_rev) continue;
    if (page.items.size() == limit) {
      page.truncated = true;
      break;
    }
    page.items.push_back(ToView(key, v));
  }
  return page;
}

Result<ObjPage> ObjectStore::Find(std::string_view prefix, std::string_view start_after,
                                  uint64_t rev, uint64_t current, uint32_t limit) const {
  if (prefix.size() > kMaxObjectKeyBytes || start_after.size() > kMaxObjectKeyBytes) {
    return InvalidArgument("prefix or start key is longer than " +
                           std::to_string(kMaxObjectKeyBytes) + " bytes");
  }
  LATCHKEY_RETURN_IF_ERROR(CheckReadRevision(rev, current));
  const uint64_t at = rev == 0 ? current : rev;
  if (limit == 0) limit = kDefaultObjectPage;
  limit = std::min(limit, kMaxObjectPage);
  ObjPage page;
  // Paging: continue after start_after (which may equal the prefix itself).
  auto it = !start_after.empty() && start_after >= prefix ? keys_.upper_bound(start_after)
                                                          : keys_.lower_bound(prefix);
  for (; it != keys_.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    const ObjVersion* v = VisibleAt(it->second, at);
    if (!Exists(v)) continue;
    if (page.items.size() == limit) {
      page.truncated = true;
      break;
    }
    page.items.push_back(ToView(it->first, *v));
    if (rev == 0) page.items.back().ttl = it->second.ttl;
  }
  return page;
}

std::vector<std::pair<std::string, uint64_t>> ObjectStore::ExpiredAbsolute(uint64_t now_ms) const {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (const auto& [deadline, key] : deadlines_) {
    if (deadline > now_ms) break;
    out.emplace_back(key, keys_.find(key)->second.ttl.revision);
  }
  return out;
}

std::map<std::string, std::pair<uint64_t, uint64_t>> ObjectStore::SlidingTtls() const {
  std::map<std::string, std::pair<uint64_t, uint64_t>> out;
  for (const std::string& key : sliding_) {
    const ObjTtl& t = keys_.find(key)->second.ttl;
    out.emplace(key, std::make_pair(t.ttl_ms, t.revision));
  }
  return out;
}

// ---- Snapshots ---------------------------------------------------------------

void ObjectStore::ToProto(lv::Snapshot* snap) const {
  snap->set_obj_compact_revision(compact_revision_);
  ScriptsToProto(snap);
  for (const auto& [key, k] : keys_) {
    auto* p = snap->add_objects();
    p->set_key(key);
    for (const ObjVersion& v : k.versions) {
      auto* pv = p->add_versions();
      pv->set_mod_revision(v.mod_revision);
      pv->set_create_revision(v.create_revision);
      pv->set_version(v.version);
      pv->set_state(static_cast<uint32_t>(v.state));
      pv->set_value(v.value);
      pv->set_reserved_by(v.reserved_by);
      pv->set_mod_time_ms(v.mod_time_ms);
    }
    p->set_ttl_ms(k.ttl.ttl_ms);
    p->set_ttl_sliding(k.ttl.sliding);
    p->set_ttl_deadline_ms(k.ttl.deadline_ms);
    p->set_ttl_revision(k.ttl.revision);
  }
}

Status ObjectStore::FromProto(const lv::Snapshot& snap, const std::set<uint64_t>& sessions) {
  ObjectStore fresh;
  fresh.compact_revision_ = snap.obj_compact_revision();
  auto bad = [](const std::string& key, const char* why) {
    return Status(Code::kInternal, "snapshot object '" + key.substr(0, 64) + "' " + why);
  };
  const std::string* prev_key = nullptr;
  for (const auto& p : snap.objects()) {
    if (!ValidateObjectKey(p.key()).ok()) return bad(p.key(), "has an invalid key");
    if (prev_key != nullptr && !(*prev_key < p.key())) return bad(p.key(), "is out of order");
    prev_key = &p.key();
    if (p.versions().empty()) return bad(p.key(), "has no versions");
    ObjKey k;
    uint64_t last = 0;
    for (const auto& pv : p.versions()) {
      if (pv.state() > 2 || pv.mod_revision() <= last || pv.mod_revision() > snap.revision()) {
        return bad(p.key(), "has a bad version");
      }
      last = pv.mod_revision();
      ObjVersion v;
      v.mod_revision = pv.mod_revision();
      v.create_revision = pv.create_revision();
      v.version = pv.version();
      v.state = static_cast<ObjState>(pv.state());
      v.value = pv.value();
      v.reserved_by = pv.reserved_by();
      v.mod_time_ms = pv.mod_time_ms();
      if ((v.state == ObjState::kReserved) != (v.reserved_by != 0) ||
          (v.state == ObjState::kAbsent &&
           (v.create_revision != 0 || v.version != 0 || !v.value.empty()))) {
        return bad(p.key(), "has an inconsistent version");
      }
      k.versions.push_back(std::move(v));
    }
    const ObjVersion& latest = k.versions.back();
    k.ttl = ObjTtl{p.ttl_ms(), p.ttl_sliding(), p.ttl_deadline_ms(), p.ttl_revision()};
    if ((k.ttl.ttl_ms == 0 || k.ttl.sliding) && k.ttl.deadline_ms != 0) {
      return bad(p.key(), "has a bad TTL");
    }
    if (k.ttl.ttl_ms == 0 && (k.ttl.sliding || k.ttl.revision != 0)) {
      return bad(p.key(), "has a bad TTL");
    }
    if (k.ttl.ttl_ms != 0 && latest.state == ObjState::kAbsent) {
      return bad(p.key(), "has a TTL but no object");
    }
    if (k.versions.size() == 1 && latest.state == ObjState::kAbsent &&
        latest.mod_revision <= fresh.compact_revision_) {
      return bad(p.key(), "keeps a compacted removal");
    }
    if (latest.state == ObjState::kReserved) {
      if (!sessions.count(latest.reserved_by)) return bad(p.key(), "is reserved by no session");
      fresh.reservations_[latest.reserved_by].insert(p.key());
    }
    if (k.ttl.ttl_ms != 0) {
      if (k.ttl.sliding) {
        fresh.sliding_.insert(p.key());
      } else {
        fresh.deadlines_.insert({k.ttl.deadline_ms, p.key()});
      }
    }
    for (size_t i = 0; i < k.versions.size(); ++i) {
      if (i > 0 || k.versions[i].state == ObjState::kAbsent) {
        fresh.obsolete_.emplace_back(k.versions[i].mod_revision, p.key());
      }
    }
    fresh.keys_.emplace(p.key(), std::move(k));
  }
  std::sort(fresh.obsolete_.begin(), fresh.obsolete_.end());
  LATCHKEY_RETURN_IF_ERROR(fresh.ScriptsFromProto(snap));
  *this = std::move(fresh);
  return Status::Ok();
}

}  // namespace latchkey::core
