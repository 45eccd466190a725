// Unit tests for the libraft adapter: a real libraft node (libuv, TCP on
// 127.0.0.1, a temp data dir), single voter.
#include "replication/raft_node.h"

// An adapter test: the last cases reach into RaftNode::Impl (raft.h).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "replication/raft_node_impl.h"
#include "replication/raft_node_test_util.h"

namespace latchkey::replication {
namespace {

constexpr auto kDeadline = std::chrono::seconds(20);

// ---------------------------------------------------------------------------
// Test state machine: the applied (index, payload) list plus counters.

struct TestOutput : ApplyOutput {
  TestOutput(uint64_t i, std::string p) : index(i), payload(std::move(p)) { ++live; }
  ~TestOutput() override { --live; }
  uint64_t index;
  std::string payload;
  static std::atomic<int> live;  // outputs not yet destroyed (leak check)
};
std::atomic<int> TestOutput::live{0};

class TestHooks : public StateMachineHooks {
 public:
  std::unique_ptr<ApplyOutput> Apply(uint64_t index, std::string_view data) override {
    if (!entries.empty() && index <= entries.back().first) ++order_violations;
    if (index <= restored_index) ++order_violations;
    entries.emplace_back(index, std::string(data));
    {
      std::lock_guard<std::mutex> lock(mu);
      applied_count = entries.size();
      cv.notify_all();
    }
    return std::make_unique<TestOutput>(index, std::string(data));
  }

  // Thread-safe: waits until at least n entries are in the state.
  bool WaitApplied(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, kDeadline, [&] { return applied_count >= n; });
  }

  Result<std::string> TakeSnapshot() override {
    ++snapshots_taken;
    std::ostringstream out;
    out << "v1 " << entries.size() << "\n";
    for (const auto& [index, payload] : entries) out << index << " " << payload << "\n";
    return out.str();
  }

  Status Restore(std::string_view data) override {
    ++restores;
    std::istringstream in{std::string(data)};
    std::string version;
    size_t n = 0;
    in >> version >> n;
    if (version != "v1") return Internal("bad snapshot version '" + version + "'");
    std::vector<std::pair<uint64_t, std::string>> restored;
    for (size_t i = 0; i < n; ++i) {
      uint64_t index = 0;
      std::string payload;
      if (!(in >> index >> payload)) return Internal("truncated snapshot");
      restored.emplace_back(index, payload);
    }
    entries = std::move(restored);
    restored_index = entries.empty() ? 0 : entries.back().first;
    return Status::Ok();
  }

  // Only touched on the loop thread while the node runs; read by the test
  // after Stop() (thread joined) or through RunOnLoop().
  std::vector<std::pair<uint64_t, std::string>> entries;
  uint64_t restored_index = 0;
  int order_violations = 0;
  int snapshots_taken = 0;
  int restores = 0;

 private:
  std::mutex mu;
  std::condition_variable cv;
  size_t applied_count = 0;  // guarded by mu
};

// ---------------------------------------------------------------------------
// Helpers.

// A port that was free a moment ago (tiny race accepted; Start retries once).
int PickFreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string Address(int port) {
  return "127.0.0.1:" + std::to_string(port);
}

// A fresh directory under /tmp, removed with everything in it.
struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/raft_node_test.XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl), nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string path;
};

// Collects propose callbacks; thread-safe.
struct ProposeLog {
  struct Record {
    Status status;
    uint64_t index = 0;
    std::string output_payload;
    uint64_t output_index = 0;
    bool has_output = false;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<int, Record>> records;  // (proposal number, record)

  ProposeCallback Callback(int n) {
    return [this, n](Status st, uint64_t index, std::unique_ptr<ApplyOutput> out) {
      Record r;
      r.status = std::move(st);
      r.index = index;
      if (auto* t = dynamic_cast<TestOutput*>(out.get())) {
        r.has_output = true;
        r.output_payload = t->payload;
        r.output_index = t->index;
      }
      std::lock_guard<std::mutex> lock(mu);
      records.emplace_back(n, std::move(r));
      cv.notify_all();
    };
  }

  bool WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, kDeadline, [&] { return records.size() >= n; });
  }
};

std::string Payload(int i) {
  return "entry-" + std::to_string(i);
}

// N voters in one process, each on its own port and data dir, started
// together; Start() returns the index of the first node to become leader.
struct VoterGroup {
  explicit VoterGroup(int n) : dirs(n), hooks(n) {
    for (int i = 0; i < n; ++i) {
      peers.push_back({static_cast<uint64_t>(i + 1), Address(PickFreePort())});
    }
  }
  // Multi-voter Start() returns once raft runs, without waiting for a leader.
  Result<int> Start(uint32_t election_timeout_ms, uint32_t heartbeat_timeout_ms) {
    for (size_t i = 0; i < peers.size(); ++i) {
      RaftNodeOptions o;
      o.node_id = peers[i].id;
      o.raft_address = peers[i].address;
      o.data_dir = dirs[i].path;
      o.initial_voters = peers;
      o.election_timeout_ms = election_timeout_ms;
      o.heartbeat_timeout_ms = heartbeat_timeout_ms;
      auto created = RaftNode::Create(o, &hooks[i]);
      if (!created.ok()) return created.status();
      nodes.push_back(std::move(created.value()));
      nodes.back()->SetLeadershipHandler([this, i](bool is_leader) {
        std::lock_guard<std::mutex> lock(mu);
        if (is_leader) leader = static_cast<int>(i);
        cv.notify_all();
      });
      LATCHKEY_RETURN_IF_ERROR(nodes.back()->Start());
    }
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, kDeadline, [&] { return leader >= 0; })) {
      return Status(Code::kTimeout, "no leader elected");
    }
    return leader;
  }

  std::vector<TempDir> dirs;
  std::vector<RaftPeer> peers;
  std::vector<TestHooks> hooks;
  std::mutex mu;  // declared before nodes: leadership handlers run until they stop
  std::condition_variable cv;
  int leader = -1;  // guarded by mu
  std::vector<std::unique_ptr<RaftNode>> nodes;
};

class RaftNodeTest : public ::testing::Test {
 protected:
  void SetUp() override { port_ = PickFreePort(); }

  RaftNodeOptions Options() const {
    RaftNodeOptions o;
    o.node_id = 1;
    o.raft_address = Address(port_);
    o.data_dir = dir_;
    o.election_timeout_ms = 300;
    o.heartbeat_timeout_ms = 30;
    o.idle_compaction_ms = 0;  // tests that count snapshots enable it themselves
    return o;
  }

  // Creates and starts a node; on an I/O error (the picked port got taken in
  // the meantime) retries once with a new port.
  std::unique_ptr<RaftNode> StartNode(RaftNodeOptions options, StateMachineHooks* hooks,
                                      const std::function<void(RaftNode&)>& configure = {}) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto created = RaftNode::Create(options, hooks);
      EXPECT_TRUE(created.ok()) << created.status().ToString();
      if (!created.ok()) return nullptr;
      std::unique_ptr<RaftNode> node = std::move(created.value());
      if (configure) configure(*node);
      Status st = node->Start();
      if (st.ok()) return node;
      if (attempt == 0 && st.code() == Code::kUnavailable) {
        port_ = PickFreePort();
        options.raft_address = Address(port_);
        continue;
      }
      ADD_FAILURE() << "Start failed: " << st.ToString();
      return nullptr;
    }
    return nullptr;
  }

  // Proposes payloads [first, first + n) all at once from the loop thread and
  // waits for every callback.
  void ProposeAll(RaftNode& node, ProposeLog& log, int first, int n) {
    node.Post([&node, &log, first, n] {
      for (int i = first; i < first + n; ++i) node.Propose(Payload(i), log.Callback(i));
    });
    ASSERT_TRUE(log.WaitFor(static_cast<size_t>(n)))
        << "only " << log.records.size() << " of " << n << " callbacks arrived";
  }

  TempDir tmp_;
  const std::string dir_ = tmp_.path;
  int port_ = 0;
};

// ---------------------------------------------------------------------------

TEST(RoleNameTest, Names) {
  EXPECT_EQ(RoleName(RaftInfo::Role::kLeader), "leader");
  EXPECT_EQ(RoleName(RaftInfo::Role::kFollower), "follower");
  EXPECT_EQ(RoleName(RaftInfo::Role::kCandidate), "candidate");
  EXPECT_EQ(RoleName(RaftInfo::Role::kUnavailable), "unavailable");
}

TEST_F(RaftNodeTest, CreateRejectsBadOptions) {
  TestHooks hooks;
  RaftNodeOptions o = Options();
  o.heartbeat_timeout_ms = o.election_timeout_ms;
  EXPECT_EQ(RaftNode::Create(o, &hooks).status().code(), Code::kInvalidArgument);
  o = Options();
  o.node_id = 0;
  EXPECT_EQ(RaftNode::Create(o, &hooks).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(RaftNode::Create(Options(), nullptr).status().code(), Code::kInvalidArgument);
}

TEST_F(RaftNodeTest, SingleVoterLeadsAndAppliesInOrder) {
  TestHooks hooks;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<bool> leadership;  // guarded by mu
  int ticks = 0;                 // guarded by mu
  auto node = StartNode(Options(), &hooks, [&](RaftNode& n) {
    n.SetLeadershipHandler([&](bool is_leader) {
      std::lock_guard<std::mutex> lock(mu);
      leadership.push_back(is_leader);
      cv.notify_all();
    });
    n.SetTickHandler(5, [&] {
      std::lock_guard<std::mutex> lock(mu);
      ++ticks;
      cv.notify_all();
    });
  });
  ASSERT_NE(node, nullptr);

  RaftInfo info = RunOnLoop(*node, [&] { return node->Info(); });
  EXPECT_EQ(info.role, RaftInfo::Role::kLeader);
  EXPECT_EQ(info.leader_id, 1u);
  EXPECT_EQ(info.leader_address, Address(port_));
  EXPECT_EQ(info.voters, 1u);
  EXPECT_GE(info.term, 1u);
  EXPECT_TRUE(RunOnLoop(*node, [&] { return node->IsLeader(); }));

  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kDeadline, [&] { return !leadership.empty() && ticks >= 3; }));
    EXPECT_EQ(leadership, std::vector<bool>{true});
  }

  constexpr int kN = 1000;
  ProposeLog log;
  ProposeAll(*node, log, 0, kN);

  // Callbacks: all OK, in proposal order, with increasing indexes and the
  // output of their own entry.
  ASSERT_EQ(log.records.size(), static_cast<size_t>(kN));
  uint64_t prev = 0;
  for (int i = 0; i < kN; ++i) {
    const auto& [n, r] = log.records[i];
    EXPECT_EQ(n, i);
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_GT(r.index, prev);
    prev = r.index;
    ASSERT_TRUE(r.has_output);
    EXPECT_EQ(r.output_index, r.index);
    EXPECT_EQ(r.output_payload, Payload(i));
  }

  info = RunOnLoop(*node, [&] { return node->Info(); });
  EXPECT_EQ(info.last_applied, prev);
  EXPECT_GE(info.commit_index, prev);
  // Every proposal went through a timed append (several per append when
  // they queued behind a write), with its payload's bytes.
  const LogAppendStats& appends = info.log_appends;
  EXPECT_GE(appends.entries, static_cast<uint64_t>(kN));
  EXPECT_GE(appends.bytes, kN * Payload(0).size());
  EXPECT_GE(appends.latency.count(), 1u);
  EXPECT_LE(appends.latency.count(), appends.entries);
  EXPECT_GT(appends.latency.sum_seconds(), 0.0);
  EXPECT_EQ(appends.latency.CumulativeCount(LatencyHistogram::kUpperBoundsUs.size()),
            appends.latency.count());

  node->Stop();
  // The hooks saw exactly the proposals, in order, at the indexes reported.
  ASSERT_EQ(hooks.entries.size(), static_cast<size_t>(kN));
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(hooks.entries[i].first, log.records[i].second.index);
    EXPECT_EQ(hooks.entries[i].second, Payload(i));
  }
  EXPECT_EQ(hooks.order_violations, 0);
  EXPECT_EQ(TestOutput::live.load(), 0);
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(leadership, (std::vector<bool>{true, false}));
  }
}

TEST_F(RaftNodeTest, RestartReplaysLog) {
  constexpr int kN = 300;
  TestHooks before;
  {
    auto node = StartNode(Options(), &before);
    ASSERT_NE(node, nullptr);
    ProposeLog log;
    ProposeAll(*node, log, 0, kN);
    node->Stop();
  }
  ASSERT_EQ(before.entries.size(), static_cast<size_t>(kN));

  TestHooks after;
  auto node = StartNode(Options(), &after);
  ASSERT_NE(node, nullptr);
  // Start() returned: the whole log has been replayed already. The empty
  // closure only orders our reads after the loop thread's writes.
  RunOnLoop(*node, [] {});
  EXPECT_EQ(after.restores, 0);
  EXPECT_EQ(after.entries, before.entries);
  EXPECT_EQ(after.order_violations, 0);
  // Outputs of replayed entries (no local proposer) were freed by the adapter.
  EXPECT_EQ(TestOutput::live.load(), 0);

  // The restarted node keeps going where the log ended.
  ProposeLog log;
  ProposeAll(*node, log, kN, 10);
  ASSERT_TRUE(log.records[0].second.status.ok());
  EXPECT_EQ(log.records[0].second.index, before.entries.back().first + 1);
  node->Stop();
  EXPECT_EQ(after.entries.size(), static_cast<size_t>(kN + 10));
}

TEST_F(RaftNodeTest, SnapshotAndRestore) {
  RaftNodeOptions options = Options();
  options.snapshot_threshold = 64;
  options.snapshot_trailing = 16;

  // libraft considers a snapshot only right after applying entries, and not
  // while the previous one is still being written, so how many a burst
  // produces depends on timing. Propose in rounds until at least two have
  // been taken (and at least 500 entries proposed).
  constexpr int kRound = 50;
  int proposed = 0;
  TestHooks before;
  {
    auto node = StartNode(options, &before);
    ASSERT_NE(node, nullptr);
    while (proposed < 5000) {
      ProposeLog log;
      ProposeAll(*node, log, proposed, kRound);
      for (const auto& [n, r] : log.records) ASSERT_TRUE(r.status.ok()) << r.status.ToString();
      proposed += kRound;
      if (proposed >= 500 && RunOnLoop(*node, [&] { return before.snapshots_taken; }) >= 2) break;
    }
    node->Stop();
  }
  ASSERT_EQ(before.entries.size(), static_cast<size_t>(proposed));
  EXPECT_GE(before.snapshots_taken, 2);

  TestHooks after;
  auto node = StartNode(options, &after);
  ASSERT_NE(node, nullptr);
  RunOnLoop(*node, [] {});
  EXPECT_EQ(after.restores, 1);
  EXPECT_GT(after.restored_index, 0u);
  EXPECT_EQ(after.entries, before.entries);  // snapshot + replayed tail
  EXPECT_EQ(after.order_violations, 0);
  EXPECT_EQ(TestOutput::live.load(), 0);

  // Indexes continue correctly after a restore.
  ProposeLog log;
  ProposeAll(*node, log, proposed, 100);
  uint64_t expected = before.entries.back().first + 1;
  for (const auto& [n, r] : log.records) {
    ASSERT_TRUE(r.status.ok());
    EXPECT_EQ(r.index, expected);
    EXPECT_EQ(r.output_index, expected);
    ++expected;
  }
  node->Stop();
  EXPECT_EQ(after.order_violations, 0);
}

TEST_F(RaftNodeTest, IdleCompactionSnapshotsOnceAfterABurst) {
  RaftNodeOptions options = Options();
  options.idle_compaction_ms = 100;
  options.idle_compaction_min_entries = 40;
  options.idle_compaction_trailing = 4;
  TestHooks hooks;
  auto node = StartNode(options, &hooks);
  ASSERT_NE(node, nullptr);
  ProposeLog log;
  ProposeAll(*node, log, 0, 60);  // well below snapshot_threshold (65 536)
  for (const auto& [n, r] : log.records) ASSERT_TRUE(r.status.ok());
  // Idle now: one snapshot follows without any further proposal.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (RunOnLoop(*node, [&] { return hooks.snapshots_taken; }) == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_EQ(RunOnLoop(*node, [&] { return hooks.snapshots_taken; }), 1);
  // A lone node keeps no trailing entries: the in-memory log empties (and
  // libraft frees its entry array) once the snapshot is written.
  auto in_memory = [&] {
    return RunOnLoop(*node, [&] { return node->Info().log_entries_in_memory; });
  };
  while (in_memory() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(in_memory(), 0u);
  // libraft's reference table (256 buckets of 32 bytes at least) is all
  // unused buckets now: its inner pages went back to the OS.
  EXPECT_GE(RunOnLoop(*node, [&] { return node->Info().idle_pages_released; }), 1u);
  // The configured threshold is back: a few more entries take no snapshot
  // (with the lowered one, each apply would take one, synchronously).
  ProposeLog more;
  ProposeAll(*node, more, 60, 10);
  for (const auto& [n, r] : more.records) ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(RunOnLoop(*node, [&] { return hooks.snapshots_taken; }), 1);
  // ...and so is the configured trailing count: no entry is dropped early.
  EXPECT_EQ(in_memory(), 10u);
  node->Stop();

  // The compacted log restores to the same state.
  TestHooks after;
  auto again = StartNode(options, &after);
  ASSERT_NE(again, nullptr);
  RunOnLoop(*again, [] {});
  EXPECT_EQ(after.restores, 1);
  EXPECT_EQ(after.entries, hooks.entries);
  again->Stop();
}

TEST_F(RaftNodeTest, PostRunsInFifoOrderFromManyThreads) {
  TestHooks hooks;
  auto node = StartNode(Options(), &hooks);
  ASSERT_NE(node, nullptr);

  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::vector<std::vector<int>> seen(kThreads);  // loop thread only
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) node->Post([&seen, t, i] { seen[t].push_back(i); });
    });
  }
  for (auto& th : threads) th.join();
  RunOnLoop(*node, [] {});  // FIFO: everything posted before has run
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) ASSERT_EQ(seen[t][i], i);
  }
}

// Defer() runs after the closures being run now and before later Posts, in
// FIFO order, including work deferred by deferred work; from a tick handler
// (outside any Post) it runs too.
TEST_F(RaftNodeTest, DeferRunsOnceTheWorkInHandIsDone) {
  TestHooks hooks;
  std::atomic<int> ticks_deferred{0};
  RaftNode* raw = nullptr;
  auto node = StartNode(Options(), &hooks, [&](RaftNode& n) {
    raw = &n;
    n.SetTickHandler(5, [&] {
      if (ticks_deferred.load() == 0) raw->Defer([&] { ticks_deferred.store(1); });
    });
  });
  ASSERT_NE(node, nullptr);

  std::vector<std::string> seen;  // loop thread only
  RunOnLoop(*node, [&] {
    node->Post([&] { seen.push_back("later post"); });
    node->Defer([&] {
      seen.push_back("deferred 1");
      node->Defer([&] { seen.push_back("deferred by deferred"); });
    });
    node->Defer([&] { seen.push_back("deferred 2"); });
    seen.push_back("post");
  });
  RunOnLoop(*node, [] {});  // the later post has run
  EXPECT_EQ(seen, (std::vector<std::string>{"post", "deferred 1", "deferred 2",
                                            "deferred by deferred", "later post"}));

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ticks_deferred.load() == 0 && std::chrono::steady_clock::now() < deadline) {
    RunOnLoop(*node, [] {});
  }
  EXPECT_EQ(ticks_deferred.load(), 1) << "work deferred by a tick handler never ran";
}

// Regression test for a libraft 0.15 crash: raft_close with two or more leader
// appends still queued for disk segfaulted in refsDecr (appendLeaderCb ->
// removeSuffix). Stop() now lets queued appends reach the disk first.
TEST_F(RaftNodeTest, StopWithQueuedAppendsDoesNotCrash) {
  TestHooks hooks;
  auto node = StartNode(Options(), &hooks);
  ASSERT_NE(node, nullptr);

  constexpr int kN = 2000;
  ProposeLog log;
  std::promise<void> proposed;
  node->Post([&] {
    const std::string big(512, 'x');
    for (int i = 0; i < kN; ++i) node->Propose(big + std::to_string(i), log.Callback(i));
    proposed.set_value();
    // Wait (bounded) until Stop() has queued its close request: a Post that
    // is dropped on the spot means Stop() has started. The close request then
    // runs right after this closure, while most entries are still in flight.
    auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (std::chrono::steady_clock::now() < deadline) {
      auto dropped = std::make_shared<std::atomic<bool>>(false);
      struct Guard {
        std::shared_ptr<std::atomic<bool>> flag;
        ~Guard() { *flag = true; }
      };
      auto guard = std::make_shared<Guard>(Guard{dropped});
      node->Post([guard] {});
      // Only the queued copy (if any) keeps the guard alive now. Accepted
      // closures cannot run before this one returns.
      guard.reset();
      if (*dropped) break;
      std::this_thread::yield();
    }
  });
  proposed.get_future().wait();
  node->Stop();

  ASSERT_EQ(log.records.size(),
            static_cast<size_t>(kN));  // each exactly once, before Stop returned
  int failed = 0;
  for (const auto& [n, r] : log.records) {
    if (r.status.ok()) {
      EXPECT_GT(r.index, 0u);
      continue;
    }
    ++failed;
    EXPECT_EQ(r.status.code(), Code::kUnavailable) << r.status.ToString();
    EXPECT_EQ(r.index, 0u);
    EXPECT_FALSE(r.has_output);
  }
  EXPECT_EQ(TestOutput::live.load(), 0);

  node->Stop();  // idempotent
  bool ran = false;
  node->Post([&ran] { ran = true; });  // dropped after Stop
  node->Stop();
  EXPECT_FALSE(ran);
  node.reset();  // destructor calls Stop() again

  // Whatever was durably appended before the close is applied on restart; the
  // node comes back cleanly.
  TestHooks after;
  auto again = StartNode(Options(), &after);
  ASSERT_NE(again, nullptr);
  RunOnLoop(*again, [] {});
  EXPECT_GE(after.entries.size(), static_cast<size_t>(kN - failed));
  EXPECT_EQ(after.order_violations, 0);
  again->Stop();
  EXPECT_EQ(TestOutput::live.load(), 0);
}

// Proposals that cannot commit (the only other voter is gone) fail with a
// non-OK status when the node stops; nothing leaks. Stop is idempotent.
TEST_F(RaftNodeTest, StopFailsUncommittedProposals) {
  VoterGroup group(2);
  // The leader keeps leading this long without hearing from the follower.
  Result<int> elected = group.Start(/*election_timeout_ms=*/500, /*heartbeat_timeout_ms=*/20);
  ASSERT_TRUE(elected.ok()) << elected.status().ToString();
  const int l = *elected;
  auto& nodes = group.nodes;
  nodes[1 - l]->Stop();  // quorum gone; the leader has not noticed yet

  constexpr int kN = 100;
  ProposeLog log;
  std::promise<void> proposed;
  nodes[l]->Post([&] {
    for (int i = 0; i < kN; ++i) nodes[l]->Propose(Payload(i), log.Callback(i));
    proposed.set_value();
  });
  proposed.get_future().wait();
  nodes[l]->Stop();
  ASSERT_EQ(log.records.size(), static_cast<size_t>(kN));
  for (const auto& [n, r] : log.records) {
    ASSERT_FALSE(r.status.ok()) << n;
    // UNAVAILABLE: failed by the close. MAYBE_APPLIED: the leader stepped
    // down first (slow machine); both say "not known to be applied".
    EXPECT_TRUE(r.status.code() == Code::kUnavailable || r.status.code() == Code::kMaybeApplied)
        << r.status.ToString();
    EXPECT_EQ(r.index, 0u);
    EXPECT_FALSE(r.has_output);
  }
  EXPECT_EQ(TestOutput::live.load(), 0);
  nodes[l]->Stop();
  nodes.clear();
}

// Three voters in one process: an elected leader replicates; followers apply
// entries they did not propose (their outputs are freed by the adapter) at the
// same indexes; a follower refuses proposals with NOT_LEADER.
TEST_F(RaftNodeTest, ThreeVotersReplicate) {
  constexpr int kVoters = 3;
  VoterGroup group(kVoters);
  Result<int> elected = group.Start(/*election_timeout_ms=*/150, /*heartbeat_timeout_ms=*/15);
  ASSERT_TRUE(elected.ok()) << elected.status().ToString();
  const int l = *elected;
  auto& nodes = group.nodes;
  auto& hooks = group.hooks;
  const auto& peers = group.peers;
  const int follower = (l + 1) % kVoters;
  RaftInfo info = RunOnLoop(*nodes[l], [&] { return nodes[l]->Info(); });
  EXPECT_EQ(info.role, RaftInfo::Role::kLeader);
  EXPECT_EQ(info.voters, 3u);

  ProposeLog refused;
  nodes[follower]->Post([&] { nodes[follower]->Propose("x", refused.Callback(0)); });
  ASSERT_TRUE(refused.WaitFor(1));
  EXPECT_EQ(refused.records[0].second.status.code(), Code::kNotLeader);

  constexpr int kN = 200;
  ProposeLog log;
  ProposeAll(*nodes[l], log, 0, kN);
  for (const auto& [n, r] : log.records) ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  for (int i = 0; i < kVoters; ++i) ASSERT_TRUE(hooks[i].WaitApplied(kN)) << "node " << i;
  RaftInfo finfo = RunOnLoop(*nodes[follower], [&] { return nodes[follower]->Info(); });
  EXPECT_EQ(finfo.role, RaftInfo::Role::kFollower);
  EXPECT_EQ(finfo.leader_id, peers[l].id);
  EXPECT_EQ(finfo.leader_address, peers[l].address);

  for (auto& node : nodes) node->Stop();
  for (int i = 0; i < kVoters; ++i) {
    EXPECT_EQ(hooks[i].entries, hooks[l].entries) << "node " << i;
    EXPECT_EQ(hooks[i].order_violations, 0);
  }
  ASSERT_EQ(hooks[l].entries.size(), static_cast<size_t>(kN));
  for (int i = 0; i < kN; ++i) EXPECT_EQ(hooks[l].entries[i].first, log.records[i].second.index);
  EXPECT_EQ(TestOutput::live.load(), 0);
}

// Runs an asynchronous DoneCallback operation on the loop thread and waits
// for its status.
Status RunDone(RaftNode& node, const std::function<void(DoneCallback)>& op) {
  auto promise = std::make_shared<std::promise<Status>>();
  auto future = promise->get_future();
  node.Post([&op, promise] { op([promise](Status st) { promise->set_value(std::move(st)); }); });
  if (future.wait_for(kDeadline) != std::future_status::ready) {
    return Status(Code::kTimeout, "callback never ran");
  }
  return future.get();
}

TEST_F(RaftNodeTest, BarrierAndMembershipChanges) {
  TestHooks hooks;
  auto node = StartNode(Options(), &hooks);
  ASSERT_NE(node, nullptr);
  ProposeLog log;
  node->Post([&] { node->Propose(Payload(1), log.Callback(1)); });
  // The barrier completes after the entry before it was applied.
  ASSERT_TRUE(RunDone(*node, [&](DoneCallback cb) { node->Barrier(std::move(cb)); }).ok());
  EXPECT_EQ(RunOnLoop(*node, [&] { return hooks.entries.size(); }), 1u);

  // A joining node: no bootstrap, no configuration, not a leader.
  TempDir joiner_dir;
  TestHooks joiner_hooks;
  RaftNodeOptions jo;
  jo.node_id = 2;
  jo.raft_address = Address(PickFreePort());
  jo.data_dir = joiner_dir.path;
  jo.join = true;
  jo.election_timeout_ms = 300;
  jo.heartbeat_timeout_ms = 30;
  auto created = RaftNode::Create(jo, &joiner_hooks);
  ASSERT_TRUE(created.ok());
  std::unique_ptr<RaftNode> joiner = std::move(created.value());
  ASSERT_TRUE(joiner->Start().ok());
  EXPECT_TRUE(RunOnLoop(*joiner, [&] { return joiner->Members(); }).empty());
  EXPECT_EQ(RunDone(*joiner, [&](DoneCallback cb) { joiner->Barrier(std::move(cb)); }).code(),
            Code::kNotLeader);

  auto add = [&](uint64_t id, const std::string& address) {
    return RunDone(*node, [&](DoneCallback cb) { node->AddMember(id, address, std::move(cb)); });
  };
  auto assign = [&](uint64_t id, RaftMember::Role role) {
    return RunDone(*node, [&](DoneCallback cb) { node->Assign(id, role, std::move(cb)); });
  };
  ASSERT_TRUE(add(2, jo.raft_address).ok());
  EXPECT_EQ(add(2, Address(PickFreePort())).code(), Code::kAlreadyExists);
  EXPECT_EQ(assign(2, RaftMember::Role::kSpare).code(), Code::kInvalidArgument);
  ASSERT_TRUE(assign(2, RaftMember::Role::kVoter).ok());
  auto members = RunOnLoop(*node, [&] { return node->Members(); });
  ASSERT_EQ(members.size(), 2u);
  EXPECT_EQ(members[1].id, 2u);
  EXPECT_EQ(members[1].role, RaftMember::Role::kVoter);
  // The promoted node caught up with the log.
  EXPECT_TRUE(joiner_hooks.WaitApplied(1));
  EXPECT_EQ(RunDone(*node, [&](DoneCallback cb) { node->RemoveMember(7, std::move(cb)); }).code(),
            Code::kNotFound);
  ASSERT_TRUE(RunDone(*node, [&](DoneCallback cb) { node->RemoveMember(2, std::move(cb)); }).ok());
  EXPECT_EQ(RunOnLoop(*node, [&] { return node->Members(); }).size(), 1u);
  joiner->Stop();
  node->Stop();
}

// A lone voter serves a linearizable read at once, without a log entry; in
// a 3-voter group reads that arrive together share one barrier entry.
TEST_F(RaftNodeTest, ReadBarrierIsFreeAloneAndSharedInAGroup) {
  TestHooks hooks;
  auto node = StartNode(Options(), &hooks);
  ASSERT_NE(node, nullptr);
  ProposeLog log;
  node->Post([&] { node->Propose(Payload(1), log.Callback(1)); });
  ASSERT_TRUE(log.WaitFor(1));
  const auto [before, ran_inline, after] = RunOnLoop(*node, [&] {
    const uint64_t b = node->Info().commit_index;
    bool ran = false;
    node->ReadBarrier([&](Status st) { ran = st.ok(); });
    return std::make_tuple(b, ran, node->Info().commit_index);
  });
  EXPECT_TRUE(ran_inline);
  EXPECT_EQ(after, before);  // no barrier entry
  node->Stop();

  VoterGroup group(3);
  Result<int> elected = group.Start(/*election_timeout_ms=*/150, /*heartbeat_timeout_ms=*/15);
  ASSERT_TRUE(elected.ok()) << elected.status().ToString();
  RaftNode& leader = *group.nodes[*elected];
  ASSERT_TRUE(RunDone(leader, [&](DoneCallback cb) { leader.Barrier(std::move(cb)); }).ok());
  const uint64_t last_before = RunOnLoop(leader, [&] { return leader.Info().commit_index; });
  auto results = std::make_shared<std::vector<Status>>();
  auto done = std::make_shared<std::promise<void>>();
  leader.Post([&leader, results, done] {
    for (int i = 0; i < 3; ++i) {
      leader.ReadBarrier([results, done](Status st) {
        results->push_back(std::move(st));
        if (results->size() == 3) done->set_value();
      });
    }
  });
  ASSERT_EQ(done->get_future().wait_for(kDeadline), std::future_status::ready);
  for (const Status& st : *results) EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(RunOnLoop(leader, [&] { return leader.Info().commit_index; }), last_before + 1);
  for (auto& n : group.nodes) n->Stop();
}

TEST_F(RaftNodeTest, StartFailsOnMissingDataDir) {
  TestHooks hooks;
  RaftNodeOptions o = Options();
  o.data_dir = dir_ + "/does-not-exist";
  auto node = RaftNode::Create(o, &hooks);
  ASSERT_TRUE(node.ok());
  Status st = (*node)->Start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(o.data_dir), std::string::npos) << st.ToString();
  (*node)->Stop();
  (*node)->Stop();
}

TEST_F(RaftNodeTest, StartFailsWhenPortInUse) {
  // Hold the port with a listening socket.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);

  TestHooks hooks;
  RaftNodeOptions o = Options();
  o.raft_address = Address(ntohs(addr.sin_port));
  auto node = RaftNode::Create(o, &hooks);
  ASSERT_TRUE(node.ok());
  Status st = (*node)->Start();
  ::close(fd);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(o.raft_address), std::string::npos) << st.ToString();
  EXPECT_EQ(TestOutput::live.load(), 0);
}

// ---------------------------------------------------------------------------
// libraft 0.15 sends an AppendEntries result to {id 0, address NULL} when its
// write completes in a term whose leader it does not know yet, and its uv io
// dies in strlen(NULL) (raft_node_io.cc). The adapter refuses such a send.

}  // namespace

struct RaftNodeTestAccess {
  static auto& Impl(RaftNode& node) { return *node.impl_; }
};

namespace {

struct raft_message ResultToUnknownLeader() {
  struct raft_message msg {};
  msg.type = RAFT_IO_APPEND_ENTRIES_RESULT;
  msg.server_id = 0;
  msg.server_address = nullptr;
  msg.append_entries_result.term = 2;
  msg.append_entries_result.last_log_index = 7;
  return msg;
}

TEST(LibraftUvTest, SendToNoAddressCrashesTheUvIo) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir dir;
  EXPECT_DEATH(
      {
        uv_loop_t loop;
        uv_loop_init(&loop);
        struct raft_uv_transport transport {};
        raft_uv_tcp_init(&transport, &loop);
        struct raft_io io {};
        raft_uv_init(&io, &loop, dir.path.c_str(), &transport);
        io.init(&io, 1, "127.0.0.1:9");
        struct raft_message msg = ResultToUnknownLeader();
        struct raft_io_send req {};
        io.send(&io, &req, &msg, nullptr);
      },
      "");
}

TEST_F(RaftNodeTest, SendToNoAddressFailsInsteadOfCrashing) {
  TestHooks hooks;
  auto node = StartNode(Options(), &hooks);
  ASSERT_NE(node, nullptr);
  std::promise<int> sent;
  node->Post([&] {
    auto& d = RaftNodeTestAccess::Impl(*node);
    struct raft_message msg = ResultToUnknownLeader();
    struct raft_io_send req {};
    sent.set_value(d.io.send(&d.io, &req, &msg, [](struct raft_io_send*, int) {}));
  });
  EXPECT_EQ(sent.get_future().get(), RAFT_NOCONNECTION);
  // The node still works.
  ProposeLog log;
  ProposeAll(*node, log, 0, 3);
}

}  // namespace
}  // namespace latchkey::replication
