#include "server/server.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <random>

#include "common/log.h"
#include "core/names.h"

namespace latchkey::server {

namespace lv = log::v1;

namespace {

void SetError(v1::Response& resp, const Status& status) {
  resp.mutable_error()->set_code(static_cast<v1::ErrorCode>(status.code()));
  resp.mutable_error()->set_message(status.message());
}

Status MakeDirs(const std::string& path) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty() && ::mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) {
        return Unavailable("cannot create data directory '" + cur + "': " + std::strerror(errno));
      }
    }
    if (i < path.size()) cur += path[i];
  }
  return Status::Ok();
}

uint64_t RandomNonce() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ 1;
}

}  // namespace

// ---- Output for the adapter: unused (results are routed by the Proposer). --
class NoOutput final : public replication::ApplyOutput {};

Server::Server(ServerOptions options, const Clock* clock)
    : options_(std::move(options)), clock_(clock) {}

Server::~Server() {
  Stop();
}

Status Server::Start() {
  started_mono_ms_ = clock_->MonoMs();
  LATCHKEY_RETURN_IF_ERROR(MakeDirs(options_.data_dir));

  replication::RaftNodeOptions ro;
  ro.node_id = options_.node_id;
  ro.raft_address = options_.raft_address;
  ro.data_dir = options_.data_dir;
  ro.election_timeout_ms = options_.election_timeout_ms;
  ro.heartbeat_timeout_ms = options_.heartbeat_timeout_ms;
  ro.snapshot_threshold = options_.snapshot_threshold;
  ro.snapshot_trailing = options_.snapshot_trailing;
  ro.idle_compaction_ms = options_.idle_compaction_ms;
  ro.join = options_.join;
  for (const ServerOptions::Peer& p : options_.peers) {
    ro.initial_voters.push_back({p.id, p.raft_address});
    if (!p.client_address.empty()) client_endpoints_[p.id] = p.client_address;
  }
  auto raft = replication::RaftNode::Create(ro, this);
  if (!raft.ok()) return raft.status();
  raft_ = std::move(raft.value());
  proposer_ =
      std::make_unique<Proposer>(raft_.get(), clock_, RandomNonce(), options_.max_batch_commands);
  raft_->SetLeadershipHandler([this](bool leader) { OnLeadershipChange(leader); });
  raft_->SetTickHandler(options_.tick_ms, [this] { Tick(); });
  LATCHKEY_RETURN_IF_ERROR(raft_->Start());

  transport::ListenerOptions lo;
  lo.address = options_.listen;
  lo.max_frame_bytes = options_.max_frame_bytes;
  lo.max_pending_write_bytes = options_.max_pending_write_bytes;
  lo.max_connections = options_.max_connections;
  lo.io_threads = options_.io_threads;
  lo.io_sched_batch = options_.io_sched_batch;
  lo.direct_writes = options_.direct_writes;
  lo.reject_payload = RejectConnectionPayload();
  io_on_loop_ = options_.client_io == ServerOptions::ClientIo::kLoop;
  auto listener = io_on_loop_ ? transport::StartLoopListener(lo, this, raft_.get())
                              : transport::Listener::Start(lo, this);
  if (!listener.ok()) {
    raft_->Stop();
    return listener.status();
  }
  listener_ = std::move(listener.value());
  request_counts_.assign(CommandCount(), 0);
  if (!options_.metrics_listen.empty()) {
    auto metrics = MetricsHttp::Start(options_.metrics_listen, [this] { return FetchMetrics(); });
    if (!metrics.ok()) {
      listener_->Stop();
      raft_->Stop();
      return metrics.status();
    }
    metrics_ = std::move(metrics.value());
  }
  raft_->Post([this, addr = listener_->address()] {
    if (!client_endpoints_.count(options_.node_id)) client_endpoints_[options_.node_id] = addr;
  });
  started_ = true;
  return Status::Ok();
}

void Server::Stop() {
  if (stopped_.exchange(true)) return;
  metrics_.reset();                  // its thread waits on the loop: stop it first
  if (listener_) listener_->Stop();  // no new requests; OnClose for each conn
  if (raft_) {
    std::promise<void> done;
    raft_->Post([this, &done] {
      FailAllPending(Unavailable("server is shutting down; retry against another node"));
      done.set_value();
    });
    // Bounded: a wedged loop must not turn SIGTERM into a hang (raft_->Stop
    // below still closes everything).
    if (started_) done.get_future().wait_for(std::chrono::seconds(10));
    raft_->Stop();
  }
}

std::string Server::listen_address() const {
  return listener_ ? listener_->address() : "";
}

std::string Server::metrics_address() const {
  return metrics_ ? metrics_->address() : "";
}

// ---- connection callbacks: io threads, or the loop thread (io_on_loop_) -----

void Server::OnOpen(const std::shared_ptr<transport::Connection>& conn) {
  if (io_on_loop_) {
    HandleOpen(conn);
    return;
  }
  raft_->Post([this, conn] { HandleOpen(conn); });
}

void Server::OnClose(const std::shared_ptr<transport::Connection>& conn) {
  const uint64_t id = conn->id();
  if (io_on_loop_) {
    HandleClose(id);
    return;
  }
  // The connection's last requests reach the loop before its close.
  FlushInbox(/*end_of_pass=*/false);
  raft_->Post([this, id] { HandleClose(id); });
}

void Server::OnStreamError(const std::shared_ptr<transport::Connection>& conn,
                           const Status& status) {
  v1::ServerFrame frame;
  SetError(*frame.mutable_response(), status);
  SendTo(*conn, frame);
  LK_LOG_INFO("closing connection from %s: %s", conn->peer().c_str(), status.ToString().c_str());
}

void Server::OnFrame(const std::shared_ptr<transport::Connection>& conn, std::string_view payload) {
  v1::ClientFrame frame;
  if (!frame.ParseFromArray(payload.data(), static_cast<int>(payload.size())) ||
      !frame.has_request()) {
    v1::ServerFrame out;
    SetError(*out.mutable_response(),
             Status(Code::kProtocolError, "frame is not a valid latchkey.v1.ClientFrame"));
    SendTo(*conn, out);
    conn->Close();
    return;
  }
  auto req = std::make_shared<Request>(std::move(*frame.mutable_request()));
  if (io_on_loop_) {
    HandleRequest(conn->id(), std::move(req));
    return;
  }
  switch (inbox_.Add({conn->id(), std::move(req)})) {
    case RequestInbox::Next::kNothing: break;
    case RequestInbox::Next::kFlushNow: FlushInbox(/*end_of_pass=*/false); break;
    case RequestInbox::Next::kFlushLater:
      conn->Defer([this] { FlushInbox(/*end_of_pass=*/true); });
      break;
  }
}

void Server::FlushInbox(bool end_of_pass) {
  std::vector<RequestInbox::Item> batch = inbox_.Take(end_of_pass);
  if (batch.empty()) return;
  raft_->Post([this, batch = std::move(batch)] {
    for (const auto& [id, req] : batch) HandleRequest(id, req);
  });
}

// ---- loop thread -------------------------------------------------------------

void Server::HandleOpen(ConnPtr conn) {
  const uint64_t id = conn->id();
  conns_[id].conn = std::move(conn);
}

void Server::HandleClose(uint64_t conn_id) {
  conns_.erase(conn_id);
  WatchesOnClose(conn_id);
  for (auto& [sid, s] : sessions_) {
    if (s.conn_id == conn_id) s.conn_id = 0;  // the lease keeps running
  }
  for (auto& [key, p] : pending_) {
    if (p.conn_id == conn_id) p.conn_id = 0;  // the waiter stays in line
  }
}

void Server::HandleRequest(uint64_t conn_id, std::shared_ptr<Request> req) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;  // closed meanwhile
  ConnState& cs = it->second;
  if (!cs.hello_done && req->body_case() != Request::kHello) {
    ReplyError(
        conn_id, req->id(),
        Status(Code::kProtocolError, "the first request must be Hello (protocol handshake)"));
    cs.conn->Close();
    return;
  }
  Dispatch(cs, *req);
}

// The command table: every request kind, declared once with its properties,
// and dispatched from here.
struct Server::CommandSpec {
  Request::BodyCase kind;
  const char* name;
  bool writes;        // goes through the replicated log
  bool needs_leader;  // only the leader can serve it
  bool idempotent;    // safe to re-send after a lost connection
  void (Server::*handler)(ConnState&, const Request&);
};

const Server::CommandSpec Server::kCommands[] = {
    {Request::kHello, "Hello", false, false, true, &Server::OnHello},
    {Request::kOpenSession, "OpenSession", true, true, false, &Server::OnOpenSession},
    {Request::kAttachSession, "AttachSession", false, true, true, &Server::OnAttachSession},
    {Request::kKeepAlive, "KeepAlive", false, true, true, &Server::OnKeepAlive},
    {Request::kCloseSession, "CloseSession", true, true, true, &Server::OnCloseSession},
    {Request::kAcquire, "Acquire", true, true, true, &Server::OnAcquire},
    {Request::kRelease, "Release", true, true, false, &Server::OnRelease},
    {Request::kCancel, "Cancel", true, true, true, &Server::OnCancel},
    // Linearizable by default (checks leadership itself), serializable on request.
    {Request::kGetLock, "GetLock", false, false, true, &Server::OnGetLockRead},
    {Request::kGetStatus, "GetStatus", false, false, true, &Server::OnGetStatus},
    {Request::kDowngrade, "Downgrade", true, true, false, &Server::OnDowngrade},
    {Request::kTransfer, "Transfer", true, true, false, &Server::OnTransfer},
    {Request::kListLocks, "ListLocks", false, true, true, &Server::OnListLocks},
    {Request::kGetWaitGraph, "GetWaitGraph", false, true, true, &Server::OnGetWaitGraph},
    {Request::kAcquireMany, "AcquireMany", true, true, true, &Server::OnAcquireMany},
    {Request::kSetLockValue, "SetLockValue", true, true, true, &Server::OnSetLockValue},
    {Request::kDeclareLockRank, "DeclareLockRank", true, true, true, &Server::OnDeclareLockRank},
    {Request::kSemaphoreAcquire, "SemaphoreAcquire", true, true, true, &Server::OnSemaphoreAcquire},
    {Request::kSemaphoreRelease, "SemaphoreRelease", true, true, false,
     &Server::OnSemaphoreRelease},
    {Request::kLatchAwait, "LatchAwait", true, true, true, &Server::OnLatchAwait},
    {Request::kLatchCountDown, "LatchCountDown", true, true, false, &Server::OnLatchCountDown},
    {Request::kBarrierAwait, "BarrierAwait", true, true, true, &Server::OnBarrierAwait},
    {Request::kListMembers, "ListMembers", false, false, true, &Server::OnListMembers},
    {Request::kAddMember, "AddMember", true, true, false, &Server::OnAddMember},
    {Request::kRemoveMember, "RemoveMember", true, true, false, &Server::OnRemoveMember},
    {Request::kTransferLeader, "TransferLeader", true, true, false, &Server::OnTransferLeader},
    // Object store (server_objects.cc). Reads are linearizable (read barrier).
    {Request::kGetObject, "GetObject", false, true, true, &Server::OnGetObject},
    {Request::kPutObject, "PutObject", true, true, true, &Server::OnPutObject},
    {Request::kReserveObject, "ReserveObject", true, true, true, &Server::OnReserveObject},
    {Request::kWaitObject, "WaitObject", false, true, true, &Server::OnWaitObject},
    {Request::kRemoveObject, "RemoveObject", true, true, true, &Server::OnRemoveObject},
    {Request::kSetObjectTtl, "SetObjectTtl", true, true, true, &Server::OnSetObjectTtl},
    {Request::kTxn, "Txn", true, true, false, &Server::OnTxn},
    {Request::kObjectHistory, "ObjectHistory", false, true, true, &Server::OnObjectHistory},
    {Request::kFindObjects, "FindObjects", false, true, true, &Server::OnFindObjects},
    {Request::kExecMethod, "ExecMethod", true, true, false, &Server::OnExecMethod},
    {Request::kCompactObjects, "CompactObjects", true, true, true, &Server::OnCompactObjects},
    // Watches, pub/sub, scripts (server_watch.cc). Watch/Subscribe: any node.
    {Request::kWatch, "Watch", false, false, true, &Server::OnWatch},
    {Request::kCancelWatch, "CancelWatch", false, false, true, &Server::OnCancelWatch},
    {Request::kPublish, "Publish", true, true, false, &Server::OnPublish},
    {Request::kSubscribe, "Subscribe", false, false, true, &Server::OnSubscribe},
    {Request::kUnsubscribe, "Unsubscribe", false, false, true, &Server::OnUnsubscribe},
    {Request::kPutScript, "PutScript", true, true, true, &Server::OnPutScript},
    // Introspection of semaphores, latches, barriers (server_sync_list.cc):
    // linearizable by default (checks leadership itself), serializable on request.
    {Request::kListSync, "ListSync", false, false, true, &Server::OnListSync},
    // A lock's state pushed on change (server_lock_watch.cc): any node.
    {Request::kWatchLock, "WatchLock", false, false, true, &Server::OnWatchLock},
    // Records (server_records.cc). Get/Find: linearizable reads.
    {Request::kRecordCreate, "RecordCreate", true, true, false, &Server::OnRecordCreate},
    {Request::kRecordGet, "RecordGet", false, true, true, &Server::OnRecordGet},
    {Request::kRecordUpdate, "RecordUpdate", true, true, false, &Server::OnRecordUpdate},
    {Request::kRecordDelete, "RecordDelete", true, true, false, &Server::OnRecordDelete},
    {Request::kRecordLock, "RecordLock", true, true, true, &Server::OnRecordLock},
    {Request::kRecordUnlock, "RecordUnlock", true, true, false, &Server::OnRecordUnlock},
    {Request::kRecordFind, "RecordFind", false, true, true, &Server::OnRecordFind},
};

size_t Server::CommandCount() {
  return std::size(kCommands);
}

const char* Server::CommandName(size_t i) {
  return kCommands[i].name;
}

void Server::Dispatch(ConnState& cs, const Request& req) {
  for (const CommandSpec& spec : kCommands) {
    if (spec.kind != req.body_case()) continue;
    ++request_counts_[static_cast<size_t>(&spec - kCommands)];
    if (spec.needs_leader && !is_leader_) {
      ReplyNotLeader(cs.conn->id(), req.id(), spec.name);
      return;
    }
    if (spec.needs_leader && !leader_ready_) {
      deferred_.emplace_back(cs.conn->id(), std::make_shared<Request>(req));
      return;
    }
    (this->*spec.handler)(cs, req);
    return;
  }
  ReplyError(cs.conn->id(), req.id(),
             Status(Code::kProtocolError,
                    "unknown or empty request type; this server speaks protocol version 1"));
  cs.conn->Close();
}

namespace {

// Equal tokens, in time that depends on the lengths only.
bool TokensEqual(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

}  // namespace

void Server::OnHello(ConnState& cs, const Request& req) {
  if (req.hello().protocol_version() != 1) {
    ReplyError(
        cs.conn->id(), req.id(),
        Status(Code::kUnsupportedVersion, "client speaks protocol version " +
                                              std::to_string(req.hello().protocol_version()) +
                                              "; this server speaks version 1"));
    cs.conn->Close();
    return;
  }
  if (!options_.auth_token.empty() && !TokensEqual(req.hello().auth_token(), options_.auth_token)) {
    LK_LOG_WARN("connection %llu from %s: refused, %s auth token",
                static_cast<unsigned long long>(cs.conn->id()), cs.conn->peer().c_str(),
                req.hello().auth_token().empty() ? "no" : "wrong");
    ReplyError(cs.conn->id(), req.id(),
               Status(Code::kUnauthenticated,
                      req.hello().auth_token().empty()
                          ? "this server requires an auth token: pass --auth-token-file FILE "
                            "(or LATCHKEY_AUTH_TOKEN_FILE) to the CLI, ClientOptions::auth_token "
                            "to the library"
                          : "wrong auth token: check the token file the client uses against "
                            "the server's --auth-token-file"));
    cs.conn->Close();
    return;
  }
  cs.hello_done = true;
  v1::Response resp;
  resp.set_id(req.id());
  auto* h = resp.mutable_hello();
  h->set_protocol_version(1);
  h->set_server_version(LATCHKEY_VERSION);
  h->set_node_id(options_.node_id);
  h->set_max_frame_bytes(options_.max_frame_bytes);
  Reply(cs.conn->id(), resp);
}

// ---- Apply path (loop thread) ------------------------------------------------

std::unique_ptr<replication::ApplyOutput> Server::Apply(uint64_t index, std::string_view data) {
  lv::LogEntry entry;
  if (!entry.ParseFromArray(data.data(), static_cast<int>(data.size()))) {
    LK_LOG_ERROR("log entry %llu is not decodable; stopping to avoid divergence",
                 static_cast<unsigned long long>(index));
    LATCHKEY_CHECK(false && "undecodable log entry");
  }
  if (entry.version() != core::kLogEntryVersion) {
    LK_LOG_ERROR("log entry %llu has format version %u; this binary reads %u",
                 static_cast<unsigned long long>(index), entry.version(), core::kLogEntryVersion);
    LATCHKEY_CHECK(false && "unsupported log entry version");
  }
  ApplyClusterFields(entry);
  core::ApplyResult result = sm_.Apply(index, entry);
  // Keep the leader-side session view in step with the core.
  for (int i = 0; i < entry.commands_size(); ++i) {
    const core::CommandResult& r = result.results[static_cast<size_t>(i)];
    if (entry.commands(i).has_open_session() && r.status.ok()) {
      const uint64_t ttl = entry.commands(i).open_session().ttl_ms();
      sessions_[r.session_id] = SessionState{ttl, 0};
      if (is_leader_) leases_.Renew(r.session_id, ttl, clock_->MonoMs());
    }
  }
  std::vector<Proposer::Done> dones = proposer_->TakeBatch(entry);
  for (size_t i = 0; i < dones.size() && i < result.results.size(); ++i) {
    dones[i](Status::Ok(), &result.results[i]);
  }
  HandleEvents(result.events);
  HandleObjectChanges(result.object_changes);
  HandleWatchChanges(result.object_changes);
  HandlePublished(result.published);
  if (!watch_srv_.lock_watchers.empty()) PushLockChanges();
  RecheckLazyAcquires();
  return std::make_unique<NoOutput>();
}

void Server::HandleEvents(const std::vector<core::Event>& events) {
  for (const core::Event& e : events) {
    switch (e.kind) {
      case core::Event::Kind::kGranted: {
        auto it = pending_.find(
            WaitKey{e.session_id, e.grant.owner, e.grant.name, static_cast<int>(e.object)});
        if (it == pending_.end()) break;  // nobody listening: seen on attach/retry
        v1::Response resp;
        resp.set_id(it->second.request_id);
        FillWaitReply(e, it->second, &resp);
        if (it->second.conn_id != 0) Reply(it->second.conn_id, resp);
        pending_.erase(it);
        break;
      }
      case core::Event::Kind::kSessionEnded: {
        auto sit = sessions_.find(e.session_id);
        uint64_t conn_id = sit == sessions_.end() ? 0 : sit->second.conn_id;
        if (sit != sessions_.end()) sessions_.erase(sit);
        leases_.Remove(e.session_id);
        expiring_.erase(e.session_id);
        const Status gone(Code::kSessionExpired,
                          "session " + std::to_string(e.session_id) + " ended: " + e.reason);
        for (auto it = pending_.begin(); it != pending_.end();) {
          if (std::get<0>(it->first) == e.session_id) {
            if (it->second.conn_id != 0)
              ReplyError(it->second.conn_id, it->second.request_id, gone);
            it = pending_.erase(it);
          } else {
            ++it;
          }
        }
        if (conn_id != 0) {
          v1::Push push;
          push.mutable_session_expired()->set_session_id(e.session_id);
          push.mutable_session_expired()->set_reason(e.reason);
          Push(conn_id, push);
        }
        break;
      }
      case core::Event::Kind::kLockLost: {
        expiring_locks_.erase(e.grant.fencing_token);
        auto sit = sessions_.find(e.session_id);
        if (sit == sessions_.end() || sit->second.conn_id == 0) break;
        v1::Push push;
        auto* l = push.mutable_lock_lost();
        l->set_session_id(e.session_id);
        l->set_owner(e.grant.owner);
        l->set_name(e.grant.name);
        l->set_fencing_token(e.grant.fencing_token);
        l->set_reason(e.reason);
        Push(sit->second.conn_id, push);
        break;
      }
      case core::Event::Kind::kCallback: PushCallback(e); break;
      case core::Event::Kind::kWaitFailed: {  // records: deleted or changed while waiting
        auto it = pending_.find(
            WaitKey{e.session_id, e.grant.owner, e.grant.name, static_cast<int>(e.object)});
        if (it == pending_.end()) break;
        if (it->second.conn_id != 0)
          ReplyError(it->second.conn_id, it->second.request_id, e.failure);
        pending_.erase(it);
        break;
      }
    }
  }
}

Result<std::string> Server::TakeSnapshot() {
  return sm_.Snapshot();
}

Status Server::Restore(std::string_view data) {
  LATCHKEY_RETURN_IF_ERROR(sm_.Restore(data));
  sessions_.clear();
  leases_.Clear();
  for (const auto& [id, s] : sm_.sessions()) sessions_[id] = SessionState{s.ttl_ms, 0};
  ResyncWatches();
  PushLockChanges();
  return Status::Ok();
}

// ---- Leadership and housekeeping -------------------------------------------

void Server::OnLeadershipChange(bool is_leader) {
  is_leader_ = is_leader;
  leader_ready_ = false;
  ++leader_epoch_;
  leases_.Clear();
  expiring_.clear();
  expiring_locks_.clear();
  ObjectsOnLeadership(is_leader);
  if (is_leader) {
    // A new leader (or a restarted node) gives every session a full TTL
    // before expiring any: it cannot know when the last keepalive arrived.
    const uint64_t now = clock_->MonoMs();
    for (const auto& [id, s] : sm_.sessions()) {
      sessions_[id].ttl_ms = s.ttl_ms;
      leases_.Renew(id, s.ttl_ms, now);
    }
    LK_LOG_INFO("node %llu is the leader; %zu sessions get a full lease",
                static_cast<unsigned long long>(options_.node_id), sm_.sessions().size());
    StartLeaderBarrier(leader_epoch_);
  } else {
    proposer_->FailAll(
        Status(Code::kMaybeApplied, "leadership lost; the request may have applied"));
    FailAllPending(Status(Code::kNotLeader, "this node is no longer the leader"));
    for (auto& [conn_id, req] : deferred_) ReplyNotLeader(conn_id, req->id(), "the request");
    deferred_.clear();
  }
}

void Server::Tick() {
  if (!is_leader_ || stopped_) return;
  // Lazy acquires wait at most one tick for another proposal to join: a
  // deadlock among them is found, and a wait's timeout starts, no later.
  proposer_->ScheduleFlush();
  const uint64_t mono = clock_->MonoMs();
  for (uint64_t sid : leases_.Expired(mono)) {
    if (!expiring_.insert(sid).second) continue;
    LK_LOG_INFO("session %llu lease expired; releasing its locks",
                static_cast<unsigned long long>(sid));
    lv::Command cmd;
    cmd.mutable_expire_session()->set_session_id(sid);
    proposer_->Add(std::move(cmd), [this, sid](const Status& st, const core::CommandResult* res) {
      if (!st.ok() || (res && !res->status.ok())) expiring_.erase(sid);
      if (res && res->status.code() == Code::kSessionExpired) leases_.Remove(sid);
    });
  }
  for (const auto& [name, token] : sm_.ExpiredLocks(clock_->WallMs())) {
    if (!expiring_locks_.insert(token).second) continue;
    lv::Command cmd;
    cmd.mutable_expire_lock()->set_name(name);
    cmd.mutable_expire_lock()->set_fencing_token(token);
    const uint64_t t = token;
    proposer_->Add(std::move(cmd), [this, t](const Status& st, const core::CommandResult* res) {
      if (!st.ok() || (res && !res->status.ok())) expiring_locks_.erase(t);
    });
  }
  std::vector<WaitKey> due;
  for (const auto& [key, p] : pending_) {
    if (!p.cancelling && p.deadline_mono_ms != 0 && p.deadline_mono_ms <= mono) due.push_back(key);
  }
  for (const WaitKey& key : due) CancelPending(key, Code::kTimeout);
  ObjectTick();
}

void Server::FailAllPending(const Status& status) {
  proposer_->FailAll(status);
  for (auto& [key, p] : pending_) {
    if (p.conn_id != 0) ReplyError(p.conn_id, p.request_id, status);
  }
  pending_.clear();
  FailObjectWaiters(status);
}

// ---- Output ------------------------------------------------------------------

void Server::SendTo(transport::Connection& conn, const v1::ServerFrame& frame) {
  std::string bytes;
  frame.SerializeToString(&bytes);
  conn.Send(bytes);
}

void Server::Reply(uint64_t conn_id, v1::Response& resp) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  v1::ServerFrame frame;
  frame.mutable_response()->Swap(&resp);
  SendTo(*it->second.conn, frame);
}

void Server::ReplyError(uint64_t conn_id, uint64_t request_id, const Status& status) {
  v1::Response resp;
  resp.set_id(request_id);
  SetError(resp, status);
  Reply(conn_id, resp);
}

void Server::Push(uint64_t conn_id, const v1::Push& push) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  v1::ServerFrame frame;
  *frame.mutable_push() = push;
  SendTo(*it->second.conn, frame);
}

}  // namespace latchkey::server
