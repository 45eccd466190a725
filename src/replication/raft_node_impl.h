// RaftNode::Impl, shared by the adapter files raft_node.cc (lifecycle, loop,
// shutdown), raft_node_apply.cc (proposals, FSM hooks), raft_node_membership.cc
// (barriers, membership, leadership transfer) and raft_node_io.cc (what passes
// between libraft and its io). Part of the adapter: includes raft.h. Nothing
// outside src/replication/raft_node*.cc may include this header.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "replication/raft_config_rollback.h"
#include "replication/raft_node.h"
#include "replication/raft_reply_guard.h"
#include "replication/raft_snapshot_overlap.h"
#include "replication/raft_transfer_send.h"

extern "C" {
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>
}

namespace latchkey::replication {

namespace raft_detail {

inline std::string RaftError(int rv) {
  return std::string(raft_strerror(rv)) + " (" + std::to_string(rv) + ")";
}

// RaftError plus libraft's detail message when it has one.
inline std::string RaftError(int rv, const char* detail) {
  std::string s = RaftError(rv);
  if (detail != nullptr && detail[0] != '\0') s += std::string(": ") + detail;
  return s;
}

inline RaftInfo::Role RoleFromState(int state) {
  switch (state) {
    case RAFT_LEADER: return RaftInfo::Role::kLeader;
    case RAFT_FOLLOWER: return RaftInfo::Role::kFollower;
    case RAFT_CANDIDATE: return RaftInfo::Role::kCandidate;
    default: return RaftInfo::Role::kUnavailable;
  }
}

}  // namespace raft_detail

struct RaftNode::Impl {
  Impl(RaftNodeOptions opts, StateMachineHooks* h) : options(std::move(opts)), hooks(h) {}
  ~Impl() {
    if (wake_fd >= 0) ::close(wake_fd);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // One raft_apply in flight. Owned by `pending` from raft_apply() until its
  // callback (or the close path) runs.
  struct ApplyRequest {
    struct raft_apply req {};   // must stay alive until libraft's callback
    struct raft_buffer buf {};  // the array raft_apply reads; base owned by raft on success
    Impl* impl = nullptr;
    ProposeCallback cb;
    // Output of hooks->Apply for this entry, parked until the callback runs.
    std::unique_ptr<ApplyOutput> output;
    uint64_t index = 0;
  };

  // ---- Immutable after Create() ----
  const RaftNodeOptions options;
  StateMachineHooks* const hooks;

  // ---- Set before Start(), read on the loop thread ----
  std::function<void(bool)> leadership_handler;
  uint32_t tick_period_ms = 0;
  std::function<void()> tick_handler;

  // ---- Cross-thread state, guarded by mu ----
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> queue;  // guarded by mu
  bool accepting_posts = true;              // guarded by mu; false after Stop() or failed Start()
  bool wake_ready = false;                  // guarded by mu; the wake-up handle is open
  bool wake_pending = false;                // guarded by mu; wake_fd was written, not yet drained
  std::optional<Status> start_result;       // guarded by mu; set once by the loop thread
  bool started = false;                     // guarded by mu; Start() was called

  std::mutex stop_mu;    // serializes Stop() calls
  bool stopped = false;  // guarded by stop_mu

  std::thread thread;
  std::atomic<std::thread::id> loop_thread_id{};

  // ---- Loop thread only ----
  uv_loop_t loop{};
  struct raft_uv_transport transport {};
  struct raft_io io {};
  struct raft_fsm fsm {};
  struct raft raft {};
  // Post()'s wake-up: an eventfd polled by the loop (not uv_async_t, whose
  // loop side spins and yields while a poster that the wake-up preempted
  // has not finished uv_async_send). Written outside mu, at most once per
  // drain; open from Create until ~Impl, so a late write is harmless.
  int wake_fd = -1;
  uv_poll_t wake_poll{};
  uv_check_t check{};
  uv_idle_t idle{};  // active while deferred work waits: the loop must not block
  uv_timer_t tick_timer{};
  uv_timer_t compaction_timer{};
  bool loop_inited = false;
  bool transport_inited = false;
  bool io_inited = false;
  bool raft_inited = false;
  bool handles_inited = false;
  bool raft_running = false;  // raft_start succeeded and raft_close not yet called
  bool closing = false;
  bool last_is_leader = false;
  // Start() completion for a single voter: wait until last_applied >= this.
  bool start_pending = false;
  uint64_t start_target_index = 0;
  std::chrono::steady_clock::time_point start_deadline;
  std::chrono::steady_clock::time_point close_deadline;
  std::map<uint64_t, ApplyRequest*> pending;    // by log index
  std::vector<std::function<void()>> deferred;  // RaftNode::Defer(), in order
  // Idle compaction (RaftNodeOptions::idle_compaction_ms), on compaction_timer.
  uint64_t idle_seen_applied = 0;  // last_applied when the timer last saw progress
  std::chrono::steady_clock::time_point idle_since{};
  uint64_t last_snapshot_applied = 0;  // last_applied when the last snapshot was taken
  bool snapshot_running = false;       // between FsmSnapshot and FsmSnapshotFinalize
  bool compaction_armed = false;       // threshold/trailing lowered, waiting for a snapshot
  uint64_t idle_pages_released = 0;    // log index pages given back after idle compactions
  std::chrono::steady_clock::time_point compaction_armed_at{};
  // libraft's own io->start, and the receive callback raft_start gave it
  // (IoStart puts IoRecv in between).
  int (*io_start)(struct raft_io*, unsigned, raft_io_tick_cb, raft_io_recv_cb) = nullptr;
  raft_io_recv_cb raft_recv = nullptr;
  int (*io_send)(struct raft_io*, struct raft_io_send*, const struct raft_message*,
                 raft_io_send_cb) = nullptr;
  int (*io_load)(struct raft_io*, raft_term*, raft_id*, struct raft_snapshot**, raft_index*,
                 struct raft_entry*[], size_t*) = nullptr;
  int (*io_append)(struct raft_io*, struct raft_io_append*, const struct raft_entry[], unsigned,
                   raft_io_append_cb) = nullptr;
  // Log append latency and volume (RaftInfo::log_appends), loop thread only.
  LogAppendStats log_appends;
  // Appends handed to the io whose callback has not run yet (IoAppend), and
  // what RaftNode::DeferUntilWriteDone queued until that count is back to 0.
  size_t appends_in_flight = 0;
  std::vector<std::function<void()>> after_write;
  AppendReplyGuard reply_guard;
  // TimeoutNow sends of a leadership transfer (raft_transfer_send.h).
  TransferSendGuard transfer_sends;
  // A copy of the committed configuration, for the rollbacks libraft 0.15
  // cannot do itself (raft_config_rollback.h).
  ConfigRollbackGuard config_rollback;
  // An InstallSnapshot held back while a snapshot was being taken or
  // installed (IoRecv); owns the message's configuration and data.
  struct DeferredSnapshot {
    struct raft_message msg {};
    std::string address;
  };
  std::unique_ptr<DeferredSnapshot> deferred_snapshot;
  // Reactor (raft_node_reactor.cc): descriptor watches and one-shot timers,
  // each heap-allocated and freed by its handle's close callback.
  struct FdWatch {
    uv_poll_t poll{};
    Reactor::FdCallback cb;
    Reactor::WatchId id = 0;
  };
  struct OneShot {
    uv_timer_t timer{};
    std::function<void()> fn;
    Impl* owner = nullptr;
  };
  std::unordered_map<Reactor::WatchId, FdWatch*> fd_watches;
  std::unordered_set<OneShot*> one_shots;
  Reactor::WatchId next_watch_id = 1;
  static void OnFdEvent(uv_poll_t* handle, int status, int events);
  static void OnOneShot(uv_timer_t* handle);
  void CloseFdWatch(FdWatch* w);
  void CloseOneShot(OneShot* t);
  // At raft close: whatever is still watched or scheduled.
  void CloseReactorHandles();

  bool OnLoopThread() const { return std::this_thread::get_id() == loop_thread_id.load(); }

  void SetStartResult(Status st);

  // ---------------------------------------------------------------------
  // Loop thread body.
  void Run();

  // Runs the loop until no handle is active, then releases it.
  void CloseLoop();

  Status InitAndStart();

  Status Bootstrap();

  // Releases whatever InitAndStart() set up. Runs on the loop thread.
  void TearDownAfterFailedStart();

  uint32_t VoterCount() const;

  void MaybeFinishStart();

  // ---------------------------------------------------------------------
  // Post() machinery.
  static void OnWake(uv_poll_t* handle, int status, int events);
  // With mu held: whether the caller must write wake_fd (after unlocking).
  bool NeedWakeLocked() {
    if (!wake_ready || wake_pending || queue.empty()) return false;
    wake_pending = true;
    return true;
  }
  void WriteWake() const;

  void DrainQueue();

  // RaftNode::Defer() without the thread check.
  void AddDeferred(std::function<void()> fn);
  // Runs what Defer() queued, including work queued meanwhile.
  void RunDeferred();
  static void OnIdle(uv_idle_t* handle) { static_cast<Impl*>(handle->data)->RunDeferred(); }

  // ---------------------------------------------------------------------
  // Leadership polling and tick.
  static void OnCheck(uv_check_t* handle);

  void PollLeadership();

  static void OnTick(uv_timer_t* handle);
  static void OnCompactionTimer(uv_timer_t* handle);
  void MaybeCompactWhenIdle();
  void DisarmCompaction();

  // ---------------------------------------------------------------------
  // Proposals.
  void Propose(std::string data, ProposeCallback cb);

  static void OnApplied(struct raft_apply* raw, int status, void* result);

  // Removes req from `pending` and runs its callback exactly once.
  void Finish(ApplyRequest* raw, int status);

  // ---------------------------------------------------------------------
  // Barriers, membership changes, leadership transfer. Each request struct
  // is heap-allocated and freed by its callback; libraft calls every
  // callback once, including from raft_close (with an error status).
  struct BarrierRequest {
    struct raft_barrier req {};
    DoneCallback cb;
  };
  struct ChangeRequest {
    struct raft_change req {};
    DoneCallback cb;
    std::string what;
  };
  struct TransferRequest {
    struct raft_transfer req {};
    Impl* impl = nullptr;
    DoneCallback cb;
    uint64_t target = 0;
  };

  // Maps a libraft error code of a change/barrier to the contract's codes.
  Status ChangeError(int rv, const std::string& what) const;

  bool CheckRunning(const DoneCallback& cb);

  void Barrier(DoneCallback cb);
  void ReadBarrier(DoneCallback cb);
  // A leader that is the only voter of its (latest) configuration.
  bool SoleVoterLeader() const;
  // Reads waiting for the read barrier in flight (ReadBarrier).
  std::vector<DoneCallback> read_barrier_waiters;
  bool read_barrier_in_flight = false;

  static void OnChanged(struct raft_change* raw, int status);

  // Runs one of raft_add / raft_assign / raft_remove through `call`.
  template <typename Fn>
  void Change(std::string what, DoneCallback cb, Fn call);

  void TransferLeadership(uint64_t id, DoneCallback cb);

  // ---------------------------------------------------------------------
  // FSM hooks (loop thread, called from inside libraft).
  static int FsmApply(struct raft_fsm* fsm, const struct raft_buffer* buf, void** result);

  static int FsmSnapshot(struct raft_fsm* fsm, struct raft_buffer* bufs[], unsigned* n_bufs);
  // FSM version 2: libraft has written (or failed to write) the snapshot.
  static int FsmSnapshotFinalize(struct raft_fsm* fsm, struct raft_buffer* bufs[],
                                 unsigned* n_bufs);

  static int FsmRestore(struct raft_fsm* fsm, struct raft_buffer* buf);

  // ---------------------------------------------------------------------
  // Between libraft and its io (raft_node_io.cc): an InstallSnapshot that
  // arrives while a snapshot is taken or installed is held back instead of
  // dropped, and AppendEntries results go through reply_guard.
  static Impl* FromIo(struct raft_io* io);

  static int IoStart(struct raft_io* io, unsigned msecs, raft_io_tick_cb tick,
                     raft_io_recv_cb recv);

  bool SnapshotBusy() const;

  static void IoRecv(struct raft_io* io, struct raft_message* msg);

  // Before libraft handles an AppendEntries (raft_config_rollback.h).
  void GuardConfigRollback(const struct raft_message& msg);
  // Drops the entries of an AppendEntries that this node's snapshot already
  // holds (raft_snapshot_overlap.h).
  void GuardSnapshotOverlap(struct raft_message* msg);
  std::chrono::steady_clock::time_point overlap_logged_at{};
  uint64_t overlaps_unlogged = 0;
  static int IoSend(struct raft_io* io, struct raft_io_send* req, const struct raft_message* msg,
                    raft_io_send_cb cb);
  // libraft's load, then the loaded snapshot's configuration seeds the
  // rollback guard (MarkLoadedConfigurationUncommitted runs after raft_start).
  static int IoLoad(struct raft_io* io, raft_term* term, raft_id* voted_for,
                    struct raft_snapshot** snapshot, raft_index* start_index,
                    struct raft_entry* entries[], size_t* n_entries);

  // libraft's append, timed: IoAppendDone records how long the io took.
  static int IoAppend(struct raft_io* io, struct raft_io_append* req,
                      const struct raft_entry entries[], unsigned n, raft_io_append_cb cb);
  static void IoAppendDone(struct raft_io_append* req, int status);

  static void FreeInstallSnapshot(struct raft_message* msg);

  void DeferSnapshot(struct raft_message* msg);

  // Polled from OnCheck, i.e. after every loop iteration (the snapshot put
  // completes in a loop callback, so this runs right after it).
  void MaybeDeliverDeferredSnapshot();

  void DropDeferredSnapshot();

  // ---------------------------------------------------------------------
  // Shutdown (loop thread).
  void BeginClose();

  // libraft 0.15 crashes in raft_close when two or more leader appends are
  // still queued for disk: each cancelled append truncates the log from its
  // first index, and the next one then releases entries that are gone
  // (refsDecr on NULL; fixed upstream after 0.15 by canonical/raft#352). So
  // raft_close waits until every appended entry is stored (last_stored ==
  // last_index), which takes one disk write, or until a deadline. Entries
  // that commit meanwhile complete normally. Polled from OnCheck.
  void MaybeFinishClose();

  static void OnRaftClosed(struct raft* r);

  void FailAllPending();
};

}  // namespace latchkey::replication
