// RaftNode proposals (raft_apply and its completion) and the FSM hooks libraft
// calls (apply, snapshot, restore). Part of the adapter (raft_node_impl.h).

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <climits>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "common/log.h"
#include "replication/entry_envelope.h"
#include "replication/raft_buffers.h"
#include "replication/raft_node_impl.h"

namespace latchkey::replication {

using raft_detail::RaftError;

void RaftNode::Impl::Propose(std::string data, ProposeCallback cb) {
  LATCHKEY_CHECK(OnLoopThread());
  if (!raft_running || closing) {
    cb(Unavailable("raft node is not running"), 0, nullptr);
    return;
  }
  if (data.size() > UINT32_MAX - 64) {
    cb(InvalidArgument("raft entry of " + std::to_string(data.size()) + " bytes is too large"), 0,
       nullptr);
    return;
  }
  auto req = std::make_unique<ApplyRequest>();
  req->cb = std::move(cb);
  req->impl = this;
  req->req.data = req.get();
  const size_t size = envelope::Size(data.size());
  void* base = raft_malloc(size);
  if (base == nullptr) {
    req->cb(Status(Code::kResourceExhausted, "raft_malloc failed"), 0, nullptr);
    return;
  }
  envelope::Encode(data, static_cast<uint8_t*>(base));
  req->buf.base = base;
  req->buf.len = size;
  int rv = raft_apply(&raft, &req->req, &req->buf, 1, &Impl::OnApplied);
  if (rv != 0) {
    raft_free(base);  // ownership passes to raft only on success
    Code code = rv == RAFT_NOTLEADER ? Code::kNotLeader : Code::kUnavailable;
    req->cb(Status(code, "raft_apply: " + RaftError(rv)), 0, nullptr);
    return;
  }
  req->index = req->req.index;
  auto [it, inserted] = pending.emplace(req->index, req.get());
  LATCHKEY_CHECK(inserted);  // a leader never reuses an index of a live request
  (void)it;
  req.release();  // owned by `pending` until OnApplied or the close path
}

void RaftNode::Impl::OnApplied(struct raft_apply* raw, int status, void* result) {
  auto* req = static_cast<ApplyRequest*>(raw->data);
  // The output, if any, was parked in req by FsmApply; `result` is the same
  // pointer (or NULL on failure) and is not owned separately.
  LATCHKEY_CHECK(result == nullptr || result == req->output.get());
  req->impl->Finish(req, status);
}

void RaftNode::Impl::Finish(ApplyRequest* raw, int status) {
  std::unique_ptr<ApplyRequest> req(raw);
  auto it = pending.find(req->index);
  LATCHKEY_CHECK(it != pending.end() && it->second == raw);
  pending.erase(it);
  ProposeCallback cb = std::move(req->cb);
  if (status == 0) {
    cb(Status::Ok(), req->index, std::move(req->output));
    return;
  }
  Status st;
  if (closing || status == RAFT_SHUTDOWN) {
    // The entry may already be in the log; it is applied (or not) after a
    // restart. The contract reports shutdown as UNAVAILABLE.
    st = Unavailable("raft node shutting down (entry " + std::to_string(req->index) +
                     " may or may not be applied): " + RaftError(status));
  } else if (status == RAFT_LEADERSHIPLOST) {
    st = Status(Code::kMaybeApplied, "leadership lost after entry " + std::to_string(req->index) +
                                         " was appended: " + RaftError(status));
  } else {
    st = Unavailable("raft apply failed: " + RaftError(status));
  }
  req.reset();  // frees any parked output before the callback can re-enter
  cb(std::move(st), 0, nullptr);
}

int RaftNode::Impl::FsmApply(struct raft_fsm* fsm, const struct raft_buffer* buf, void** result) {
  Impl* self = static_cast<Impl*>(fsm->data);
  // libraft applies in order and bumps last_applied after we return.
  const uint64_t index = raft_last_applied(&self->raft) + 1;
  std::optional<std::string_view> payload = envelope::Decode(buf->base, buf->len);
  if (!payload.has_value()) {
    // Passed the segment/transport checksums yet not written by Propose():
    // a foreign or incompatible writer. Applying around it would fork state.
    LK_LOG_ERROR("raft node %llu: entry %llu (%zu bytes) is not a Latchkey entry envelope",
                 static_cast<unsigned long long>(self->options.node_id),
                 static_cast<unsigned long long>(index), buf->len);
    LATCHKEY_CHECK(payload.has_value());
  }
  std::unique_ptr<ApplyOutput> out = self->hooks->Apply(index, *payload);
  *result = nullptr;
  auto it = self->pending.find(index);
  if (it != self->pending.end() && out != nullptr) {
    ApplyRequest* req = it->second;
    req->output = std::move(out);
    *result = req->output.get();
  }
  // Otherwise (replay, follower, request already failed) `out` is freed here:
  // libraft would drop the pointer on the floor.
  return 0;
}

int RaftNode::Impl::FsmSnapshot(struct raft_fsm* fsm, struct raft_buffer* bufs[],
                                unsigned* n_bufs) {
  Impl* self = static_cast<Impl*>(fsm->data);
  if (SnapshotWouldStoreUncommittedConfiguration(self->raft)) {
    LK_LOG_DEBUG(
        "raft node %llu: snapshot postponed: the configuration at index %llu is not "
        "committed yet",
        static_cast<unsigned long long>(self->options.node_id),
        static_cast<unsigned long long>(self->raft.configuration_uncommitted_index));
    return RAFT_BUSY;  // libraft tries again after a later apply
  }
  self->snapshot_running = true;
  self->last_snapshot_applied = raft_last_applied(&self->raft);
  Result<std::string> snap = self->hooks->TakeSnapshot();
  if (!snap.ok()) {
    LK_LOG_ERROR("raft node %llu: TakeSnapshot failed: %s",
                 static_cast<unsigned long long>(self->options.node_id),
                 snap.status().ToString().c_str());
    self->snapshot_running = false;
    return RAFT_IOERR;
  }
  const size_t size = snap->size();
  // No copy: libraft writes the string's own bytes; FsmSnapshotFinalize frees it.
  if (int rv = SnapshotHandOff(std::move(*snap), bufs, n_bufs); rv != 0) {
    self->snapshot_running = false;
    return rv;
  }
  LK_LOG_DEBUG("raft node %llu: snapshot of %zu bytes at applied index %llu",
               static_cast<unsigned long long>(self->options.node_id), size,
               raft_last_applied(&self->raft));
  return 0;
}

namespace {
// Gives the OS back the pages of libraft's entry reference table that hold
// only unused buckets; returns how many. The table (struct raft_log's refs,
// one bucket per log index modulo its size) grows with the longest log held
// and is never shrunk, so after a burst it stays resident although an idle
// compaction left it (nearly) empty. A bucket is unused when its count is 0
// (and it has no chained slot); libraft fills every field when it takes one,
// so a page of unused buckets may come back zeroed. Buckets straddling a
// released page's edge are unused too, so zeroing part of them is harmless.
size_t ReleaseUnusedRefPages(const struct raft_log& log) {
  if (log.refs == nullptr || log.refs_size == 0) return 0;
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(log.refs);
  const uintptr_t end = begin + log.refs_size * sizeof(struct raft_entry_ref);
  auto unused = [&](size_t i) { return log.refs[i].count == 0 && log.refs[i].next == nullptr; };
  size_t released = 0;
  uintptr_t run = 0;  // start of a run of releasable pages (0: none)
  auto flush = [&](uintptr_t upto) {
    if (run != 0 && upto > run) {
      if (madvise(reinterpret_cast<void*>(run), upto - run, MADV_DONTNEED) == 0) {
        released += (upto - run) / page;
      }
    }
    run = 0;
  };
  uintptr_t p = (begin + page - 1) & ~(page - 1);
  for (; p + page <= end; p += page) {
    const size_t first = (p - begin) / sizeof(struct raft_entry_ref);
    const size_t last = (p + page - 1 - begin) / sizeof(struct raft_entry_ref);
    bool all_unused = true;
    for (size_t i = first; i <= last && i < log.refs_size; ++i) {
      if (!unused(i)) {
        all_unused = false;
        break;
      }
    }
    if (all_unused) {
      if (run == 0) run = p;
    } else {
      flush(p);
    }
  }
  flush(p);
  return released;
}
}  // namespace

int RaftNode::Impl::FsmSnapshotFinalize(struct raft_fsm* fsm, struct raft_buffer* bufs[],
                                        unsigned* n_bufs) {
  Impl* self = static_cast<Impl*>(fsm->data);
  self->snapshot_running = false;
  // After an idle compaction (libraft has already dropped the entries: in
  // 0.15 logSnapshot runs before this callback), the log's index is mostly
  // empty buckets.
  if (self->compaction_armed) self->idle_pages_released += ReleaseUnusedRefPages(self->raft.log);
  // libraft has compacted the log with the trailing count it had (an idle
  // compaction's short one); later snapshots use the configured values.
  self->DisarmCompaction();
  FreeSnapshotHandOff(bufs, n_bufs);
  // The snapshot was the largest allocation; glibc keeps freed heap pages
  // unless asked, so RSS would stay at the snapshot's peak.
  malloc_trim(0);
  return 0;
}

int RaftNode::Impl::FsmRestore(struct raft_fsm* fsm, struct raft_buffer* buf) {
  Impl* self = static_cast<Impl*>(fsm->data);
  Status st = self->hooks->Restore(std::string_view(static_cast<const char*>(buf->base), buf->len));
  if (!st.ok()) {
    LK_LOG_ERROR("raft node %llu: Restore failed: %s",
                 static_cast<unsigned long long>(self->options.node_id), st.ToString().c_str());
    return RAFT_CORRUPT;  // raft keeps ownership of buf->base on failure
  }
  raft_free(buf->base);  // on success the FSM owns the buffer
  buf->base = nullptr;
  return 0;
}

// -------------------------------------------------------------------------
// RaftNode

void RaftNode::Propose(std::string data, ProposeCallback cb) {
  impl_->Propose(std::move(data), std::move(cb));
}

}  // namespace latchkey::replication
