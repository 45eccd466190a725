// libraft buffer helpers shared by the adapter's files (raft_node.cc and the
// simulation fixture raft_sim.cc). Internal to src/replication: it includes
// raft.h, so nothing outside the adapter may include it.
#pragma once

#include <cstring>
#include <new>
#include <string>
#include <utility>

extern "C" {
#include <raft.h>
}

namespace latchkey::replication {

// Hands a snapshot to libraft as one raft_malloc'ed buffer in a raft_malloc'ed
// array; raft frees both with raft_free (FSM version 1). Returns 0 or RAFT_NOMEM.
inline int SnapshotToRaftBuffers(const std::string& data, struct raft_buffer* bufs[],
                                 unsigned* n_bufs) {
  auto* array = static_cast<struct raft_buffer*>(raft_malloc(sizeof(struct raft_buffer)));
  if (array == nullptr) return RAFT_NOMEM;
  void* base = raft_malloc(data.empty() ? 1 : data.size());
  if (base == nullptr) {
    raft_free(array);
    return RAFT_NOMEM;
  }
  if (!data.empty()) std::memcpy(base, data.data(), data.size());
  array[0].base = base;
  array[0].len = data.size();
  *bufs = array;
  *n_bufs = 1;
  return 0;
}

// FSM version 2 (with snapshot_finalize): hands the snapshot string itself to
// libraft, with no copy. The array has a hidden second slot that owns the
// string; libraft sees n_bufs == 1 and never frees anything. Release with
// FreeSnapshotHandOff from snapshot_finalize. Returns 0 or RAFT_NOMEM.
inline int SnapshotHandOff(std::string data, struct raft_buffer* bufs[], unsigned* n_bufs) {
  auto* array = new (std::nothrow) struct raft_buffer[2]{};
  if (array == nullptr) return RAFT_NOMEM;
  auto* owner = new (std::nothrow) std::string(std::move(data));
  if (owner == nullptr) {
    delete[] array;
    return RAFT_NOMEM;
  }
  array[0].base = owner->data();
  array[0].len = owner->size();
  array[1].base = owner;
  *bufs = array;
  *n_bufs = 1;
  return 0;
}

// Frees what SnapshotHandOff allocated (as soon as libraft is done with it).
inline void FreeSnapshotHandOff(struct raft_buffer* bufs[], unsigned* n_bufs) {
  if (*bufs != nullptr) {
    delete static_cast<std::string*>((*bufs)[1].base);
    delete[] * bufs;
  }
  *bufs = nullptr;
  *n_bufs = 0;
}

}  // namespace latchkey::replication
