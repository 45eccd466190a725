// The /metrics page (--metrics-listen, metrics_http.h): Prometheus text
// format, rendered on the loop thread from the same state GetStatus reads.
#include <condition_variable>
#include <mutex>

#include "server/server.h"

namespace latchkey::server {

namespace {

void Metric(std::string* out, const char* name, const char* type, const char* help,
            uint64_t value) {
  *out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  *out += std::string(name) + " " + std::to_string(value) + "\n";
}

}  // namespace

std::string Server::RenderMetrics() const {
  const replication::RaftInfo info = raft_->Info();
  std::string out;
  out +=
      "# HELP latchkey_info The server's version and node id (value 1).\n"
      "# TYPE latchkey_info gauge\n"
      "latchkey_info{version=\"" LATCHKEY_VERSION "\",node_id=\"" +
      std::to_string(options_.node_id) + "\"} 1\n";
  Metric(&out, "latchkey_uptime_seconds", "gauge", "Seconds since the server started.",
         (clock_->MonoMs() - started_mono_ms_) / 1000);
  Metric(&out, "latchkey_raft_is_leader", "gauge", "1 while this node leads its Raft group.",
         info.role == replication::RaftInfo::Role::kLeader ? 1 : 0);
  Metric(&out, "latchkey_raft_term", "gauge", "Current Raft term.", info.term);
  Metric(&out, "latchkey_raft_commit_index", "gauge", "Highest log index known committed.",
         info.commit_index);
  Metric(&out, "latchkey_raft_applied_index", "gauge", "Highest log index applied here.",
         info.last_applied);
  Metric(&out, "latchkey_raft_voters", "gauge", "Voters in the Raft configuration.", info.voters);
  Metric(&out, "latchkey_raft_log_entries_in_memory", "gauge",
         "Log entries libraft keeps in memory (until a snapshot drops them).",
         info.log_entries_in_memory);
  info.log_appends.latency.AppendPrometheus(
      &out, "latchkey_raft_log_append_seconds",
      "Log appends from hand-over to the disk to their completion on the Raft loop, including "
      "the wait behind the write in progress.");
  Metric(&out, "latchkey_raft_log_appended_entries_total", "counter",
         "Log entries appended to this node's disk.", info.log_appends.entries);
  Metric(&out, "latchkey_raft_log_appended_bytes_total", "counter",
         "Payload bytes of the log entries appended to this node's disk.", info.log_appends.bytes);
  Metric(&out, "latchkey_connections", "gauge", "Open client connections.", conns_.size());
  Metric(&out, "latchkey_sessions", "gauge", "Live sessions.", sm_.sessions().size());
  Metric(&out, "latchkey_locks_held", "gauge", "Lock grants held.", sm_.locks_held());
  Metric(&out, "latchkey_lock_waiters", "gauge", "Requests queued for a lock.", sm_.waiter_count());
  Metric(&out, "latchkey_pending_waits", "gauge",
         "Waiting requests of this node's clients (locks, semaphores, latches, barriers).",
         pending_.size());
  Metric(&out, "latchkey_revision", "gauge", "The state machine's revision.", sm_.revision());
  Metric(&out, "latchkey_watches", "gauge", "Object watches served by this node.",
         watch_srv_.watchers.size());
  Metric(&out, "latchkey_lock_watches", "gauge", "Lock watches served by this node.",
         watch_srv_.lock_watchers.size());
  Metric(&out, "latchkey_subscriptions", "gauge", "Pub/sub subscriptions on this node.",
         watch_srv_.subscribers.size());
  out +=
      "# HELP latchkey_requests_total Requests received by this node, by type.\n"
      "# TYPE latchkey_requests_total counter\n";
  for (size_t i = 0; i < request_counts_.size(); ++i) {
    out += std::string("latchkey_requests_total{type=\"") + CommandName(i) + "\"} " +
           std::to_string(request_counts_[i]) + "\n";
  }
  return out;
}

std::optional<std::string> Server::FetchMetrics() {
  struct Slot {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<std::string> page;
  };
  auto slot = std::make_shared<Slot>();
  raft_->Post([this, slot] {
    std::string page = RenderMetrics();
    std::lock_guard<std::mutex> lk(slot->mu);
    slot->page = std::move(page);
    slot->cv.notify_all();
  });
  std::unique_lock<std::mutex> lk(slot->mu);
  // A closing loop drops the closure: answer 503 after the wait instead.
  slot->cv.wait_for(lk, MetricsHttp::kRequestTimeout, [&] { return slot->page.has_value(); });
  return slot->page;
}

}  // namespace latchkey::server
