// RaftNode: libraft 0.15 (libuv backend, TCP transport) behind the contract in
// raft_node.h. Together with raft_node_*.cc and raft_sim.cc, the only code that
// includes raft.h (raft_node_impl.h declares the shared Impl).
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

#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <utility>

#include "common/log.h"
#include "replication/raft_node_impl.h"

namespace latchkey::replication {

using raft_detail::RaftError;
using raft_detail::RoleFromState;

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

// How long Start() waits for a single voter to become leader and replay its
// log before giving up. Replay of a long log is bounded by disk speed; this is
// a backstop against a wedged loop, not a tuning knob.
constexpr auto kStartReplayDeadline = std::chrono::seconds(120);

// How long Stop() waits for appended entries to reach the disk before calling
// raft_close anyway (see Impl::MaybeFinishClose).
constexpr auto kCloseDrainDeadline = std::chrono::seconds(10);

}  // namespace

void RaftNode::Impl::SetStartResult(Status st) {
  std::lock_guard<std::mutex> lock(mu);
  if (start_result.has_value()) return;
  if (!st.ok()) accepting_posts = false;
  start_result = std::move(st);
  cv.notify_all();
}

void RaftNode::Impl::Run() {
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

void RaftNode::Impl::CloseLoop() {
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) == UV_EBUSY) {
    // Only reachable if libraft left a handle open after its close callback.
    uv_walk(
        &loop,
        [](uv_handle_t* h, void*) {
          if (uv_is_closing(h)) return;
          LK_LOG_WARN("raft node: closing leftover libuv %s handle", uv_handle_type_name(h->type));
          uv_close(h, nullptr);
        },
        nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    LATCHKEY_CHECK(uv_loop_close(&loop) == 0);
  }
  loop_inited = false;
}

Status RaftNode::Impl::InitAndStart() {
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
  if (wake_fd < 0) wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) return Internal(std::string("eventfd: ") + std::strerror(errno));

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

  fsm.version = 2;  // snapshot_finalize: the snapshot string is handed over, not copied
  fsm.data = this;
  fsm.apply = &Impl::FsmApply;
  fsm.snapshot = &Impl::FsmSnapshot;
  fsm.snapshot_finalize = &Impl::FsmSnapshotFinalize;
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
  io_load = io.load;
  io.load = &Impl::IoLoad;
  io_append = io.append;
  io.append = &Impl::IoAppend;

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
  if (MarkLoadedConfigurationUncommitted(&raft, config_rollback)) {
    LK_LOG_INFO(
        "raft node %llu: the loaded configuration at index %llu is above the commit index "
        "%llu; treated as uncommitted until it commits (the committed one is at index "
        "%llu)",
        static_cast<unsigned long long>(options.node_id),
        static_cast<unsigned long long>(raft.configuration_uncommitted_index),
        static_cast<unsigned long long>(raft.commit_index),
        static_cast<unsigned long long>(raft.configuration_index));
  }

  rv = uv_poll_init(&loop, &wake_poll, wake_fd);
  LATCHKEY_CHECK(rv == 0);
  wake_poll.data = this;
  rv = uv_poll_start(&wake_poll, UV_READABLE, &Impl::OnWake);
  LATCHKEY_CHECK(rv == 0);
  uv_check_init(&loop, &check);
  check.data = this;
  uv_check_start(&check, &Impl::OnCheck);
  uv_idle_init(&loop, &idle);
  idle.data = this;
  uv_timer_init(&loop, &tick_timer);
  tick_timer.data = this;
  if (tick_handler && tick_period_ms > 0) {
    uv_timer_start(&tick_timer, &Impl::OnTick, tick_period_ms, tick_period_ms);
  }
  uv_timer_init(&loop, &compaction_timer);
  compaction_timer.data = this;
  if (options.idle_compaction_ms > 0) {
    const uint64_t period = std::max<uint64_t>(10, options.idle_compaction_ms / 10);
    uv_timer_start(&compaction_timer, &Impl::OnCompactionTimer, period, period);
  }
  handles_inited = true;

  LK_LOG_INFO(
      "raft node %llu started on %s: state=%s term=%llu commit=%llu applied=%llu last_index=%llu "
      "snapshot=%llu voters=%u",
      static_cast<unsigned long long>(options.node_id), options.raft_address.c_str(),
      std::string(RoleName(RoleFromState(raft_state(&raft)))).c_str(), raft.current_term,
      raft.commit_index, raft_last_applied(&raft), raft_last_index(&raft),
      raft.log.snapshot.last_index, VoterCount());

  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    wake_ready = true;
    wake = NeedWakeLocked();  // Posts made before Start()
  }
  if (wake) WriteWake();

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

Status RaftNode::Impl::Bootstrap() {
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

void RaftNode::Impl::TearDownAfterFailedStart() {
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

uint32_t RaftNode::Impl::VoterCount() const {
  uint32_t n = 0;
  for (unsigned i = 0; i < raft.configuration.n; ++i) {
    if (raft.configuration.servers[i].role == RAFT_VOTER) ++n;
  }
  return n;
}

void RaftNode::Impl::MaybeFinishStart() {
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

void RaftNode::Impl::OnWake(uv_poll_t* handle, int, int) {
  Impl* self = static_cast<Impl*>(handle->data);
  uint64_t count = 0;
  ssize_t n = ::read(self->wake_fd, &count, sizeof count);  // EAGAIN: a stale wake-up
  (void)n;
  self->DrainQueue();
}

void RaftNode::Impl::WriteWake() const {
  const uint64_t one = 1;
  ssize_t n = ::write(wake_fd, &one, sizeof one);  // cannot block: drained each time
  (void)n;
}

void RaftNode::Impl::DrainQueue() {
  std::deque<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(mu);
    wake_pending = false;  // a Post from now on writes wake_fd again
    batch.swap(queue);
  }
  while (!batch.empty()) {
    std::function<void()> fn = std::move(batch.front());
    batch.pop_front();
    if (closing) continue;  // dropped after the close request ran
    fn();
  }
  RunDeferred();
}

void RaftNode::Impl::RunDeferred() {
  while (!deferred.empty() && !closing) {
    std::vector<std::function<void()>> now;
    now.swap(deferred);
    for (std::function<void()>& fn : now) {
      if (!closing) fn();
    }
  }
  deferred.clear();  // what remains after a close request is dropped
  if (handles_inited) uv_idle_stop(&idle);
}

void RaftNode::Impl::OnCheck(uv_check_t* handle) {
  Impl* self = static_cast<Impl*>(handle->data);
  self->RunDeferred();
  self->MaybeFinishStart();
  self->MaybeDeliverDeferredSnapshot();
  self->MaybeFinishClose();
  self->PollLeadership();
}

void RaftNode::Impl::PollLeadership() {
  bool is_leader = raft_running && raft_state(&raft) == RAFT_LEADER;
  if (is_leader == last_is_leader) return;
  last_is_leader = is_leader;
  LK_LOG_INFO("raft node %llu: %s leadership (term %llu)",
              static_cast<unsigned long long>(options.node_id), is_leader ? "gained" : "lost",
              raft.current_term);
  if (leadership_handler) leadership_handler(is_leader);
}

void RaftNode::Impl::OnTick(uv_timer_t* handle) {
  Impl* self = static_cast<Impl*>(handle->data);
  if (!self->closing && self->tick_handler) self->tick_handler();
}

void RaftNode::Impl::OnCompactionTimer(uv_timer_t* handle) {
  Impl* self = static_cast<Impl*>(handle->data);
  if (!self->closing) self->MaybeCompactWhenIdle();
}

void RaftNode::Impl::MaybeCompactWhenIdle() {
  if (options.idle_compaction_ms == 0 || !raft_running) return;
  const auto now = std::chrono::steady_clock::now();
  const uint64_t applied = raft_last_applied(&raft);
  if (applied != idle_seen_applied) {
    idle_seen_applied = applied;
    idle_since = now;
    return;
  }
  const auto idle_for = std::chrono::milliseconds(options.idle_compaction_ms);
  if (compaction_armed) {
    // Nothing triggered it (this follower's leader was not idle, or the
    // barrier failed): put the thresholds back.
    if (!snapshot_running && now - compaction_armed_at >= 2 * idle_for) DisarmCompaction();
    return;
  }
  if (snapshot_running || now - idle_since < idle_for) return;
  if (applied < last_snapshot_applied + options.idle_compaction_min_entries) return;
  // Any entry applied from now on takes a snapshot keeping few entries.
  compaction_armed = true;
  compaction_armed_at = now;
  raft_set_snapshot_threshold(&raft, 1);
  // A lone member has nobody to send trailing entries to: keeping none
  // empties libraft's in-memory log, which then frees its entry array too.
  raft_set_snapshot_trailing(&raft,
                             raft.configuration.n == 1 ? 0 : options.idle_compaction_trailing);
  LK_LOG_DEBUG("raft node %llu: idle with %llu entries since the last snapshot; compacting",
               static_cast<unsigned long long>(options.node_id),
               static_cast<unsigned long long>(applied - last_snapshot_applied));
  if (raft_state(&raft) == RAFT_LEADER) {
    Barrier([](Status) {});  // its apply triggers the snapshot on every armed node
  }
}

void RaftNode::Impl::DisarmCompaction() {
  if (!compaction_armed) return;
  compaction_armed = false;
  raft_set_snapshot_threshold(&raft, options.snapshot_threshold);
  raft_set_snapshot_trailing(&raft, options.snapshot_trailing);
}

void RaftNode::Impl::BeginClose() {
  if (closing) return;
  closing = true;  // from now on Propose() refuses and posted closures are dropped
  after_write.clear();
  LK_LOG_INFO("raft node %llu: closing", static_cast<unsigned long long>(options.node_id));
  start_pending = false;
  SetStartResult(Unavailable("raft node stopped while starting"));
  close_deadline = std::chrono::steady_clock::now() + kCloseDrainDeadline;
  MaybeFinishClose();
}

void RaftNode::Impl::MaybeFinishClose() {
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

void RaftNode::Impl::OnRaftClosed(struct raft* r) {
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
      self->wake_ready = false;
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&self->wake_poll), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&self->check), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&self->idle), nullptr);
    self->deferred.clear();
    uv_close(reinterpret_cast<uv_handle_t*>(&self->tick_timer), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&self->compaction_timer), nullptr);
    self->CloseReactorHandles();
  }
}

void RaftNode::Impl::FailAllPending() {
  while (!pending.empty()) {
    auto it = pending.begin();
    Finish(it->second, RAFT_SHUTDOWN);
  }
}

// -------------------------------------------------------------------------
// RaftNode

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
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    d.accepting_posts = false;
    if (d.wake_ready) {
      // Queued behind earlier Posts so they still run, in order.
      d.queue.push_back([&d] { d.BeginClose(); });
      wake = d.NeedWakeLocked();
    }
  }
  if (wake) d.WriteWake();
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
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    if (!d.accepting_posts) return;  // fn is destroyed by the caller's frame
    d.queue.push_back(std::move(fn));
    wake = d.NeedWakeLocked();
  }
  // Outside mu: the loop thread this wakes may preempt us here, and must
  // not then wait for mu (or, as with uv_async_t, spin) until we run again.
  if (wake) d.WriteWake();
}

void RaftNode::Defer(std::function<void()> fn) {
  LATCHKEY_CHECK(impl_->OnLoopThread());
  impl_->AddDeferred(std::move(fn));
}

void RaftNode::Impl::AddDeferred(std::function<void()> fn) {
  if (closing) return;  // fn is destroyed by the caller's frame
  deferred.push_back(std::move(fn));
  // Before the handles exist (replay in raft_start), the first loop
  // iteration's check runs it.
  if (handles_inited) uv_idle_start(&idle, &Impl::OnIdle);  // no-op when active
}

bool RaftNode::DeferUntilWriteDone(std::function<void()> fn) {
  Impl& d = *impl_;
  LATCHKEY_CHECK(d.OnLoopThread());
  if (d.closing || d.appends_in_flight == 0 || d.VoterCount() != 1) return false;
  d.after_write.push_back(std::move(fn));
  return true;
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
  const struct raft_log& log = d.raft.log;
  info.log_entries_in_memory = log.size == 0 ? 0 : (log.back + log.size - log.front) % log.size;
  info.idle_pages_released = d.idle_pages_released;
  info.log_appends = d.log_appends;
  return info;
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
