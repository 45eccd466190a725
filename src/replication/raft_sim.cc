// SimCluster on raft/fixture.h. Part of the replication adapter (one of the
// few files allowed to include raft.h). The FSM glue mirrors raft_node.cc:
// the envelope, the applied index (raft_last_applied + 1 inside apply) and the
// parking of apply outputs in our own pending request.
#include "replication/raft_sim.h"

#include <cstring>
#include <deque>
#include <iterator>
#include <map>
#include <set>
#include <utility>

#include "common/log.h"
#include "replication/entry_envelope.h"
#include "replication/raft_buffers.h"
#include "replication/raft_config_rollback.h"
#include "replication/raft_reply_guard.h"
#include "replication/raft_snapshot_overlap.h"

extern "C" {
#include <raft.h>
#include <raft/fixture.h>
}

namespace latchkey::replication {

namespace {

RaftInfo::Role RoleFromState(int state) {
  switch (state) {
    case RAFT_LEADER: return RaftInfo::Role::kLeader;
    case RAFT_FOLLOWER: return RaftInfo::Role::kFollower;
    case RAFT_CANDIDATE: return RaftInfo::Role::kCandidate;
    default: return RaftInfo::Role::kUnavailable;
  }
}

}  // namespace

namespace {

struct Request {
  struct raft_apply req {};
  struct raft_buffer buf {};
  SimCluster::Impl* impl = nullptr;
  unsigned server = 0;
  uint64_t index = 0;
  ProposeCallback cb;
  std::unique_ptr<ApplyOutput> output;
};

// The fixture's in-memory raft_io truncates its stored log at once, even
// while appends are still "on disk" (uv queues a truncate behind them): it
// then copies index - 1 entries out of an array that holds fewer (a heap
// over-read found by valgrind on seed 13, crashing raft_fixture_close later)
// and the late append re-adds entries the truncate removed (a follower
// stuck behind its leader forever). IoShim restores the uv ordering: a
// truncate waits for every append issued before it.
struct IoShim {
  struct raft_io* io = nullptr;
  int (*append)(struct raft_io*, struct raft_io_append*, const struct raft_entry[], unsigned,
                raft_io_append_cb) = nullptr;
  int (*truncate)(struct raft_io*, raft_index) = nullptr;
  // Receive/send, for AppendReplyGuard (raft_reply_guard.h), as in raft_node.cc.
  int (*start)(struct raft_io*, unsigned, raft_io_tick_cb, raft_io_recv_cb) = nullptr;
  int (*send)(struct raft_io*, struct raft_io_send*, const struct raft_message*,
              raft_io_send_cb) = nullptr;
  raft_io_recv_cb recv = nullptr;
  AppendReplyGuard reply_guard;
  // Rollbacks libraft 0.15 cannot do itself (raft_config_rollback.h), as in
  // raft_node_io.cc.
  ConfigRollbackGuard config_rollback;
  uint64_t next_seq = 1;
  std::set<uint64_t> in_flight;                          // append sequence numbers
  std::deque<std::pair<uint64_t, raft_index>> deferred;  // (appends before it, index)
  // Disk latency: lowering it with appends in flight would let a later write
  // finish first, so a lower value waits until the queue is empty.
  struct raft_fixture* fixture = nullptr;
  unsigned server = 0;
  uint32_t latency_ms = 10;
  uint32_t wanted_latency_ms = 10;

  void ApplyLatency() {
    if (wanted_latency_ms == latency_ms) return;
    if (wanted_latency_ms < latency_ms && !in_flight.empty()) return;
    latency_ms = wanted_latency_ms;
    raft_fixture_set_disk_latency(fixture, server, latency_ms);
  }

  void RunDeferred() {
    while (!deferred.empty()) {
      const uint64_t before = deferred.front().first;
      if (!in_flight.empty() && *in_flight.begin() < before) return;
      const raft_index index = deferred.front().second;
      deferred.pop_front();
      truncate(io, index);
    }
  }
};

struct PendingAppend {
  IoShim* shim = nullptr;
  uint64_t seq = 0;
  raft_io_append_cb cb = nullptr;
};

// Shims by io and by append request (C callbacks carry no closure).
std::map<struct raft_io*, IoShim*>& Shims() {
  static std::map<struct raft_io*, IoShim*> m;
  return m;
}
std::map<struct raft_io_append*, PendingAppend>& Appends() {
  static std::map<struct raft_io_append*, PendingAppend> m;
  return m;
}

void ShimAppendDone(struct raft_io_append* req, int status) {
  auto it = Appends().find(req);
  LATCHKEY_CHECK(it != Appends().end());
  PendingAppend p = it->second;
  Appends().erase(it);
  p.shim->in_flight.erase(p.seq);
  p.cb(req, status);
  p.shim->RunDeferred();
  p.shim->ApplyLatency();
}

int ShimAppend(struct raft_io* io, struct raft_io_append* req, const struct raft_entry entries[],
               unsigned n, raft_io_append_cb cb) {
  IoShim* shim = Shims().at(io);
  const uint64_t seq = shim->next_seq++;
  Appends()[req] = PendingAppend{shim, seq, cb};
  shim->in_flight.insert(seq);
  int rv = shim->append(io, req, entries, n, &ShimAppendDone);
  if (rv != 0) {
    Appends().erase(req);
    shim->in_flight.erase(seq);
  }
  return rv;
}

int ShimTruncate(struct raft_io* io, raft_index index) {
  IoShim* shim = Shims().at(io);
  if (shim->in_flight.empty() && shim->deferred.empty()) return shim->truncate(io, index);
  shim->deferred.emplace_back(shim->next_seq, index);
  return 0;
}

void ShimRecv(struct raft_io* io, struct raft_message* msg) {
  IoShim* shim = Shims().at(io);
  if (msg->type == RAFT_IO_APPEND_ENTRIES) {
    auto* r = static_cast<struct raft*>(io->data);
    SkipEntriesInSnapshot(*r, &msg->append_entries);  // as the node does
    shim->config_rollback.BeforeAppendEntries(r, msg->append_entries);
  }
  shim->reply_guard.BeginRecv(*msg);
  shim->recv(io, msg);
  shim->reply_guard.EndRecv();
}

int ShimStart(struct raft_io* io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv) {
  IoShim* shim = Shims().at(io);
  shim->recv = recv;
  return shim->start(io, msecs, tick, &ShimRecv);
}

int ShimSend(struct raft_io* io, struct raft_io_send* req, const struct raft_message* msg,
             raft_io_send_cb cb) {
  IoShim* shim = Shims().at(io);
  struct raft_message fixed;
  if (shim->reply_guard.Fix(*msg, &fixed)) return shim->send(io, req, &fixed, cb);
  return shim->send(io, req, msg, cb);
}

struct FsmContext {
  SimCluster::Impl* impl = nullptr;
  unsigned server = 0;
};

}  // namespace

struct SimCluster::Impl {
  SimClusterOptions options;
  std::vector<StateMachineHooks*> hooks;
  struct raft_fixture fixture {};
  bool fixture_ready = false;
  bool closing = false;
  std::vector<struct raft_fsm> fsms;
  std::vector<FsmContext> contexts;
  // Per server: log index -> our pending request for it.
  std::vector<std::map<uint64_t, Request*>> pending;
  std::vector<std::unique_ptr<IoShim>> shims;

  struct raft* Raft(unsigned i) {
    return raft_fixture_get(&fixture, i);
  }

  static int FsmApply(struct raft_fsm* fsm, const struct raft_buffer* buf, void** result) {
    auto* ctx = static_cast<FsmContext*>(fsm->data);
    Impl* self = ctx->impl;
    struct raft* r = self->Raft(ctx->server);
    const uint64_t index = raft_last_applied(r) + 1;
    std::optional<std::string_view> payload = envelope::Decode(buf->base, buf->len);
    LATCHKEY_CHECK(payload.has_value());
    std::unique_ptr<ApplyOutput> out = self->hooks[ctx->server]->Apply(index, *payload);
    *result = nullptr;
    auto& pend = self->pending[ctx->server];
    auto it = pend.find(index);
    if (it != pend.end() && out != nullptr) {
      it->second->output = std::move(out);
      *result = it->second->output.get();
    }
    return 0;
  }

  static int FsmSnapshot(struct raft_fsm* fsm, struct raft_buffer* bufs[], unsigned* n_bufs) {
    auto* ctx = static_cast<FsmContext*>(fsm->data);
    if (SnapshotWouldStoreUncommittedConfiguration(*ctx->impl->Raft(ctx->server))) {
      return RAFT_BUSY;  // as the node does (raft_config_rollback.h)
    }
    Result<std::string> snap = ctx->impl->hooks[ctx->server]->TakeSnapshot();
    if (!snap.ok()) return RAFT_IOERR;
    const std::string& data = *snap;
    if (int rv = SnapshotToRaftBuffers(data, bufs, n_bufs); rv != 0) return rv;
    return 0;
  }

  static int FsmRestore(struct raft_fsm* fsm, struct raft_buffer* buf) {
    auto* ctx = static_cast<FsmContext*>(fsm->data);
    Status st = ctx->impl->hooks[ctx->server]->Restore(
        std::string_view(static_cast<const char*>(buf->base), buf->len));
    if (!st.ok()) {
      LK_LOG_ERROR("sim server %u: Restore failed: %s", ctx->server, st.ToString().c_str());
      return RAFT_CORRUPT;
    }
    raft_free(buf->base);
    buf->base = nullptr;
    return 0;
  }

  static void ApplyDone(struct raft_apply* areq, int status, void* /*result*/) {
    auto* req = static_cast<Request*>(areq->data);
    Impl* self = req->impl;
    self->pending[req->server].erase(req->index);
    std::unique_ptr<Request> owned(req);
    Status st;
    if (status == 0) {
      st = Status();
    } else if (self->closing || status == RAFT_SHUTDOWN) {
      st = Unavailable("simulated cluster closed; the entry may or may not be applied");
    } else if (status == RAFT_NOTLEADER) {
      st = Status(Code::kNotLeader, "not the leader");
    } else {
      st = Status(Code::kMaybeApplied, std::string("leadership lost: ") + raft_strerror(status));
    }
    const uint64_t index = status == 0 ? owned->index : 0;
    ProposeCallback cb = std::move(owned->cb);
    std::unique_ptr<ApplyOutput> out = std::move(owned->output);
    owned.reset();
    cb(std::move(st), index, std::move(out));
  }
};

SimCluster::SimCluster(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<SimCluster>> SimCluster::Create(const SimClusterOptions& options,
                                                       std::vector<StateMachineHooks*> hooks) {
  if (options.voters == 0 || options.voters > RAFT_FIXTURE_MAX_SERVERS ||
      hooks.size() != options.voters) {
    return InvalidArgument("sim cluster needs 1..8 voters and one hooks object per voter");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->hooks = std::move(hooks);
  impl->fsms.resize(options.voters);
  impl->contexts.resize(options.voters);
  impl->pending.resize(options.voters);
  Impl* p = impl.get();
  int rv = raft_fixture_initialize(&p->fixture);
  if (rv != 0) return Internal("raft_fixture_initialize failed");
  p->fixture_ready = true;
  for (unsigned i = 0; i < options.voters; ++i) {
    p->contexts[i] = FsmContext{p, i};
    struct raft_fsm& fsm = p->fsms[i];
    std::memset(&fsm, 0, sizeof(fsm));
    fsm.version = 1;
    fsm.data = &p->contexts[i];
    fsm.apply = &Impl::FsmApply;
    fsm.snapshot = &Impl::FsmSnapshot;
    fsm.restore = &Impl::FsmRestore;
    rv = raft_fixture_grow(&p->fixture, &fsm);
    if (rv != 0) return Internal("raft_fixture_grow failed");
    auto shim = std::make_unique<IoShim>();
    shim->io = &p->fixture.servers[i].io;
    shim->fixture = &p->fixture;
    shim->server = i;
    shim->append = shim->io->append;
    shim->truncate = shim->io->truncate;
    shim->io->append = &ShimAppend;
    shim->io->truncate = &ShimTruncate;
    if (!options.no_reply_guard) {
      shim->start = shim->io->start;
      shim->send = shim->io->send;
      shim->io->start = &ShimStart;
      shim->io->send = &ShimSend;
    }
    Shims()[shim->io] = shim.get();
    p->shims.push_back(std::move(shim));
    struct raft* r = p->Raft(i);
    raft_set_heartbeat_timeout(r, options.heartbeat_timeout_ms);
    raft_set_election_timeout(r, options.election_timeout_ms);
    raft_set_snapshot_threshold(r, options.snapshot_threshold);
    raft_set_snapshot_trailing(r, options.snapshot_trailing);
    raft_set_pre_vote(r, options.pre_vote);
  }
  struct raft_configuration conf;
  rv = raft_fixture_configuration(&p->fixture, options.voters, &conf);
  if (rv != 0) return Internal("raft_fixture_configuration failed");
  rv = raft_fixture_bootstrap(&p->fixture, &conf);
  raft_configuration_close(&conf);
  if (rv != 0) return Internal("raft_fixture_bootstrap failed");
  rv = raft_fixture_start(&p->fixture);
  if (rv != 0) return Internal("raft_fixture_start failed");
  return std::unique_ptr<SimCluster>(new SimCluster(std::move(impl)));
}

SimCluster::~SimCluster() {
  if (!impl_->fixture_ready) return;
  // libraft 0.15 crashes in raft_close when leader appends are still queued
  // for disk (see raft_node.cc, MaybeFinishClose). Drain them first: revive
  // and reconnect everybody and step until every log is stored (bounded).
  const unsigned n = size();
  for (unsigned i = 0; i < n; ++i) {
    if (!Alive(i)) Revive(i);
    for (unsigned j = 0; j < n; ++j) {
      if (i == j) continue;
      raft_fixture_reconnect(&impl_->fixture, i, j);
      raft_fixture_desaturate(&impl_->fixture, i, j);
    }
  }
  auto drained = [&] {
    for (unsigned i = 0; i < n; ++i) {
      struct raft* r = impl_->Raft(i);
      if (r->last_stored < raft_last_index(r)) return false;
    }
    return true;
  };
  for (int k = 0; k < 100'000 && !drained(); ++k) Step();
  impl_->closing = true;
  raft_fixture_close(&impl_->fixture);
  for (auto& shim : impl_->shims) Shims().erase(shim->io);
  for (auto it = Appends().begin(); it != Appends().end();) {
    bool ours = false;
    for (auto& shim : impl_->shims) ours = ours || it->second.shim == shim.get();
    it = ours ? Appends().erase(it) : std::next(it);
  }
  // Requests libraft never called back (e.g. on a server killed while
  // leading): fail them now, the entry may or may not be applied.
  for (auto& pend : impl_->pending) {
    std::map<uint64_t, Request*> left;
    left.swap(pend);
    for (auto& [index, req] : left) {
      std::unique_ptr<Request> owned(req);
      ProposeCallback cb = std::move(owned->cb);
      owned.reset();
      cb(Unavailable("simulated cluster closed; the entry may or may not be applied"), 0, nullptr);
    }
  }
}

unsigned SimCluster::size() const {
  return impl_->options.voters;
}
uint64_t SimCluster::now_ms() const {
  return raft_fixture_time(&impl_->fixture);
}

void SimCluster::Step() {
  raft_fixture_step(&impl_->fixture);
}

void SimCluster::StepFor(uint64_t ms) {
  const uint64_t end = now_ms() + ms;
  while (now_ms() < end) Step();
}

void SimCluster::Propose(unsigned i, std::string data, ProposeCallback cb) {
  struct raft* r = impl_->Raft(i);
  if (impl_->closing || !Alive(i) || raft_state(r) != RAFT_LEADER) {
    cb(Status(Code::kNotLeader, "sim server " + std::to_string(i) + " is not a live leader"), 0,
       nullptr);
    return;
  }
  auto req = std::make_unique<Request>();
  req->impl = impl_.get();
  req->server = i;
  req->cb = std::move(cb);
  const size_t size = envelope::Size(data.size());
  void* base = raft_malloc(size);
  LATCHKEY_CHECK(base != nullptr);
  envelope::Encode(data, static_cast<uint8_t*>(base));
  req->buf.base = base;
  req->buf.len = size;
  req->req.data = req.get();
  req->index = raft_last_index(r) + 1;
  impl_->pending[i][req->index] = req.get();
  int rv = raft_apply(r, &req->req, &req->buf, 1, &Impl::ApplyDone);
  if (rv != 0) {
    impl_->pending[i].erase(req->index);
    raft_free(base);
    ProposeCallback done = std::move(req->cb);
    req.reset();
    done(Status(Code::kNotLeader, std::string("raft_apply: ") + raft_strerror(rv)), 0, nullptr);
    return;
  }
  req.release();
}

RaftInfo::Role SimCluster::RoleOf(unsigned i) const {
  return RoleFromState(raft_state(impl_->Raft(i)));
}
uint64_t SimCluster::TermOf(unsigned i) const {
  return impl_->Raft(i)->current_term;
}
uint64_t SimCluster::LastApplied(unsigned i) const {
  return raft_last_applied(impl_->Raft(i));
}
uint64_t SimCluster::LastIndex(unsigned i) const {
  return raft_last_index(impl_->Raft(i));
}
uint64_t SimCluster::CommitIndex(unsigned i) const {
  return impl_->Raft(i)->commit_index;
}

int SimCluster::LiveLeader() const {
  int best = -1;
  uint64_t term = 0;
  for (unsigned i = 0; i < size(); ++i) {
    if (!Alive(i) || raft_state(impl_->Raft(i)) != RAFT_LEADER) continue;
    if (best < 0 || TermOf(i) > term) {
      best = static_cast<int>(i);
      term = TermOf(i);
    }
  }
  return best;
}

std::string SimCluster::DebugCounters() const {
  std::string out;
  for (unsigned i = 0; i < size(); ++i) {
    struct raft_fixture* f = &impl_->fixture;
    out += "[" + std::to_string(i) + ": ae " +
           std::to_string(raft_fixture_n_send(f, i, RAFT_IO_APPEND_ENTRIES)) + "/" +
           std::to_string(raft_fixture_n_recv(f, i, RAFT_IO_APPEND_ENTRIES)) + " aer " +
           std::to_string(raft_fixture_n_send(f, i, RAFT_IO_APPEND_ENTRIES_RESULT)) + "/" +
           std::to_string(raft_fixture_n_recv(f, i, RAFT_IO_APPEND_ENTRIES_RESULT)) + " snap " +
           std::to_string(raft_fixture_n_send(f, i, RAFT_IO_INSTALL_SNAPSHOT)) + "/" +
           std::to_string(raft_fixture_n_recv(f, i, RAFT_IO_INSTALL_SNAPSHOT)) + " stored " +
           std::to_string(impl_->Raft(i)->last_stored) + "] ";
  }
  const int l = LiveLeader();
  if (l >= 0) {
    struct raft* r = impl_->Raft(static_cast<unsigned>(l));
    for (unsigned i = 0; i < r->configuration.n; ++i) {
      const struct raft_progress& p = r->leader_state.progress[i];
      out += "{" + std::to_string(i) + " st" + std::to_string(p.state) + " next " +
             std::to_string(p.next_index) + " match " + std::to_string(p.match_index) + "} ";
    }
  }
  return out;
}

void SimCluster::Kill(unsigned i) {
  raft_fixture_kill(&impl_->fixture, i);
}
void SimCluster::Revive(unsigned i) {
  raft_fixture_revive(&impl_->fixture, i);
}
bool SimCluster::Alive(unsigned i) const {
  return raft_fixture_alive(&impl_->fixture, i);
}
void SimCluster::Disconnect(unsigned i, unsigned j) {
  raft_fixture_disconnect(&impl_->fixture, i, j);
  raft_fixture_disconnect(&impl_->fixture, j, i);
}
void SimCluster::Reconnect(unsigned i, unsigned j) {
  raft_fixture_reconnect(&impl_->fixture, i, j);
  raft_fixture_reconnect(&impl_->fixture, j, i);
}
void SimCluster::Saturate(unsigned i, unsigned j) {
  raft_fixture_saturate(&impl_->fixture, i, j);
}
void SimCluster::Desaturate(unsigned i, unsigned j) {
  raft_fixture_desaturate(&impl_->fixture, i, j);
}
void SimCluster::SetNetworkLatency(unsigned i, uint32_t ms) {
  raft_fixture_set_network_latency(&impl_->fixture, i, ms);
}
void SimCluster::SetDiskLatency(unsigned i, uint32_t ms) {
  impl_->shims[i]->wanted_latency_ms = ms;
  impl_->shims[i]->ApplyLatency();
}
void SimCluster::SetRandomizedElectionTimeout(unsigned i, uint32_t ms) {
  raft_fixture_set_randomized_election_timeout(&impl_->fixture, i, ms);
}

}  // namespace latchkey::replication
