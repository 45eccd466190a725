#include "core/record_store.h"

#include <algorithm>

namespace latchkey::core {

namespace lv = log::v1;

namespace {

const RecVersion* VisibleAt(const std::vector<RecVersion>& versions, uint64_t rev) {
  auto it = std::upper_bound(versions.begin(), versions.end(), rev,
                             [](uint64_t r, const RecVersion& v) { return r < v.mod_revision; });
  if (it == versions.begin()) return nullptr;
  return &*std::prev(it);
}

RecView ToView(std::string_view table, uint64_t number, const RecVersion& v) {
  RecView o;
  o.table = std::string(table);
  o.number = number;
  o.fields = v.fields;
  o.create_revision = v.create_revision;
  o.mod_revision = v.mod_revision;
  o.version = v.version;
  return o;
}

std::string Describe(std::string_view table, uint64_t number) {
  return "record " + std::string(table) + "/" + std::to_string(number);
}

Status NoRecord(std::string_view table, uint64_t number) {
  return NotFound(Describe(table, number) + " does not exist");
}

bool Printable(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

Status ValidateFieldName(std::string_view name) {
  if (name.empty() || name.size() > kMaxFieldNameBytes || !Printable(name)) {
    return InvalidArgument("field name must be 1.." + std::to_string(kMaxFieldNameBytes) +
                           " printable bytes");
  }
  return Status::Ok();
}

bool Matches(const RecFields& fields, const std::vector<RecCriterion>& criteria) {
  for (const RecCriterion& c : criteria) {
    auto it = fields.find(c.field);
    if (it == fields.end()) return false;
    if (c.exact ? it->second != c.value : it->second.compare(0, c.value.size(), c.value) != 0) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string RecordLockName(std::string_view table, uint64_t number) {
  return "records." + std::string(table) + "." + std::to_string(number);
}

Status ValidateTableName(std::string_view table) {
  if (table.empty() || table.size() > kMaxTableNameBytes) {
    return InvalidArgument("table name must be 1.." + std::to_string(kMaxTableNameBytes) +
                           " bytes");
  }
  for (char c : table) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return InvalidArgument("table name '" + std::string(table) + "': use [A-Za-z0-9_-]");
  }
  return Status::Ok();
}

Status ValidateRecordFields(const RecFields& fields) {
  if (fields.size() > kMaxRecordFields) {
    return InvalidArgument("a record has at most " + std::to_string(kMaxRecordFields) + " fields");
  }
  for (const auto& [name, value] : fields) {
    LATCHKEY_RETURN_IF_ERROR(ValidateFieldName(name));
    if (value.size() > kMaxFieldValueBytes) {
      return InvalidArgument("field '" + name + "' is " + std::to_string(value.size()) +
                             " bytes; the limit is " + std::to_string(kMaxFieldValueBytes));
    }
  }
  return Status::Ok();
}

Result<RecFields> FieldsFromProto(const google::protobuf::RepeatedPtrField<lv::RecField>& fields) {
  if (static_cast<size_t>(fields.size()) > kMaxRecordFields) {
    return InvalidArgument("a record has at most " + std::to_string(kMaxRecordFields) + " fields");
  }
  RecFields out;
  for (const lv::RecField& f : fields) {
    LATCHKEY_RETURN_IF_ERROR(ValidateFieldName(f.name()));
    if (!out.emplace(f.name(), f.value()).second) {
      return InvalidArgument("field '" + f.name() + "' is given twice");
    }
  }
  LATCHKEY_RETURN_IF_ERROR(ValidateRecordFields(out));
  return out;
}

// Length-prefixed so ("ab","c") and ("a","bc") differ; a missing key field
// is encoded apart from an empty one.
std::string RecordStore::UniqueKey(const Table& t, const RecFields& fields) {
  std::string key;
  auto add = [&key](std::string_view name, const std::string* value) {
    key += std::to_string(name.size()) + ":" + std::string(name);
    if (value == nullptr) {
      key += "-";
    } else {
      key += "=" + std::to_string(value->size()) + ":" + *value;
    }
  };
  if (t.key_fields.empty()) {
    for (const auto& [name, value] : fields) add(name, &value);
  } else {
    for (const std::string& name : t.key_fields) {
      auto it = fields.find(name);
      add(name, it == fields.end() ? nullptr : &it->second);
    }
  }
  return key;
}

Status RecordStore::CheckUnique(std::string_view table, const Table& t, const std::string& key,
                                uint64_t self) const {
  auto it = t.unique.find(key);
  if (it == t.unique.end() || it->second == self) return Status::Ok();
  std::string what = t.key_fields.empty() ? "the same fields" : "the same key (";
  for (size_t i = 0; i < t.key_fields.size(); ++i) what += (i ? "," : "") + t.key_fields[i];
  if (!t.key_fields.empty()) what += ")";
  return Status(Code::kAlreadyExists, Describe(table, it->second) + " already exists with " + what);
}

Result<RecView> RecordStore::Create(std::string_view table, RecFields fields,
                                    const std::vector<std::string>& key_fields, uint64_t now_ms,
                                    uint64_t* revision) {
  LATCHKEY_RETURN_IF_ERROR(ValidateTableName(table));
  LATCHKEY_RETURN_IF_ERROR(ValidateRecordFields(fields));
  if (fields.empty()) return InvalidArgument("a record needs at least one field");
  if (key_fields.size() > kMaxRecordKeyFields) {
    return InvalidArgument("a unique key has at most " + std::to_string(kMaxRecordKeyFields) +
                           " fields");
  }
  for (size_t i = 0; i < key_fields.size(); ++i) {
    LATCHKEY_RETURN_IF_ERROR(ValidateFieldName(key_fields[i]));
    for (size_t j = 0; j < i; ++j) {
      if (key_fields[j] == key_fields[i]) {
        return InvalidArgument("key field '" + key_fields[i] + "' is given twice");
      }
    }
  }
  auto tit = tables_.find(table);
  if (tit == tables_.end()) {
    if (tables_.size() >= kMaxRecordTables) {
      return Status(Code::kResourceExhausted,
                    "at most " + std::to_string(kMaxRecordTables) + " record tables");
    }
    Table t;
    t.key_fields = key_fields;
    tit = tables_.emplace(std::string(table), std::move(t)).first;
  } else if (!key_fields.empty() && key_fields != tit->second.key_fields) {
    std::string have;
    for (const std::string& f : tit->second.key_fields) have += (have.empty() ? "" : ",") + f;
    return Status(Code::kFailedPrecondition,
                  "table '" + std::string(table) + "' has the unique key (" +
                      (have.empty() ? std::string("every field") : have) + ")");
  }
  Table& t = tit->second;
  const std::string ukey = UniqueKey(t, fields);
  LATCHKEY_RETURN_IF_ERROR(CheckUnique(table, t, ukey, 0));
  uint64_t number;
  if (!t.free.empty()) {
    number = *t.free.begin();
    t.free.erase(t.free.begin());
  } else {
    number = t.next_number++;
  }
  RecVersion v;
  v.mod_revision = ++*revision;
  v.fields = std::move(fields);
  v.create_revision = v.mod_revision;
  v.version = 1;
  v.mod_time_ms = now_ms;
  t.unique.emplace(ukey, number);
  auto& versions = t.records[number];
  versions.push_back(std::move(v));
  return ToView(table, number, versions.back());
}

Result<RecView> RecordStore::Update(std::string_view table, uint64_t number,
                                    const RecFields& fields, uint64_t now_ms, uint64_t* revision) {
  const RecVersion* cur = Live(table, number);
  if (cur == nullptr) return NoRecord(table, number);
  Table& t = tables_.find(table)->second;
  RecFields merged = cur->fields;
  for (const auto& [name, value] : fields) merged[name] = value;
  LATCHKEY_RETURN_IF_ERROR(ValidateRecordFields(merged));
  const std::string old_key = UniqueKey(t, cur->fields);
  const std::string new_key = UniqueKey(t, merged);
  LATCHKEY_RETURN_IF_ERROR(CheckUnique(table, t, new_key, number));
  RecVersion v;
  v.mod_revision = ++*revision;
  v.fields = std::move(merged);
  v.create_revision = cur->create_revision;
  v.version = cur->version + 1;
  v.mod_time_ms = now_ms;
  if (old_key != new_key) {
    t.unique.erase(old_key);
    t.unique.emplace(new_key, number);
  }
  auto& versions = t.records[number];
  versions.push_back(std::move(v));
  return ToView(table, number, versions.back());
}

Status RecordStore::Delete(std::string_view table, uint64_t number, uint64_t now_ms,
                           uint64_t* revision) {
  const RecVersion* cur = Live(table, number);
  if (cur == nullptr) return NoRecord(table, number);
  Table& t = tables_.find(table)->second;
  t.unique.erase(UniqueKey(t, cur->fields));
  t.free.insert(number);
  RecVersion v;
  v.mod_revision = ++*revision;
  v.deleted = true;
  v.mod_time_ms = now_ms;
  t.records[number].push_back(std::move(v));
  return Status::Ok();
}

void RecordStore::Compact(uint64_t rev) {
  if (rev <= compact_revision_) return;
  compact_revision_ = rev;
  for (auto& [name, t] : tables_) {
    for (auto it = t.records.begin(); it != t.records.end();) {
      auto& vs = it->second;
      auto vis = std::upper_bound(vs.begin(), vs.end(), rev, [](uint64_t r, const RecVersion& v) {
        return r < v.mod_revision;
      });
      if (vis != vs.begin()) {
        auto keep = std::prev(vis);
        // A removal at or before C: nobody reads it, but the last version
        // stays so every allocated number keeps an entry (free = tombstoned).
        if (keep->deleted && std::next(keep) != vs.end()) ++keep;
        vs.erase(vs.begin(), keep);
      }
      ++it;
    }
  }
}

// ---- Reads -------------------------------------------------------------------

const RecVersion* RecordStore::Live(std::string_view table, uint64_t number) const {
  auto tit = tables_.find(table);
  if (tit == tables_.end()) return nullptr;
  auto rit = tit->second.records.find(number);
  if (rit == tit->second.records.end() || rit->second.back().deleted) return nullptr;
  return &rit->second.back();
}

namespace {
Status CheckRev(uint64_t rev, uint64_t current, uint64_t compact) {
  if (rev > current) {
    return InvalidArgument("revision " + std::to_string(rev) + " is in the future (current " +
                           std::to_string(current) + ")");
  }
  if (rev != 0 && rev < compact) {
    return Status(Code::kCompacted, "revision " + std::to_string(rev) +
                                        " was compacted (oldest kept: " + std::to_string(compact) +
                                        "); read at a newer revision");
  }
  return Status::Ok();
}
}  // namespace

Result<RecView> RecordStore::Get(std::string_view table, uint64_t number, uint64_t rev,
                                 uint64_t current) const {
  LATCHKEY_RETURN_IF_ERROR(ValidateTableName(table));
  LATCHKEY_RETURN_IF_ERROR(CheckRev(rev, current, compact_revision_));
  auto tit = tables_.find(table);
  if (tit == tables_.end()) return NoRecord(table, number);
  auto rit = tit->second.records.find(number);
  if (rit == tit->second.records.end()) return NoRecord(table, number);
  const RecVersion* v = VisibleAt(rit->second, rev == 0 ? current : rev);
  if (v == nullptr || v->deleted) return NoRecord(table, number);
  return ToView(table, number, *v);
}

Result<RecPage> RecordStore::Find(std::string_view table, const std::vector<RecCriterion>& criteria,
                                  uint64_t rev, uint64_t current, uint64_t start_after,
                                  uint32_t limit) const {
  LATCHKEY_RETURN_IF_ERROR(ValidateTableName(table));
  LATCHKEY_RETURN_IF_ERROR(CheckRev(rev, current, compact_revision_));
  if (criteria.size() > static_cast<size_t>(kMaxRecordCriteria)) {
    return InvalidArgument("at most " + std::to_string(kMaxRecordCriteria) + " criteria");
  }
  if (limit == 0) limit = kDefaultRecordPage;
  limit = std::min(limit, kMaxRecordPage);
  RecPage page;
  page.revision = rev == 0 ? current : rev;
  auto tit = tables_.find(table);
  if (tit == tables_.end()) return page;
  const auto& recs = tit->second.records;
  for (auto it = recs.upper_bound(start_after); it != recs.end(); ++it) {
    const RecVersion* v = VisibleAt(it->second, page.revision);
    if (v == nullptr || v->deleted || !Matches(v->fields, criteria)) continue;
    if (page.items.size() == limit) {
      page.truncated = true;
      break;
    }
    page.items.push_back(ToView(table, it->first, *v));
  }
  return page;
}

// ---- Snapshots ---------------------------------------------------------------

void RecordStore::ToProto(lv::Snapshot* snap) const {
  snap->set_rec_compact_revision(compact_revision_);
  for (const auto& [name, t] : tables_) {
    auto* pt = snap->add_record_tables();
    pt->set_name(name);
    for (const std::string& f : t.key_fields) pt->add_key_fields(f);
    pt->set_next_number(t.next_number);
    for (const auto& [number, versions] : t.records) {
      auto* pr = pt->add_records();
      pr->set_number(number);
      for (const RecVersion& v : versions) {
        auto* pv = pr->add_versions();
        pv->set_mod_revision(v.mod_revision);
        pv->set_deleted(v.deleted);
        for (const auto& [fname, fvalue] : v.fields) {
          auto* pf = pv->add_fields();
          pf->set_name(fname);
          pf->set_value(fvalue);
        }
        pv->set_create_revision(v.create_revision);
        pv->set_version(v.version);
        pv->set_mod_time_ms(v.mod_time_ms);
      }
    }
  }
  for (const auto& [key, since] : lock_conds_) {
    auto* c = snap->add_record_lock_conds();
    c->set_name(std::get<0>(key));
    c->set_session_id(std::get<1>(key));
    c->set_owner(std::get<2>(key));
    c->set_since(since);
  }
}

Status RecordStore::FromProto(const lv::Snapshot& snap) {
  auto bad = [](const std::string& what) {
    return Status(Code::kInternal, "snapshot records: " + what);
  };
  RecordStore fresh;
  fresh.compact_revision_ = snap.rec_compact_revision();
  for (const auto& pt : snap.record_tables()) {
    if (!ValidateTableName(pt.name()).ok()) return bad("invalid table name");
    Table t;
    t.key_fields.assign(pt.key_fields().begin(), pt.key_fields().end());
    t.next_number = pt.next_number();
    if (t.next_number == 0) return bad("table '" + pt.name() + "' has next_number 0");
    uint64_t prev_number = 0;
    for (const auto& pr : pt.records()) {
      // Every allocated number keeps an entry: 1, 2, ... next_number - 1.
      if (pr.number() != prev_number + 1 || pr.versions_size() == 0) {
        return bad("table '" + pt.name() + "' has a bad record number or no versions");
      }
      prev_number = pr.number();
      std::vector<RecVersion> versions;
      for (const auto& pv : pr.versions()) {
        if (!versions.empty() && pv.mod_revision() <= versions.back().mod_revision) {
          return bad("record versions out of order");
        }
        RecVersion v;
        v.mod_revision = pv.mod_revision();
        v.deleted = pv.deleted();
        Result<RecFields> f = FieldsFromProto(pv.fields());
        if (!f.ok() || (v.deleted && !f->empty())) return bad("bad record fields");
        v.fields = std::move(*f);
        v.create_revision = pv.create_revision();
        v.version = pv.version();
        v.mod_time_ms = pv.mod_time_ms();
        versions.push_back(std::move(v));
      }
      if (!versions.back().deleted) {
        const std::string key = UniqueKey(t, versions.back().fields);
        if (!t.unique.emplace(key, pr.number()).second) return bad("duplicate unique key");
      }
      t.records.emplace(pr.number(), std::move(versions));
    }
    if (t.next_number != prev_number + 1) return bad("table '" + pt.name() + "' next_number");
    for (const auto& [n, vs] : t.records) {
      if (vs.back().deleted) t.free.insert(n);
    }
    if (!fresh.tables_.emplace(pt.name(), std::move(t)).second) return bad("repeated table");
  }
  for (const auto& c : snap.record_lock_conds()) {
    fresh.lock_conds_[CondKey{c.name(), c.session_id(), c.owner()}] = c.since();
  }
  *this = std::move(fresh);
  return Status::Ok();
}

}  // namespace latchkey::core
