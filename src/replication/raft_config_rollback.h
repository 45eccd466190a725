// Part of the replication adapter (includes raft.h): only raft_node*.cc and
// the adapter's tests include this header.
//
// ConfigRollbackGuard works around libraft 0.15's membership rollback
// (canonical/raft#250, fixed upstream by #354, after 0.15). When an
// AppendEntries from a new leader conflicts with a follower's uncommitted
// configuration entry, libraft rolls the configuration back to the last
// committed one by decoding the log entry at `configuration_index`
// (membershipRollback). If a snapshot has dropped that entry from the
// in-memory log, the lookup returns NULL and libraft dereferences it:
// SIGSEGV at address 0x10 in configurationDecode, on the loop thread. Seen
// in nemesis seed 7305 (5 nodes, session 8): a follower whose idle
// compaction had just kept only a few trailing entries was partitioned with
// an uncommitted `member remove` and died when the new leader's entries
// replaced it.
//
// The guard keeps its own copy of the last committed configuration (taken
// whenever libraft has no uncommitted one) and, before libraft handles an
// AppendEntries that would roll back while the committed entry is gone from
// memory, does the rollback itself: the same two steps as libraft's (the
// committed configuration becomes the current one, nothing is uncommitted),
// after which libraft truncates and appends as usual.
//
// Not covered: a rollback to a configuration that was committed while a
// later one was already uncommitted (two changes in one AppendEntries batch)
// and whose entry was then compacted; the guard then logs and leaves the
// message to libraft.
#pragma once

#include <cstddef>

extern "C" {
#include <raft.h>
}

namespace latchkey::replication {

// Number of entries in libraft's in-memory log.
inline size_t LogEntryCount(const struct raft_log& log) {
  return log.back >= log.front ? log.back - log.front : log.size - log.front + log.back;
}

// Whether the entry at `index` is in libraft's in-memory log (logGet).
inline bool LogHasEntry(const struct raft_log& log, raft_index index) {
  return index > log.offset && index <= log.offset + LogEntryCount(log);
}

// libraft's logLastIndex: with no entries in memory, the snapshot's last.
inline raft_index LogLastIndex(const struct raft_log& log) {
  const size_t n = LogEntryCount(log);
  if (n == 0 && log.snapshot.last_index != 0) return log.snapshot.last_index;
  return log.offset + n;
}

// The term of the entry at `index` as libraft's logTermOf sees it: the
// snapshot's last term at its last index, else the in-memory entry's, else 0.
inline raft_term LogTermOf(const struct raft_log& log, raft_index index) {
  if (index == 0 || index > LogLastIndex(log)) return 0;
  if (index == log.snapshot.last_index) return log.snapshot.last_term;
  if (!LogHasEntry(log, index)) return 0;
  const size_t slot = (log.front + static_cast<size_t>(index - 1 - log.offset)) % log.size;
  return log.entries[slot].term;
}

// Whether libraft, handling `args` now, would roll back its uncommitted
// configuration: the checks of recvAppendEntries and replicationAppend in
// their order (stale term: rejected; installing a snapshot: entries
// ignored; previous entry missing or of another term: rejected; then the
// first entry whose term differs from ours truncates the log there, which
// rolls back an uncommitted configuration at or after it, unless it is at or
// below the commit index, where libraft shuts down instead).
inline bool WouldRollBackConfiguration(const struct raft& r,
                                       const struct raft_append_entries& args) {
  if (r.configuration_uncommitted_index == 0) return false;
  if (args.term < r.current_term) return false;
  if (r.snapshot.put.data != nullptr && args.n_entries > 0) return false;
  if (args.prev_log_index > 0) {
    const raft_term prev = LogTermOf(r.log, args.prev_log_index);
    if (prev == 0 || prev != args.prev_log_term) return false;
  }
  for (unsigned j = 0; j < args.n_entries; ++j) {
    const raft_index index = args.prev_log_index + 1 + j;
    const raft_term local = LogTermOf(r.log, index);
    if (local == 0) return false;  // new entries from here on: nothing truncated
    if (local != args.entries[j].term) {
      return index > r.commit_index && r.configuration_uncommitted_index >= index;
    }
  }
  return false;
}

// libraft 0.15's takeSnapshot stores its current configuration, which may
// be uncommitted, under the committed one's index (more of canonical/raft#354).
// A node restarted from such a snapshot would keep a configuration that the
// cluster may since have rolled back. The FSM's snapshot callbacks (the
// node's and the simulation's) refuse with RAFT_BUSY while this holds;
// libraft then tries again after a later apply, by which time the change has
// committed or been rolled back.
inline bool SnapshotWouldStoreUncommittedConfiguration(const struct raft& r) {
  return r.configuration_uncommitted_index != 0;
}

class ConfigRollbackGuard {
 public:
  enum class Outcome {
    kNotNeeded,   // no rollback, or libraft still has the committed entry
    kRolledBack,  // done here from the kept copy
    kNoCopy       // needed, but the kept copy is not of configuration_index
  };

  ConfigRollbackGuard() { raft_configuration_init(&committed_); }
  ~ConfigRollbackGuard() { raft_configuration_close(&committed_); }
  ConfigRollbackGuard(const ConfigRollbackGuard&) = delete;
  ConfigRollbackGuard& operator=(const ConfigRollbackGuard&) = delete;

  // Keeps a copy of the committed configuration: libraft's current one while
  // nothing is uncommitted. Cheap when nothing changed. BeforeAppendEntries
  // calls it first; configurations reach a follower only in AppendEntries.
  void Observe(const struct raft& r) {
    if (r.configuration_uncommitted_index != 0 || r.configuration_index == 0) return;
    if (r.configuration_index == committed_index_) return;
    struct raft_configuration copy;
    if (!Copy(r.configuration, &copy)) return;  // out of memory: keep the old one
    raft_configuration_close(&committed_);
    committed_ = copy;
    committed_index_ = r.configuration_index;
  }

  // Call before libraft handles each AppendEntries.
  Outcome BeforeAppendEntries(struct raft* r, const struct raft_append_entries& args) {
    Observe(*r);
    if (LogHasEntry(r->log, r->configuration_index)) return Outcome::kNotNeeded;
    if (!WouldRollBackConfiguration(*r, args)) return Outcome::kNotNeeded;
    if (committed_index_ != r->configuration_index) return Outcome::kNoCopy;
    struct raft_configuration copy;
    if (!Copy(committed_, &copy)) return Outcome::kNoCopy;
    raft_configuration_close(&r->configuration);
    r->configuration = copy;
    r->configuration_uncommitted_index = 0;
    return Outcome::kRolledBack;
  }

  // Makes `conf`, committed at `index`, the kept copy: the loaded
  // snapshot's configuration (see MarkLoadedConfigurationUncommitted).
  bool Seed(const struct raft_configuration& conf, raft_index index) {
    struct raft_configuration copy;
    if (!Copy(conf, &copy)) return false;
    raft_configuration_close(&committed_);
    committed_ = copy;
    committed_index_ = index;
    return true;
  }

  raft_index committed_index() const { return committed_index_; }

 private:
  static bool Copy(const struct raft_configuration& from, struct raft_configuration* to) {
    raft_configuration_init(to);
    for (unsigned i = 0; i < from.n; ++i) {
      const struct raft_server& s = from.servers[i];
      if (raft_configuration_add(to, s.id, s.address, s.role) != 0) {
        raft_configuration_close(to);
        return false;
      }
    }
    return true;
  }

  struct raft_configuration committed_;
  raft_index committed_index_ = 0;
};

// libraft 0.15's raft_start takes the last configuration entry of the
// loaded log as committed (configuration_index, nothing uncommitted), though
// only what the snapshot covers is known to be. If that entry was not
// committed and a new leader's entries replace it, libraft truncates it
// without rolling the configuration back, and a later rollback would decode
// whichever entry then has that index. Call right after raft_start, with a
// guard seeded with the loaded snapshot's configuration (libraft no longer
// has it): when the current configuration comes from a log entry above the
// commit index, it is marked uncommitted, and the configuration before it
// becomes the committed one: an earlier configuration entry in memory
// (libraft decodes it if it rolls back), else the snapshot's (the guard's
// copy serves the rollback).
// Harmless if the entry was committed after all: libraft marks it committed
// again once its commit index passes it, and a committed entry is never
// truncated. Returns whether it changed anything.
inline bool MarkLoadedConfigurationUncommitted(struct raft* r, const ConfigRollbackGuard& guard) {
  const raft_index last = r->configuration_index;
  if (r->configuration_uncommitted_index != 0 || last == 0 || last <= r->commit_index) return false;
  if (!LogHasEntry(r->log, last)) return false;
  raft_index previous = 0;
  for (raft_index i = last - 1; i > 0 && LogHasEntry(r->log, i); --i) {
    const size_t slot = (r->log.front + static_cast<size_t>(i - 1 - r->log.offset)) % r->log.size;
    if (r->log.entries[slot].type == RAFT_CHANGE) {
      previous = i;
      break;
    }
  }
  if (previous == 0) {
    // No earlier configuration known (a bootstrap entry is committed anyway).
    if (guard.committed_index() == 0 || guard.committed_index() >= last) return false;
    previous = guard.committed_index();
  }
  r->configuration_uncommitted_index = last;
  r->configuration_index = previous;
  return true;
}

}  // namespace latchkey::replication
