// Records (seed 004, URLyBird; design record 0013): tables of numbered
// records with named fields, versioned (MVCC) in the state machine's one
// revision order. Pure and deterministic; the StateMachine owns it and ties
// records to their locks (state_machine_records.cc).
//
// - Create allocates the lowest free record number of the table: a deleted
//   number is reused before a new one is taken. Every number below
//   next_number was allocated once and keeps an entry (compaction keeps a
//   final removal), so the free set is derived (numbers whose latest
//   version is a removal) and not stored.
// - Uniqueness: each table has a key (key_fields; empty = every field). A
//   create or update that would give two live records the same key fails
//   with ALREADY_EXISTS naming the record that has it. Commands apply one at
//   a time in log order, so concurrent creates cannot both win.
// - MVCC: every write appends a version (removals are tombstones); reads and
//   finds at revision R see the last version with mod_revision <= R.
//   Compact(C) drops what no read at >= C can see (reads below C answer
//   COMPACTED); it follows the object store's compaction point.
//
// Thread-safety: none (owned by the StateMachine).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "common/status.h"
#include "log.pb.h"

namespace latchkey::core {

inline constexpr size_t kMaxTableNameBytes = 64;
inline constexpr size_t kMaxRecordFields = 64;
inline constexpr size_t kMaxFieldNameBytes = 64;
inline constexpr size_t kMaxFieldValueBytes = 4096;
inline constexpr size_t kMaxRecordKeyFields = 16;
inline constexpr size_t kMaxRecordTables = 10'000;
inline constexpr int kMaxRecordCriteria = 64;
inline constexpr uint32_t kDefaultRecordPage = 100;
inline constexpr uint32_t kMaxRecordPage = 1000;

// Field name -> value, ordered by name (so encodings are canonical).
using RecFields = std::map<std::string, std::string, std::less<>>;

struct RecVersion {
  uint64_t mod_revision = 0;
  bool deleted = false;
  RecFields fields;
  uint64_t create_revision = 0;
  uint64_t version = 0;  // writes since creation; 1 = the create
  uint64_t mod_time_ms = 0;
};

// What a read answers.
struct RecView {
  std::string table;
  uint64_t number = 0;
  RecFields fields;
  uint64_t create_revision = 0;
  uint64_t mod_revision = 0;
  uint64_t version = 0;
};

struct RecCriterion {
  std::string field;
  std::string value;
  bool exact = false;  // false: prefix match
};

struct RecPage {
  std::vector<RecView> items;
  uint64_t revision = 0;
  bool truncated = false;
};

class RecordStore {
 public:
  struct Table {
    std::vector<std::string> key_fields;  // empty = the whole record
    uint64_t next_number = 1;
    std::map<uint64_t, std::vector<RecVersion>> records;  // versions ascending
    // Derived (rebuilt on restore):
    std::set<uint64_t> free;                              // deleted numbers to reuse
    std::map<std::string, uint64_t, std::less<>> unique;  // key -> live number
  };

  // ---- Writes (revision: the state machine's counter) ----
  Result<RecView> Create(std::string_view table, RecFields fields,
                         const std::vector<std::string>& key_fields, uint64_t now_ms,
                         uint64_t* revision);
  // Sets `fields` on the live record (others unchanged). NOT_FOUND if absent.
  Result<RecView> Update(std::string_view table, uint64_t number, const RecFields& fields,
                         uint64_t now_ms, uint64_t* revision);
  Status Delete(std::string_view table, uint64_t number, uint64_t now_ms, uint64_t* revision);
  // Forgets versions no read at >= rev needs (lower points are no-ops).
  void Compact(uint64_t rev);

  // ---- Reads (rev 0 = latest; current = the state machine's revision) ----
  Result<RecView> Get(std::string_view table, uint64_t number, uint64_t rev,
                      uint64_t current) const;
  Result<RecPage> Find(std::string_view table, const std::vector<RecCriterion>& criteria,
                       uint64_t rev, uint64_t current, uint64_t start_after, uint32_t limit) const;
  // The latest live version, or null.
  const RecVersion* Live(std::string_view table, uint64_t number) const;

  const std::map<std::string, Table, std::less<>>& tables() const { return tables_; }
  // Lock-if-unchanged conditions of waiting record lock requests:
  // (lock name, session, owner) -> revision. Kept in snapshots.
  using CondKey = std::tuple<std::string, uint64_t, std::string>;
  std::map<CondKey, uint64_t>& lock_conds() { return lock_conds_; }
  const std::map<CondKey, uint64_t>& lock_conds() const { return lock_conds_; }
  uint64_t compact_revision() const { return compact_revision_; }

  void ToProto(log::v1::Snapshot* snap) const;
  Status FromProto(const log::v1::Snapshot& snap);

 private:
  static std::string UniqueKey(const Table& t, const RecFields& fields);
  Status CheckUnique(std::string_view table, const Table& t, const std::string& key,
                     uint64_t self) const;

  std::map<std::string, Table, std::less<>> tables_;
  uint64_t compact_revision_ = 0;
  std::map<CondKey, uint64_t> lock_conds_;
};

// The ordinary lock that guards a record: "records.<table>.<number>".
std::string RecordLockName(std::string_view table, uint64_t number);
// 1..64 bytes of [A-Za-z0-9_-] (a table is one lock-name segment).
Status ValidateTableName(std::string_view table);
Status ValidateRecordFields(const RecFields& fields);
// Fields from the wire/log: names validated, duplicates refused.
Result<RecFields> FieldsFromProto(
    const google::protobuf::RepeatedPtrField<log::v1::RecField>& fields);

}  // namespace latchkey::core
