// latchkey::Records: numbered records with named fields in a table (seed
// 004, URLyBird; docs/design/0013-records.md), used through a connected
// Client.
//
// Contract:
// - Create gives the record the lowest free number of the table (deleted
//   numbers are reused first). The table's unique key (key_fields, fixed by
//   its first create; empty = every field) is enforced by the server: of
//   several clients creating the same key at once exactly one wins, the
//   others get ALREADY_EXISTS naming the existing record.
// - Every record has an ordinary Latchkey lock, "records.<table>.<number>"
//   (Record::lock_name): fencing tokens, lock TTLs, FIFO queues, deadlock
//   detection and session leases all apply. Update and Delete need it held
//   by the same owner in PW or EX (else NOT_HELD); only the owner unlocks.
// - Lock(number, {.if_unchanged_since = R}) fails with RECORD_CHANGED when
//   the record was written after revision R (e.g. the revision of your last
//   read), also if that happens while the request waits in line.
// - Deleting a record revokes every lock on it: other holders get a
//   LockLost (ClientOptions::on_lock_lost, Client::lost_locks) whose reason
//   says the record was deleted, and waiters fail with NOT_FOUND.
// - Reads (Get, Find) are linearizable and can ask for a past revision;
//   Find pages are consistent at the revision they report (pass it back).
// - Writes that time out or lose the connection report UNAVAILABLE or
//   MAYBE_APPLIED: they may have been applied.
// - Thread-safety: as Client. Lifetime: the Client must outlive this object.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "latchkey/client.h"
#include "latchkey/lock_mode.h"
#include "latchkey/status.h"

namespace latchkey {

using RecordFields = std::map<std::string, std::string>;

struct Record {
  std::string table;
  uint64_t number = 0;
  RecordFields fields;
  uint64_t create_revision = 0;
  uint64_t mod_revision = 0;  // pass as if_unchanged_since to lock it later
  uint64_t version = 0;       // writes since creation
  std::string lock_name;      // the ordinary lock guarding it
};

struct RecordCriterion {
  std::string field;
  std::string value;
  bool exact = false;  // false: the field starts with value
};

struct RecordPage {
  std::vector<Record> records;
  uint64_t revision = 0;  // every record is as of it
  bool truncated = false;
};

struct RecordLockOptions {
  LockMode mode = LockMode::kEX;  // Update/Delete need PW or EX
  std::string owner{};            // "" = the session itself
  uint64_t if_unchanged_since = 0;
  bool try_only = false;                      // LOCK_BUSY instead of waiting
  std::chrono::milliseconds wait_timeout{0};  // 0 = no limit
  std::chrono::milliseconds lock_ttl{0};      // 0 = until unlocked / session ends
};

class Records {
 public:
  Records(Client& client, std::string table) : client_(client), table_(std::move(table)) {}

  Result<Record> Create(const RecordFields& fields,
                        const std::vector<std::string>& key_fields = {});
  // NOT_FOUND if there is no live record with that number at `revision`.
  Result<Record> Get(uint64_t number, uint64_t revision = 0);
  // Sets `fields` (others keep their values). Needs the lock (PW/EX).
  Result<Record> Update(uint64_t number, const RecordFields& fields, std::string_view owner = {});
  // Returns the delete's revision. Needs the lock (PW/EX); revokes it.
  Result<uint64_t> Delete(uint64_t number, std::string_view owner = {});
  Result<Grant> Lock(uint64_t number, const RecordLockOptions& options = {});
  Status Unlock(uint64_t number, std::string_view owner = {});
  // Records matching every criterion (none = all), ascending number.
  Result<RecordPage> Find(const std::vector<RecordCriterion>& criteria, uint64_t revision = 0,
                          uint64_t start_after = 0, uint32_t limit = 0);

  const std::string& table() const { return table_; }

 private:
  Client& client_;
  std::string table_;
};

// RAII: holds a record lock for its lifetime; unlocks in the destructor
// (errors there are ignored: the session lease is the backstop). Move-only.
class RecordLockGuard {
 public:
  static Result<RecordLockGuard> Acquire(Records& records, uint64_t number,
                                         const RecordLockOptions& options = {});
  RecordLockGuard(RecordLockGuard&& other) noexcept;
  RecordLockGuard& operator=(RecordLockGuard&& other) noexcept;
  RecordLockGuard(const RecordLockGuard&) = delete;
  RecordLockGuard& operator=(const RecordLockGuard&) = delete;
  ~RecordLockGuard();

  // Unlocks now (NOT_HELD if the lock was lost, e.g. the record was deleted).
  Status Unlock();
  uint64_t fencing_token() const { return grant_.fencing_token; }
  const Grant& grant() const { return grant_; }
  uint64_t number() const { return number_; }

 private:
  RecordLockGuard(Records* records, uint64_t number, std::string owner, Grant grant)
      : records_(records), number_(number), owner_(std::move(owner)), grant_(std::move(grant)) {}
  Records* records_ = nullptr;  // null once unlocked or moved from
  uint64_t number_ = 0;
  std::string owner_;
  Grant grant_;
};

}  // namespace latchkey
