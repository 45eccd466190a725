// RaftNode: libraft 0.15 (libuv backend, TCP transport) behind the contract in
// raft_node.h. This is the only translation unit that includes raft.h.
//
// libraft 0.15 behaviours this adapter relies on, measured on this machine
// (raft_node_test.cc exercises each; see also libraft-notes.md):
//
// * Entry data length must be a multiple of 8. The segment writer and the
//   TCP sender write entry buffers as given, but the decoders skip padding up
//   to 8 bytes: a 7-byte entry made the next restart report a corrupt segment.
//   Every entry is therefore wrapped in a versioned envelope (entry_envelope.h).
// * raft_uv auto-recovery is on by default: a segment it cannot parse is
//   renamed corrupt-* and the node starts without it, silently losing
//   committed entries. The adapter turns it off so Start() fails instead.
// * fsm->apply gets no index. Entries are applied strictly in order from
//   last_applied + 1, and last_applied is bumped only after fsm->apply and the
//   raft_apply callback returned, so the index inside the hook is
//   raft_last_applied() + 1 (and index - 1 inside the callback). raft_start and
//   snapshot installs set last_applied to the snapshot index first.
// * The `result` an fsm->apply hook stores reaches a raft_apply callback only
//   if a local request is pending for that entry (applyCommand in the 0.15
//   source); for replayed entries, follower entries and requests already
//   failed, libraft would drop the pointer. The adapter therefore parks the
//   output in its own pending request (found by index) or frees it on the
//   spot, and hands libraft only a borrowed pointer (or NULL).
// * raft_close fails every pending raft_apply synchronously with
//   RAFT_LEADERSHIPLOST (not RAFT_SHUTDOWN). Those entries may already be
//   durable: in the test all of them were applied after a restart. The
//   contract reports them as UNAVAILABLE; the message says "may or may not be
//   applied".
// * raft_close segfaults (refsDecr via appendLeaderCb/removeSuffix) if two or
//   more leader appends are still queued; Stop() first waits until every
//   appended entry is stored (Impl::MaybeFinishClose).
// * A single voter elects itself inside raft_start and, as the only voter,
//   commits and applies its whole loaded log before raft_start returns
//   (commit == last_applied == last_index right after it). Start() still waits
//   for last_applied to reach the last loaded index (MaybeFinishStart) so the
//   contract holds if a libraft version does this lazily.

#include "replication/raft_node.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "common/log.h"
#include "replication/entry_envelope.h"
#include "replication/raft_buffers.h"
#include "replication/raft_reply_guard.h"

extern "C" {
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>
}

namespace latchkey::replication {

std::string_view MemberRoleName(RaftMember::Role role) {
  switch (role) {
    case RaftMember::Role::kVoter: return "voter";
    case RaftMember::Role::kStandby: return "standby";
    case RaftMember::Role::kSpare: return "spare";
  }
  return "spare";
}

std::string_view RoleName(RaftInfo::Role role) {
  switch (role) {
    case RaftInfo::Role::kLeader: return "leader";
    case RaftInfo::Role::kFollower: return "follower";
    case RaftInfo::Role::kCandidate: return "candidate";
    case RaftInfo::Role::kUnavailable: return "unavailable";
  }
  return "unavailable";
}

namespace {

std::string RaftError(int rv) {
  return std::string(raft_strerror(rv)) + " (" + std::to_string(rv) + ")";
}

// RaftError plus libraft's detail message when it has one.
std::string RaftError(int rv, const char* detail) {
  std::string s = RaftError(rv);
  if (detail != nullptr && detail[0] != '\0') s += std::string(": ") + detail;
  return s;
}

RaftInfo::Role RoleFromState(int state) {
  switch (state) {
    case RAFT_LEADER: return RaftInfo::Role::kLeader;
    case RAFT_FOLLOWER: return RaftInfo::Role::kFollower;
    case RAFT_CANDIDATE: return RaftInfo::Role::kCandidate;
    default: return RaftInfo::Role::kUnavailable;
  }
}

// How long Start() waits for a single voter to become leader and replay its
// log before giving up. Replay of a long log is bounded by disk speed; this is
// a backstop against a wedged loop, not a tuning knob.
constexpr auto kStartReplayDeadline = std::chrono::seconds(120);

// How long Stop() waits for appended entries to reach the disk before calling
// raft_close anyway (see Impl::MaybeFinishClose).
constexpr auto kCloseDrainDeadline = std::chrono::seconds(10);

}  // namespace

struct RaftNode::Impl {
  Impl(RaftNodeOptions opts, StateMachineHooks* h) : options(std::move(opts)), hooks(h) {}

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
  bool async_ready = false;                 // guarded by mu; uv_async_send allowed
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
  uv_async_t async{};
  uv_check_t check{};
  uv_timer_t tick_timer{};
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
  std::map<uint64_t, ApplyRequest*> pending;  // by log index
  // libraft's own io->start, and the receive callback raft_start gave it
  // (IoStart puts IoRecv in between).
  int (*io_start)(struct raft_io*, unsigned, raft_io_tick_cb, raft_io_recv_cb) = nullptr;
  raft_io_recv_cb raft_recv = nullptr;
  int (*io_send)(struct raft_io*, struct raft_io_send*, const struct raft_message*,
                 raft_io_send_cb) = nullptr;
  AppendReplyGuard reply_guard;
  // An InstallSnapshot held back while a snapshot was being taken or
  // installed (IoRecv); owns the message's configuration and data.
  struct DeferredSnapshot {
    struct raft_message msg {};
    std::string address;
  };
  std::unique_ptr<DeferredSnapshot> deferred_snapshot;

  bool OnLoopThread() const { return std::this_thread::get_id() == loop_thread_id.load(); }

  void SetStartResult(Status st) {
    std::lock_guard<std::mutex> lock(mu);
    if (start_result.has_value()) return;
    if (!st.ok()) accepting_posts = false;
    start_result = std::move(st);
    cv.notify_all();
  }

  // ---------------------------------------------------------------------
  // Loop thread body.
  void Run() {
    loop_thread_id = std::this_thread::get_id();
    Status st = InitAndStart();
    if (!st.ok()) {
      LK_LOG_ERROR("raft node %llu: start failed: %s",
                   static_cast<unsigned long long>(options.node_id), st.ToString().c_str());
      SetStartResult(st);
      TearDownAfterFailedStart();
      return;
    }
    MaybeFinishStart();
    CloseLoop();  // returns once OnRaftClosed has closed every handle
  }

  // Runs the loop until no handle is active, then releases it.
  void CloseLoop() {
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) == UV_EBUSY) {
      // Only reachable if libraft left a handle open after its close callback.
      uv_walk(
          &loop,
          [](uv_handle_t* h, void*) {
            if (uv_is_closing(h)) return;
            LK_LOG_WARN("raft node: closing leftover libuv %s handle",
                        uv_handle_type_name(h->type));
            uv_close(h, nullptr);
          },
          nullptr);
      uv_run(&loop, UV_RUN_DEFAULT);
      LATCHKEY_CHECK(uv_loop_close(&loop) == 0);
    }
    loop_inited = false;
  }

  Status InitAndStart() {
    // libuv does not ignore SIGPIPE; a peer closing a socket would kill us.
    std::signal(SIGPIPE, SIG_IGN);

    struct stat sb {};
    if (::stat(options.data_dir.c_str(), &sb) != 0) {
      return Status(Code::kFailedPrecondition, "raft data dir '" + options.data_dir +
                                                   "' is not accessible: " + std::strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode)) {
      return Status(Code::kFailedPrecondition,
                    "raft data dir '" + options.data_dir + "' is not a directory");
    }

    int rv = uv_loop_init(&loop);
    if (rv != 0) return Internal(std::string("uv_loop_init: ") + uv_strerror(rv));
    loop_inited = true;

    rv = raft_uv_tcp_init(&transport, &loop);
    if (rv != 0) return Internal("raft_uv_tcp_init: " + RaftError(rv));
    transport_inited = true;

    rv = raft_uv_init(&io, &loop, options.data_dir.c_str(), &transport);
    if (rv != 0) {
      return Status(Code::kFailedPrecondition, "raft_uv_init on data dir '" + options.data_dir +
                                                   "': " + RaftError(rv, io.errmsg));
    }
    io_inited = true;
    // Auto-recovery renames a segment it cannot parse to corrupt-* and starts
    // without it, silently dropping acknowledged entries. Fail Start instead.
    raft_uv_set_auto_recovery(&io, false);

    fsm.version = 1;
    fsm.data = this;
    fsm.apply = &Impl::FsmApply;
    fsm.snapshot = &Impl::FsmSnapshot;
    fsm.restore = &Impl::FsmRestore;

    rv = raft_init(&raft, &io, &fsm, options.node_id, options.raft_address.c_str());
    if (rv != 0) {
      return Status(Code::kFailedPrecondition, "raft_init(id=" + std::to_string(options.node_id) +
                                                   ", address=" + options.raft_address +
                                                   "): " + RaftError(rv, raft_errmsg(&raft)));
    }
    raft_inited = true;
    raft.data = this;
    raft_set_election_timeout(&raft, options.election_timeout_ms);
    raft_set_heartbeat_timeout(&raft, options.heartbeat_timeout_ms);
    raft_set_snapshot_threshold(&raft, options.snapshot_threshold);
    raft_set_snapshot_trailing(&raft, options.snapshot_trailing);
    raft_set_pre_vote(&raft, options.pre_vote);
    raft_set_install_snapshot_timeout(&raft, options.install_snapshot_timeout_ms);
    // See IoRecv: an InstallSnapshot that arrives while this node takes or
    // installs a snapshot is held back instead of dropped.
    // AppendReplyGuard (raft_reply_guard.h) watches what libraft receives and
    // sends.
    io_start = io.start;
    io.start = &Impl::IoStart;
    io_send = io.send;
    io.send = &Impl::IoSend;

    // A joining node must not bootstrap: a second configuration with itself
    // as the only voter would elect it on its own and fork the cluster.
    if (!options.join) LATCHKEY_RETURN_IF_ERROR(Bootstrap());

    rv = raft_start(&raft);
    if (rv != 0) {
      std::string msg = "raft_start(address=" + options.raft_address + ", data dir '" +
                        options.data_dir + "'): " + RaftError(rv, raft_errmsg(&raft));
      if (rv == RAFT_IOERR) msg += " (is the address already in use?)";
      return Status(rv == RAFT_IOERR ? Code::kUnavailable : Code::kFailedPrecondition, msg);
    }
    raft_running = true;

    rv = uv_async_init(&loop, &async, &Impl::OnAsync);
    LATCHKEY_CHECK(rv == 0);
    async.data = this;
    uv_check_init(&loop, &check);
    check.data = this;
    uv_check_start(&check, &Impl::OnCheck);
    uv_timer_init(&loop, &tick_timer);
    tick_timer.data = this;
    if (tick_handler && tick_period_ms > 0) {
      uv_timer_start(&tick_timer, &Impl::OnTick, tick_period_ms, tick_period_ms);
    }
    handles_inited = true;

    LK_LOG_INFO(
        "raft node %llu started on %s: state=%s term=%llu commit=%llu applied=%llu last_index=%llu "
        "snapshot=%llu voters=%u",
        static_cast<unsigned long long>(options.node_id), options.raft_address.c_str(),
        std::string(RoleName(RoleFromState(raft_state(&raft)))).c_str(), raft.current_term,
        raft.commit_index, raft_last_applied(&raft), raft_last_index(&raft),
        raft.log.snapshot.last_index, VoterCount());

    {
      std::lock_guard<std::mutex> lock(mu);
      async_ready = true;
      if (!queue.empty()) uv_async_send(&async);  // Posts made before Start()
    }

    // A single voter elects itself inside raft_start; its log is replayed as
    // it commits. Start() returns once that replay has caught up with what
    // was on disk. Other configurations return right away: what is committed
    // is learnt from the leader later.
    if (VoterCount() == 1 && raft_state(&raft) == RAFT_LEADER) {
      start_pending = true;
      start_target_index = raft_last_index(&raft);
      start_deadline = std::chrono::steady_clock::now() + kStartReplayDeadline;
    } else {
      SetStartResult(Status::Ok());
    }
    return Status::Ok();
  }

  Status Bootstrap() {
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    int rv = 0;
    if (options.initial_voters.empty()) {
      rv = raft_configuration_add(&conf, options.node_id, options.raft_address.c_str(), RAFT_VOTER);
    } else {
      for (const RaftPeer& peer : options.initial_voters) {
        rv = raft_configuration_add(&conf, peer.id, peer.address.c_str(), RAFT_VOTER);
        if (rv != 0) break;
      }
    }
    if (rv != 0) {
      raft_configuration_close(&conf);
      return InvalidArgument("bad initial configuration: " + RaftError(rv));
    }
    rv = raft_bootstrap(&raft, &conf);
    raft_configuration_close(&conf);
    if (rv == RAFT_CANTBOOTSTRAP) return Status::Ok();  // state already exists: not a first boot
    if (rv != 0) {
      return Status(Code::kFailedPrecondition, "raft_bootstrap in '" + options.data_dir +
                                                   "': " + RaftError(rv, raft_errmsg(&raft)));
    }
    LK_LOG_INFO("raft node %llu: bootstrapped new cluster with %zu voter(s)",
                static_cast<unsigned long long>(options.node_id),
                options.initial_voters.empty() ? size_t{1} : options.initial_voters.size());
    return Status::Ok();
  }

  // Releases whatever InitAndStart() set up. Runs on the loop thread.
  void TearDownAfterFailedStart() {
    if (raft_inited) {
      // raft_close closes io (and through it the transport); free them in
      // the callback as in a normal shutdown.
      raft_running = false;
      closing = true;
      raft_close(&raft, &Impl::OnRaftClosed);
    } else {
      if (io_inited) raft_uv_close(&io);
      if (transport_inited) raft_uv_tcp_close(&transport);
      io_inited = transport_inited = false;
    }
    if (loop_inited) CloseLoop();
  }

  uint32_t VoterCount() const {
    uint32_t n = 0;
    for (unsigned i = 0; i < raft.configuration.n; ++i) {
      if (raft.configuration.servers[i].role == RAFT_VOTER) ++n;
    }
    return n;
  }

  void MaybeFinishStart() {
    if (!start_pending) return;
    if (raft_state(&raft) == RAFT_LEADER && raft_last_applied(&raft) >= start_target_index) {
      start_pending = false;
      LK_LOG_INFO("raft node %llu: replayed log up to index %llu",
                  static_cast<unsigned long long>(options.node_id), raft_last_applied(&raft));
      SetStartResult(Status::Ok());
    } else if (raft_state(&raft) != RAFT_LEADER) {
      // Lost self-leadership (e.g. configuration changed): nothing more to
      // wait for locally.
      start_pending = false;
      SetStartResult(Status::Ok());
    } else if (std::chrono::steady_clock::now() > start_deadline) {
      start_pending = false;
      SetStartResult(Status(Code::kTimeout, "raft log replay did not reach index " +
                                                std::to_string(start_target_index)));
    }
  }

  // ---------------------------------------------------------------------
  // Post() machinery.
  static void OnAsync(uv_async_t* handle) { static_cast<Impl*>(handle->data)->DrainQueue(); }

  void DrainQueue() {
    std::deque<std::function<void()>> batch;
    {
      std::lock_guard<std::mutex> lock(mu);
      batch.swap(queue);
    }
    while (!batch.empty()) {
      std::function<void()> fn = std::move(batch.front());
      batch.pop_front();
      if (closing) continue;  // dropped after the close request ran
      fn();
    }
  }

  // ---------------------------------------------------------------------
  // Leadership polling and tick.
  static void OnCheck(uv_check_t* handle) {
    Impl* self = static_cast<Impl*>(handle->data);
    self->MaybeFinishStart();
    self->MaybeDeliverDeferredSnapshot();
    self->MaybeFinishClose();
    self->PollLeadership();
  }

  void PollLeadership() {
    bool is_leader = raft_running && raft_state(&raft) == RAFT_LEADER;
    if (is_leader == last_is_leader) return;
    last_is_leader = is_leader;
    LK_LOG_INFO("raft node %llu: %s leadership (term %llu)",
                static_cast<unsigned long long>(options.node_id), is_leader ? "gained" : "lost",
                raft.current_term);
    if (leadership_handler) leadership_handler(is_leader);
  }

  static void OnTick(uv_timer_t* handle) {
    Impl* self = static_cast<Impl*>(handle->data);
    if (!self->closing && self->tick_handler) self->tick_handler();
  }

  // ---------------------------------------------------------------------
  // Proposals.
  void Propose(std::string data, ProposeCallback cb) {
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

  static void OnApplied(struct raft_apply* raw, int status, void* result) {
    auto* req = static_cast<ApplyRequest*>(raw->data);
    // The output, if any, was parked in req by FsmApply; `result` is the same
    // pointer (or NULL on failure) and is not owned separately.
    LATCHKEY_CHECK(result == nullptr || result == req->output.get());
    req->impl->Finish(req, status);
  }

  // Removes req from `pending` and runs its callback exactly once.
  void Finish(ApplyRequest* raw, int status) {
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
  Status ChangeError(int rv, const std::string& what) const {
    std::string msg = what + ": " + RaftError(rv);
    switch (rv) {
      case RAFT_NOTLEADER: return Status(Code::kNotLeader, msg);
      case RAFT_CANTCHANGE:
        return Status(Code::kFailedPrecondition,
                      msg + " (another membership change is in progress; retry when it is done)");
      case RAFT_DUPLICATEID:
      case RAFT_DUPLICATEADDRESS: return Status(Code::kAlreadyExists, msg);
      case RAFT_BADID:
      case RAFT_NOTFOUND: return Status(Code::kNotFound, msg);
      case RAFT_BADROLE: return InvalidArgument(msg);
      case RAFT_LEADERSHIPLOST: return Status(Code::kMaybeApplied, msg);
      case RAFT_SHUTDOWN: return Unavailable(msg);
      default: return Unavailable(msg);
    }
  }

  bool CheckRunning(const DoneCallback& cb) {
    LATCHKEY_CHECK(OnLoopThread());
    if (!raft_running || closing) {
      cb(Unavailable("raft node is not running"));
      return false;
    }
    return true;
  }

  void Barrier(DoneCallback cb) {
    if (!CheckRunning(cb)) return;
    auto req = std::make_unique<BarrierRequest>();
    req->cb = std::move(cb);
    req->req.data = req.get();
    int rv = raft_barrier(&raft, &req->req, [](struct raft_barrier* raw, int status) {
      std::unique_ptr<BarrierRequest> r(static_cast<BarrierRequest*>(raw->data));
      DoneCallback done = std::move(r->cb);
      r.reset();
      if (status == 0) {
        done(Status::Ok());
      } else if (status == RAFT_LEADERSHIPLOST || status == RAFT_NOTLEADER) {
        done(Status(Code::kNotLeader,
                    "leadership lost before the read barrier applied: " + RaftError(status)));
      } else {
        done(Unavailable("read barrier failed: " + RaftError(status)));
      }
    });
    if (rv != 0) {
      DoneCallback done = std::move(req->cb);
      done(rv == RAFT_NOTLEADER ? Status(Code::kNotLeader, "raft_barrier: " + RaftError(rv))
                                : Unavailable("raft_barrier: " + RaftError(rv)));
      return;
    }
    req.release();
  }

  static void OnChanged(struct raft_change* raw, int status) {
    std::unique_ptr<ChangeRequest> r(static_cast<ChangeRequest*>(raw->data));
    DoneCallback done = std::move(r->cb);
    if (status == 0) {
      LK_LOG_INFO("raft membership change done: %s", r->what.c_str());
      done(Status::Ok());
      return;
    }
    std::string msg = r->what + ": " + RaftError(status);
    r.reset();
    done(status == RAFT_LEADERSHIPLOST
             ? Status(Code::kMaybeApplied, msg + " (leadership lost; check `member list`)")
             : Unavailable(msg));
  }

  // Runs one of raft_add / raft_assign / raft_remove through `call`.
  template <typename Fn>
  void Change(std::string what, DoneCallback cb, Fn call) {
    if (!CheckRunning(cb)) return;
    auto req = std::make_unique<ChangeRequest>();
    req->cb = std::move(cb);
    req->what = std::move(what);
    req->req.data = req.get();
    int rv = call(&req->req);
    if (rv != 0) {
      DoneCallback done = std::move(req->cb);
      Status st = ChangeError(rv, req->what);
      req.reset();
      done(std::move(st));
      return;
    }
    req.release();
  }

  void TransferLeadership(uint64_t id, DoneCallback cb) {
    if (!CheckRunning(cb)) return;
    auto req = std::make_unique<TransferRequest>();
    req->cb = std::move(cb);
    req->impl = this;
    req->target = id;
    req->req.data = req.get();
    int rv = raft_transfer(&raft, &req->req, id, [](struct raft_transfer* raw) {
      std::unique_ptr<TransferRequest> r(static_cast<TransferRequest*>(raw->data));
      DoneCallback done = std::move(r->cb);
      Impl* self = r->impl;
      raft_id leader = 0;
      const char* address = nullptr;
      if (self->raft_running) raft_leader(&self->raft, &leader, &address);
      const bool ok =
          leader != 0 && leader != self->options.node_id && (r->target == 0 || leader == r->target);
      r.reset();
      done(ok ? Status::Ok()
              : Status(Code::kTimeout,
                       "leadership transfer did not complete within an "
                       "election timeout; the leader is now node " +
                           std::to_string(leader)));
    });
    if (rv != 0) {
      DoneCallback done = std::move(req->cb);
      req.reset();
      done(ChangeError(rv, "transfer leadership to node " + std::to_string(id)));
      return;
    }
    req.release();
  }

  // ---------------------------------------------------------------------
  // FSM hooks (loop thread, called from inside libraft).
  static int FsmApply(struct raft_fsm* fsm, const struct raft_buffer* buf, void** result) {
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

  static int FsmSnapshot(struct raft_fsm* fsm, struct raft_buffer* bufs[], unsigned* n_bufs) {
    Impl* self = static_cast<Impl*>(fsm->data);
    Result<std::string> snap = self->hooks->TakeSnapshot();
    if (!snap.ok()) {
      LK_LOG_ERROR("raft node %llu: TakeSnapshot failed: %s",
                   static_cast<unsigned long long>(self->options.node_id),
                   snap.status().ToString().c_str());
      return RAFT_IOERR;
    }
    const std::string& data = *snap;
    if (int rv = SnapshotToRaftBuffers(data, bufs, n_bufs); rv != 0) return rv;
    LK_LOG_DEBUG("raft node %llu: snapshot of %zu bytes at applied index %llu",
                 static_cast<unsigned long long>(self->options.node_id), data.size(),
                 raft_last_applied(&self->raft));
    return 0;
  }

  static int FsmRestore(struct raft_fsm* fsm, struct raft_buffer* buf) {
    Impl* self = static_cast<Impl*>(fsm->data);
    Status st =
        self->hooks->Restore(std::string_view(static_cast<const char*>(buf->base), buf->len));
    if (!st.ok()) {
      LK_LOG_ERROR("raft node %llu: Restore failed: %s",
                   static_cast<unsigned long long>(self->options.node_id), st.ToString().c_str());
      return RAFT_CORRUPT;  // raft keeps ownership of buf->base on failure
    }
    raft_free(buf->base);  // on success the FSM owns the buffer
    buf->base = nullptr;
    return 0;
  }

  // ---------------------------------------------------------------------
  // InstallSnapshot while busy with a snapshot (loop thread).
  //
  // libraft 0.15 drops an InstallSnapshot that arrives while the node takes a
  // snapshot of its own (fsm->snapshot returned, the snapshot file is still
  // being written) or installs another one: replicationInstallSnapshot
  // returns RAFT_BUSY, recvCb frees the message and nothing is answered. The
  // leader keeps the follower in snapshot mode, ignores the rejections of its
  // heartbeats (their index is not the snapshot's) and sends again only after
  // install_snapshot_timeout (30 s by default). A follower catching up by
  // appends hits this easily: the append that crosses the snapshot threshold
  // makes it snapshot, and the leader, which has compacted the next entries,
  // sends its snapshot in answer to the same append. Observed as a restarted
  // follower stuck for 30 s (docs/testing.md, "Restarted follower").
  // The adapter sits between libraft and its io's receive callback and holds
  // such a message back until the snapshot is done, then hands it to libraft
  // (which installs it, or answers "have more recent snapshot").
  static Impl* FromIo(struct raft_io* io) {
    Impl* self = static_cast<Impl*>(static_cast<struct raft*>(io->data)->data);
    LATCHKEY_CHECK(&self->io == io);
    return self;
  }

  static int IoStart(struct raft_io* io, unsigned msecs, raft_io_tick_cb tick,
                     raft_io_recv_cb recv) {
    Impl* self = FromIo(io);
    self->raft_recv = recv;
    return self->io_start(io, msecs, tick, &Impl::IoRecv);
  }

  bool SnapshotBusy() const {
    return raft.snapshot.pending.term != 0 || raft.snapshot.put.data != nullptr;
  }

  static void IoRecv(struct raft_io* io, struct raft_message* msg) {
    Impl* self = FromIo(io);
    if (msg->type == RAFT_IO_INSTALL_SNAPSHOT && self->SnapshotBusy()) {
      self->DeferSnapshot(msg);
      return;
    }
    self->reply_guard.BeginRecv(*msg);
    self->raft_recv(io, msg);
    self->reply_guard.EndRecv();
  }

  static int IoSend(struct raft_io* io, struct raft_io_send* req, const struct raft_message* msg,
                    raft_io_send_cb cb) {
    Impl* self = FromIo(io);
    struct raft_message fixed;
    if (self->reply_guard.Fix(*msg, &fixed)) {
      LK_LOG_DEBUG(
          "raft node %llu: AppendEntries result to node %llu: last_log_index %llu -> %llu "
          "(log suffix beyond the request not verified by the leader)",
          static_cast<unsigned long long>(self->options.node_id),
          static_cast<unsigned long long>(msg->server_id),
          static_cast<unsigned long long>(msg->append_entries_result.last_log_index),
          static_cast<unsigned long long>(fixed.append_entries_result.last_log_index));
      return self->io_send(io, req, &fixed, cb);
    }
    return self->io_send(io, req, msg, cb);
  }

  static void FreeInstallSnapshot(struct raft_message* msg) {
    raft_configuration_close(&msg->install_snapshot.conf);
    raft_free(msg->install_snapshot.data.base);
    msg->install_snapshot.data.base = nullptr;
  }

  void DeferSnapshot(struct raft_message* msg) {
    const struct raft_install_snapshot& in = msg->install_snapshot;
    LK_LOG_INFO(
        "raft node %llu: InstallSnapshot (index %llu, term %llu, %zu bytes) from node %llu "
        "arrived while a snapshot is being %s; held until it is done",
        static_cast<unsigned long long>(options.node_id),
        static_cast<unsigned long long>(in.last_index),
        static_cast<unsigned long long>(in.last_term), in.data.len,
        static_cast<unsigned long long>(msg->server_id),
        raft.snapshot.pending.term != 0 ? "taken" : "installed");
    if (deferred_snapshot != nullptr) {
      // Keep only the newest: libraft would answer an older one with "have
      // more recent snapshot" anyway.
      const struct raft_install_snapshot& old = deferred_snapshot->msg.install_snapshot;
      const bool newer =
          in.term > old.term || (in.term == old.term && in.last_index >= old.last_index);
      if (!newer) {
        FreeInstallSnapshot(msg);
        return;
      }
      DropDeferredSnapshot();
    }
    auto d = std::make_unique<DeferredSnapshot>();
    d->msg = *msg;  // takes over conf and data
    d->address = msg->server_address != nullptr ? msg->server_address : "";
    d->msg.server_address = d->address.c_str();
    deferred_snapshot = std::move(d);
  }

  // Polled from OnCheck, i.e. after every loop iteration (the snapshot put
  // completes in a loop callback, so this runs right after it).
  void MaybeDeliverDeferredSnapshot() {
    if (deferred_snapshot == nullptr || !raft_running || closing || SnapshotBusy()) return;
    std::unique_ptr<DeferredSnapshot> d = std::move(deferred_snapshot);
    LK_LOG_INFO("raft node %llu: delivering the held InstallSnapshot (index %llu)",
                static_cast<unsigned long long>(options.node_id),
                static_cast<unsigned long long>(d->msg.install_snapshot.last_index));
    d->msg.server_address = d->address.c_str();
    raft_recv(&io, &d->msg);  // libraft owns (or frees) conf and data from here
  }

  void DropDeferredSnapshot() {
    if (deferred_snapshot == nullptr) return;
    FreeInstallSnapshot(&deferred_snapshot->msg);
    deferred_snapshot.reset();
  }

  // ---------------------------------------------------------------------
  // Shutdown (loop thread).
  void BeginClose() {
    if (closing) return;
    closing = true;  // from now on Propose() refuses and posted closures are dropped
    LK_LOG_INFO("raft node %llu: closing", static_cast<unsigned long long>(options.node_id));
    start_pending = false;
    SetStartResult(Unavailable("raft node stopped while starting"));
    close_deadline = std::chrono::steady_clock::now() + kCloseDrainDeadline;
    MaybeFinishClose();
  }

  // libraft 0.15 crashes in raft_close when two or more leader appends are
  // still queued for disk: each cancelled append truncates the log from its
  // first index, and the next one then releases entries that are gone
  // (refsDecr on NULL; fixed upstream after 0.15 by canonical/raft#352). So
  // raft_close waits until every appended entry is stored (last_stored ==
  // last_index), which takes one disk write, or until a deadline. Entries
  // that commit meanwhile complete normally. Polled from OnCheck.
  void MaybeFinishClose() {
    if (!closing || !raft_running) return;
    const bool drained = raft.last_stored >= raft_last_index(&raft);
    if (!drained && std::chrono::steady_clock::now() < close_deadline) return;
    if (!drained) {
      LK_LOG_WARN("raft node %llu: closing with entries %llu..%llu not yet stored",
                  static_cast<unsigned long long>(options.node_id), raft.last_stored + 1,
                  raft_last_index(&raft));
    }
    raft_running = false;
    // Fails the remaining apply requests synchronously (RAFT_LEADERSHIPLOST),
    // and the leadership poll below reports the loss.
    raft_close(&raft, &Impl::OnRaftClosed);
    PollLeadership();
  }

  static void OnRaftClosed(struct raft* r) {
    Impl* self = static_cast<Impl*>(r->data);
    raft_uv_close(&self->io);
    raft_uv_tcp_close(&self->transport);
    self->io_inited = self->transport_inited = false;
    self->raft_inited = false;
    self->DropDeferredSnapshot();
    self->FailAllPending();
    if (self->handles_inited) {
      self->handles_inited = false;
      {
        std::lock_guard<std::mutex> lock(self->mu);
        self->async_ready = false;
      }
      uv_close(reinterpret_cast<uv_handle_t*>(&self->async), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&self->check), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&self->tick_timer), nullptr);
    }
  }

  void FailAllPending() {
    while (!pending.empty()) {
      auto it = pending.begin();
      Finish(it->second, RAFT_SHUTDOWN);
    }
  }
};

// -------------------------------------------------------------------------
// RaftNode

RaftNode::RaftNode(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RaftNode::~RaftNode() {
  Stop();
}

Result<std::unique_ptr<RaftNode>> RaftNode::Create(RaftNodeOptions options,
                                                   StateMachineHooks* hooks) {
  if (hooks == nullptr) return InvalidArgument("raft node: hooks must not be null");
  if (options.node_id == 0) return InvalidArgument("raft node: node_id must be > 0");
  if (options.raft_address.empty()) return InvalidArgument("raft node: raft_address is empty");
  if (options.data_dir.empty()) return InvalidArgument("raft node: data_dir is empty");
  if (options.heartbeat_timeout_ms == 0 ||
      options.heartbeat_timeout_ms >= options.election_timeout_ms) {
    return InvalidArgument("raft node: heartbeat_timeout_ms (" +
                           std::to_string(options.heartbeat_timeout_ms) +
                           ") must be > 0 and below election_timeout_ms (" +
                           std::to_string(options.election_timeout_ms) + ")");
  }
  for (const RaftPeer& peer : options.initial_voters) {
    if (peer.id == 0 || peer.address.empty()) {
      return InvalidArgument("raft node: initial voter with empty id or address");
    }
  }
  if (!options.initial_voters.empty()) {
    bool self_listed = false;
    for (const RaftPeer& peer : options.initial_voters) self_listed |= peer.id == options.node_id;
    if (!self_listed) {
      LK_LOG_WARN("raft node %llu is not among its initial voters",
                  static_cast<unsigned long long>(options.node_id));
    }
  }
  return std::unique_ptr<RaftNode>(new RaftNode(std::make_unique<Impl>(std::move(options), hooks)));
}

Status RaftNode::Start() {
  Impl& d = *impl_;
  {
    std::lock_guard<std::mutex> stop_lock(d.stop_mu);
    if (d.stopped) return Status(Code::kFailedPrecondition, "raft node: Start() after Stop()");
    std::lock_guard<std::mutex> lock(d.mu);
    if (d.started) return Status(Code::kFailedPrecondition, "raft node: Start() called twice");
    d.started = true;
    d.thread = std::thread([&d] { d.Run(); });
  }
  Status result;
  {
    std::unique_lock<std::mutex> lock(d.mu);
    d.cv.wait(lock, [&d] { return d.start_result.has_value(); });
    result = *d.start_result;
  }
  if (!result.ok()) Stop();  // joins the loop thread (which may still run)
  return result;
}

void RaftNode::Stop() {
  Impl& d = *impl_;
  LATCHKEY_CHECK(!d.OnLoopThread());  // would deadlock joining itself
  std::lock_guard<std::mutex> stop_lock(d.stop_mu);
  if (d.stopped) return;
  d.stopped = true;
  std::deque<std::function<void()>> dropped;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    d.accepting_posts = false;
    if (d.async_ready) {
      // Queued behind earlier Posts so they still run, in order.
      d.queue.push_back([&d] { d.BeginClose(); });
      uv_async_send(&d.async);
    }
  }
  if (d.thread.joinable()) d.thread.join();
  {
    std::lock_guard<std::mutex> lock(d.mu);
    dropped.swap(d.queue);
  }
  // `dropped` is destroyed here, outside the lock: a closure's destructor may
  // call Post(), which must not deadlock.
}

void RaftNode::Post(std::function<void()> fn) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  if (!d.accepting_posts) return;  // fn is destroyed by the caller's frame
  d.queue.push_back(std::move(fn));
  if (d.async_ready) uv_async_send(&d.async);
}

void RaftNode::Propose(std::string data, ProposeCallback cb) {
  impl_->Propose(std::move(data), std::move(cb));
}

RaftInfo RaftNode::Info() const {
  Impl& d = *impl_;
  LATCHKEY_CHECK(d.OnLoopThread());
  RaftInfo info;
  if (!d.raft_running) return info;
  info.role = RoleFromState(raft_state(&d.raft));
  raft_id leader_id = 0;
  const char* leader_address = nullptr;
  raft_leader(&d.raft, &leader_id, &leader_address);
  info.leader_id = leader_id;
  if (leader_address != nullptr) info.leader_address = leader_address;
  info.term = d.raft.current_term;
  info.commit_index = d.raft.commit_index;
  info.last_applied = raft_last_applied(&d.raft);
  info.voters = d.VoterCount();
  return info;
}

void RaftNode::Barrier(DoneCallback cb) {
  impl_->Barrier(std::move(cb));
}

void RaftNode::AddMember(uint64_t id, const std::string& address, DoneCallback cb) {
  Impl& d = *impl_;
  if (id == 0 || address.empty()) {
    cb(InvalidArgument("member id must be > 0 and its raft address non-empty"));
    return;
  }
  d.Change("add node " + std::to_string(id) + " at " + address, std::move(cb),
           [&d, id, &address](struct raft_change* req) {
             return raft_add(&d.raft, req, id, address.c_str(), &Impl::OnChanged);
           });
}

void RaftNode::Assign(uint64_t id, RaftMember::Role role, DoneCallback cb) {
  Impl& d = *impl_;
  const int raft_role = role == RaftMember::Role::kVoter     ? RAFT_VOTER
                        : role == RaftMember::Role::kStandby ? RAFT_STANDBY
                                                             : RAFT_SPARE;
  d.Change("assign node " + std::to_string(id) + " the role " + std::string(MemberRoleName(role)),
           std::move(cb), [&d, id, raft_role](struct raft_change* req) {
             return raft_assign(&d.raft, req, id, raft_role, &Impl::OnChanged);
           });
}

void RaftNode::RemoveMember(uint64_t id, DoneCallback cb) {
  Impl& d = *impl_;
  d.Change("remove node " + std::to_string(id), std::move(cb), [&d, id](struct raft_change* req) {
    return raft_remove(&d.raft, req, id, &Impl::OnChanged);
  });
}

void RaftNode::TransferLeadership(uint64_t id, DoneCallback cb) {
  impl_->TransferLeadership(id, std::move(cb));
}

std::vector<RaftMember> RaftNode::Members() const {
  Impl& d = *impl_;
  LATCHKEY_CHECK(d.OnLoopThread());
  std::vector<RaftMember> out;
  if (!d.raft_running) return out;
  for (unsigned i = 0; i < d.raft.configuration.n; ++i) {
    const struct raft_server& s = d.raft.configuration.servers[i];
    RaftMember m;
    m.id = s.id;
    m.address = s.address != nullptr ? s.address : "";
    m.role = s.role == RAFT_VOTER     ? RaftMember::Role::kVoter
             : s.role == RAFT_STANDBY ? RaftMember::Role::kStandby
                                      : RaftMember::Role::kSpare;
    out.push_back(std::move(m));
  }
  return out;
}

bool RaftNode::IsLeader() const {
  Impl& d = *impl_;
  LATCHKEY_CHECK(d.OnLoopThread());
  return d.raft_running && raft_state(&d.raft) == RAFT_LEADER;
}

void RaftNode::SetLeadershipHandler(std::function<void(bool is_leader)> fn) {
  impl_->leadership_handler = std::move(fn);
}

void RaftNode::SetTickHandler(uint32_t period_ms, std::function<void()> fn) {
  Impl& d = *impl_;
  d.tick_period_ms = period_ms;
  d.tick_handler = std::move(fn);
  if (d.OnLoopThread() && d.handles_inited) {
    uv_timer_stop(&d.tick_timer);
    if (d.tick_handler && period_ms > 0) {
      uv_timer_start(&d.tick_timer, &Impl::OnTick, period_ms, period_ms);
    }
  }
}

}  // namespace latchkey::replication
