// Server: the request pipeline between the client listener and the
// replicated state machine.
//
// Threads:
// - by default (ServerOptions::ClientIo::kLoop) client connections live on
//   the raft loop thread too (transport::LoopListener): a request is read,
//   dispatched and answered there, without a handoff.
// - with ClientIo::kThreads, io thread(s) (transport::Listener) read frames,
//   decode ClientFrame, post requests to the loop thread in batches
//   (RequestInbox) and write responses.
// - the raft loop thread (replication::RaftNode): everything else. Server
//   state (connections, sessions' leases, pending acquires) and the core
//   state machine are touched only there, so none of it needs locks.
//
// Path of an acquire: socket -> decoded (on the loop, or on an io thread and
// posted to the loop) -> loop thread validates, renews the lease, queues an AcquireCmd in the
// Proposer -> one log entry per loop iteration -> libraft makes it durable -> Apply hook ->
// core::StateMachine::Apply -> the Proposer routes the CommandResult back ->
// Response (granted) or a PendingAcquire that a later Granted event answers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/clock.h"
#include "core/state_machine.h"
#include "latchkey.pb.h"
#include "replication/raft_node.h"
#include "server/lease_tracker.h"
#include "server/metrics_http.h"
#include "server/options.h"
#include "server/proposer.h"
#include "server/request_inbox.h"
#include "server/server_objects.h"
#include "server/server_watch.h"
#include "transport/listener.h"
#include "transport/loop_listener.h"

namespace latchkey::server {

class Server final : public transport::ConnectionHandler, public replication::StateMachineHooks {
 public:
  explicit Server(ServerOptions options, const Clock* clock = &SystemClock::Instance());
  ~Server() override;

  // Creates the data dir if needed, replays state, starts listening.
  Status Start();
  // Graceful: stops accepting, fails pending requests with UNAVAILABLE,
  // closes raft (all acknowledged state is durable). Idempotent.
  void Stop();

  // The address clients connect to (real port when listen had port 0).
  std::string listen_address() const;
  // The metrics endpoint's address ("" when --metrics-listen is off).
  std::string metrics_address() const;

  // ConnectionHandler (io threads).
  void OnOpen(const std::shared_ptr<transport::Connection>& conn) override;
  void OnFrame(const std::shared_ptr<transport::Connection>& conn,
               std::string_view payload) override;
  void OnStreamError(const std::shared_ptr<transport::Connection>& conn,
                     const Status& status) override;
  void OnClose(const std::shared_ptr<transport::Connection>& conn) override;

  // StateMachineHooks (loop thread).
  std::unique_ptr<replication::ApplyOutput> Apply(uint64_t index, std::string_view data) override;
  Result<std::string> TakeSnapshot() override;
  Status Restore(std::string_view data) override;

 private:
  using ConnPtr = std::shared_ptr<transport::Connection>;
  using Request = v1::Request;

  struct ConnState {
    ConnPtr conn;
    bool hello_done = false;
    // Sessions opened or attached here (pruned lazily) and OpenSessions in
    // flight: what max_sessions_per_connection counts.
    std::set<uint64_t> sessions;
    size_t opening = 0;
  };
  struct SessionState {
    uint64_t ttl_ms = 0;
    uint64_t conn_id = 0;  // bound connection, 0 = none
  };
  // A request waiting in the core (lock acquire, semaphore, latch, barrier),
  // answered by the Granted event that completes it.
  struct PendingAcquire {
    uint64_t conn_id = 0;
    uint64_t request_id = 0;
    uint64_t deadline_mono_ms = 0;  // 0 = no timeout
    bool cancelling = false;
    Code cancel_code = Code::kTimeout;
    std::vector<std::string> parts;  // AcquireMany: every lock of the request
  };
  // (session, owner, name, object kind: core::Event::Object as int)
  using WaitKey = std::tuple<uint64_t, std::string, std::string, int>;
  // Records (or re-targets) the pending wait of a request that was queued.
  PendingAcquire& AddPending(const WaitKey& key, uint64_t conn_id, uint64_t request_id,
                             uint64_t deadline_mono_ms);
  // Proposes withdrawing a pending wait; answers it with `code` if that
  // applied (a grant that won the race was answered already).
  void CancelPending(const WaitKey& key, Code code);
  // The reply for a completed wait.
  void FillWaitReply(const core::Event& e, const PendingAcquire& p, v1::Response* resp) const;
  uint64_t WaitDeadline(bool try_only, uint64_t wait_timeout_ms) const;

  // io threads: posts what the inbox holds to the loop thread, in one Post.
  void FlushInbox(bool end_of_pass);

  // Loop thread.
  void HandleOpen(ConnPtr conn);
  void HandleClose(uint64_t conn_id);
  void HandleRequest(uint64_t conn_id, std::shared_ptr<Request> req);
  struct CommandSpec;
  static const CommandSpec kCommands[];
  void Dispatch(ConnState& cs, const Request& req);
  // Metrics (server_metrics.cc): the page rendered on the loop thread, and
  // fetched from the metrics thread (nullopt if the loop did not answer).
  std::string RenderMetrics() const;
  std::optional<std::string> FetchMetrics();
  static size_t CommandCount();
  static const char* CommandName(size_t i);
  void OnHello(ConnState& cs, const Request& req);
  void OnOpenSession(ConnState& cs, const Request& req);
  void OnAttachSession(ConnState& cs, const Request& req);
  void OnKeepAlive(ConnState& cs, const Request& req);
  void OnCloseSession(ConnState& cs, const Request& req);
  void OnAcquire(ConnState& cs, const Request& req);
  void OnRelease(ConnState& cs, const Request& req);
  void OnCancel(ConnState& cs, const Request& req);
  void OnGetLock(ConnState& cs, const Request& req);
  void OnGetStatus(ConnState& cs, const Request& req);
  // Lock engine (server_locks.cc).
  void OnDowngrade(ConnState& cs, const Request& req);
  void OnTransfer(ConnState& cs, const Request& req);
  void OnListLocks(ConnState& cs, const Request& req);
  void OnGetWaitGraph(ConnState& cs, const Request& req);
  void FillLock(const std::string& name, v1::GetLockReply* out) const;
  // Semaphores, latches, barriers by prefix (server_sync_list.cc): ReadSync
  // after a read barrier, or at once when serializable.
  void OnListSync(ConnState& cs, const Request& req);
  void ReadSync(ConnState& cs, const Request& req);
  // Multi-lock, values, ordering, semaphores, latches, barriers (server_sync.cc).
  void OnAcquireMany(ConnState& cs, const Request& req);
  void OnSetLockValue(ConnState& cs, const Request& req);
  void OnDeclareLockRank(ConnState& cs, const Request& req);
  void OnSemaphoreAcquire(ConnState& cs, const Request& req);
  void OnSemaphoreRelease(ConnState& cs, const Request& req);
  void OnLatchAwait(ConnState& cs, const Request& req);
  void OnLatchCountDown(ConnState& cs, const Request& req);
  void OnBarrierAwait(ConnState& cs, const Request& req);
  using FillFn = std::function<void(const core::CommandResult&, v1::Response*)>;
  // Proposes one command and answers the request with `fill` (or the error).
  void ProposeAndReply(log::v1::Command cmd, uint64_t conn_id, uint64_t rid, FillFn fill);
  // Like ProposeAndReply, but a queued result becomes a pending wait.
  // `lazy`: Proposer::Add's (an acquire that would wait anyway).
  void ProposeWait(log::v1::Command cmd, WaitKey key, uint64_t conn_id, uint64_t rid,
                   uint64_t deadline, FillFn fill, std::vector<std::string> parts = {},
                   bool lazy = false);
  // True when, by the applied state, this acquire would queue behind a
  // holder of another owner (or behind waiters) and nothing happens on its
  // arrival that others need soon: no holder takes blocking callbacks. Its
  // proposal can then wait for the next one (Proposer::Add, lazy).
  bool AcquireWouldWait(const log::v1::AcquireCmd& a) const;
  // After an entry is applied: when only lazy acquires are queued and one
  // of them would no longer wait, propose them now.
  void RecheckLazyAcquires();
  // Limits (server_limits.cc): OK, or RESOURCE_EXHAUSTED naming the limit
  // and the flag that raises it.
  Status CheckSessionLimits(ConnState& cs);
  // Lock table capacity (acquires) and waits per session.
  Status CheckWaitLimit(const log::v1::Command& cmd, const WaitKey& key) const;
  // The payload sent to a connection refused by max_connections.
  std::string RejectConnectionPayload() const;
  // Lock values are checked before they reach the log (the core checks too).
  static Status CheckValueSize(size_t bytes);
  // Cluster mode (server_cluster.cc).
  void OnGetLockRead(ConnState& cs, const Request& req);
  void OnListMembers(ConnState& cs, const Request& req);
  void OnAddMember(ConnState& cs, const Request& req);
  void OnRemoveMember(ConnState& cs, const Request& req);
  void OnTransferLeader(ConnState& cs, const Request& req);
  // NOT_LEADER with the leader's client address when known.
  void ReplyNotLeader(uint64_t conn_id, uint64_t request_id, const std::string& what);
  std::string LeaderEndpoint() const;
  // A new leader serves only once a barrier of its term applied: before
  // that its state may miss committed entries (an OpenSession, a grant).
  void OnLeaderReady();
  // Appends the barrier OnLeaderReady waits for; retried while this node
  // stays leader of the same epoch.
  void StartLeaderBarrier(uint64_t epoch);
  // Leader: replicates the client-address table (LogEntry.client_endpoints).
  void AnnounceEndpoints();
  void ApplyClusterFields(const log::v1::LogEntry& entry);
  // Checks the session exists and renews its lease; replies with an error
  // and returns false otherwise.
  bool TouchSession(uint64_t conn_id, uint64_t request_id, uint64_t session_id);
  // Object store (server_objects.cc, design 0008).
  void OnGetObject(ConnState& cs, const Request& req);
  void OnPutObject(ConnState& cs, const Request& req);
  void OnReserveObject(ConnState& cs, const Request& req);
  void OnWaitObject(ConnState& cs, const Request& req);
  void OnRemoveObject(ConnState& cs, const Request& req);
  void OnSetObjectTtl(ConnState& cs, const Request& req);
  void OnTxn(ConnState& cs, const Request& req);
  void OnObjectHistory(ConnState& cs, const Request& req);
  void OnFindObjects(ConnState& cs, const Request& req);
  void OnExecMethod(ConnState& cs, const Request& req);
  void OnCompactObjects(ConnState& cs, const Request& req);
  void ReadObject(ConnState& cs, const Request& req);
  void ReadHistory(ConnState& cs, const Request& req);
  void ReadFind(ConnState& cs, const Request& req);
  void ReadWait(ConnState& cs, const Request& req);
  // Runs `read` once a read barrier applied (linearizable, like GetLock).
  void AfterReadBarrier(ConnState& cs, const Request& req,
                        void (Server::*read)(ConnState&, const Request&));
  // Fills `out` and, on the leader, restarts the object's sliding TTL clock.
  void SendObject(const core::ObjView& v, v1::Object* out);
  void AnswerWait(uint64_t conn_id, uint64_t request_id, const std::string& key);
  void HandleObjectChanges(const std::vector<core::ObjChange>& changes);
  void ObjectsOnLeadership(bool is_leader);
  void FailObjectWaiters(const Status& status);
  void ProposeObjectExpiry(const std::string& key, uint64_t ttl_revision);
  void ObjectTick();
  // Watches, pub/sub and scripts (server_watch.cc, design 0012).
  void OnWatch(ConnState& cs, const Request& req);
  void OnCancelWatch(ConnState& cs, const Request& req);
  // Lock watches (server_lock_watch.cc): the whole state of one lock, pushed
  // when it changes.
  void OnWatchLock(ConnState& cs, const Request& req);
  // After an applied entry or a restore: pushes every watched lock whose
  // state changed.
  void PushLockChanges();
  void OnPublish(ConnState& cs, const Request& req);
  void OnSubscribe(ConnState& cs, const Request& req);
  void OnUnsubscribe(ConnState& cs, const Request& req);
  void OnPutScript(ConnState& cs, const Request& req);
  // Records (server_records.cc, design 0013).
  void OnRecordCreate(ConnState& cs, const Request& req);
  void OnRecordGet(ConnState& cs, const Request& req);
  void OnRecordUpdate(ConnState& cs, const Request& req);
  void OnRecordDelete(ConnState& cs, const Request& req);
  void OnRecordLock(ConnState& cs, const Request& req);
  void OnRecordUnlock(ConnState& cs, const Request& req);
  void OnRecordFind(ConnState& cs, const Request& req);
  void ReadRecord(ConnState& cs, const Request& req);
  void ReadRecordFind(ConnState& cs, const Request& req);
  void PushWatchEvents(uint64_t watch_id, uint64_t conn_id,
                       const std::vector<core::ObjView>& events);
  void HandleWatchChanges(const std::vector<core::ObjChange>& changes);
  void HandlePublished(const std::vector<core::Published>& published);
  void ResyncWatches();
  void WatchesOnClose(uint64_t conn_id);
  void HandleEvents(const std::vector<core::Event>& events);
  void Tick();
  void OnLeadershipChange(bool is_leader);
  void FailAllPending(const Status& status);

  void Reply(uint64_t conn_id, v1::Response& resp);
  void ReplyError(uint64_t conn_id, uint64_t request_id, const Status& status);
  void Push(uint64_t conn_id, const v1::Push& push);
  // Cached locks: pushes a BlockingCallback to the holder's connection
  // (server_cache.cc). Only the leader has connections with sessions bound.
  void PushCallback(const core::Event& e);
  // After AttachSession: pushes again every callback its grants still owe.
  void RepushCallbacks(uint64_t session_id);
  // One held lock of an AttachSession reply, with its value block.
  void FillHeldLock(const core::GrantInfo& g, v1::HeldLock* out) const;
  // An AcquireMany reply: token, value and value token of every part.
  void FillAcquireManyReply(uint64_t session_id, const std::string& owner,
                            const std::vector<std::string>& names, v1::AcquireManyReply* out) const;
  static void SendTo(transport::Connection& conn, const v1::ServerFrame& frame);

  ServerOptions options_;
  const Clock* clock_;
  uint64_t started_mono_ms_ = 0;
  std::unique_ptr<replication::RaftNode> raft_;
  std::unique_ptr<transport::Listener> listener_;
  std::unique_ptr<MetricsHttp> metrics_;  // --metrics-listen (server_metrics.cc)
  // Requests dispatched, by kCommands entry (loop thread).
  std::vector<uint64_t> request_counts_;
  std::unique_ptr<Proposer> proposer_;
  std::atomic<bool> stopped_{false};
  std::atomic<bool> started_{false};
  bool io_on_loop_ = false;  // set in Start: connections' callbacks run on the loop

  RequestInbox inbox_;  // requests from the io threads, on their way to the loop

  // ---- Loop thread only ----
  core::StateMachine sm_;
  bool is_leader_ = false;
  std::map<uint64_t, ConnState> conns_;
  std::map<uint64_t, SessionState> sessions_;  // leader-side view of live sessions
  size_t opening_sessions_ = 0;                // OpenSession proposals in flight
  LeaseTracker leases_;
  std::set<uint64_t> expiring_;        // ExpireSession proposed, not applied
  std::set<uint64_t> expiring_locks_;  // ExpireLock proposed (by token)
  std::map<WaitKey, PendingAcquire> pending_;
  // Cluster mode: node id -> client address (from --peers, `member add` and
  // the leader's announcements).
  std::map<uint64_t, std::string> client_endpoints_;
  bool leader_ready_ = false;  // leader and a barrier of its term applied
  uint64_t leader_epoch_ = 0;  // bumped on every leadership change
  // Leader-only requests that arrived before leader_ready_.
  std::vector<std::pair<uint64_t, std::shared_ptr<Request>>> deferred_;
  ObjectServerState objects_srv_;  // object store, leader-side (server_objects.h)
  WatchServerState watch_srv_;     // watches and subscriptions, every node (server_watch.h)
};

}  // namespace latchkey::server
