// Proposer on a real single-voter RaftNode (libraft, a temp data dir): which
// commands share a log entry, and when lazy commands are proposed.
#include "server/proposer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "core/state_machine.h"
#include "replication/raft_node.h"
#include "replication/raft_node_test_util.h"
#include "testlib/server_process.h"

namespace latchkey::server {
namespace {

namespace lv = log::v1;
constexpr auto kDeadline = std::chrono::seconds(20);

// Applies nothing: records each applied entry's commands (by name) and
// answers the proposer's callbacks with an OK result.
class EntryRecorder : public replication::StateMachineHooks {
 public:
  std::unique_ptr<replication::ApplyOutput> Apply(uint64_t, std::string_view data) override {
    lv::LogEntry entry;
    EXPECT_TRUE(entry.ParseFromArray(data.data(), static_cast<int>(data.size())));
    std::vector<std::string> names;
    for (const lv::Command& c : entry.commands()) names.push_back(c.acquire().name());
    if (proposer != nullptr) {
      core::CommandResult ok;
      for (Proposer::Done& d : proposer->TakeBatch(entry)) d(Status::Ok(), &ok);
    }
    std::lock_guard<std::mutex> lock(mu);
    if (!names.empty()) entries.push_back(std::move(names));
    cv.notify_all();
    return nullptr;
  }
  Result<std::string> TakeSnapshot() override { return std::string(); }
  Status Restore(std::string_view) override { return Status::Ok(); }

  // The command names of the first n entries that carried commands.
  std::vector<std::vector<std::string>> WaitEntries(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, kDeadline, [&] { return entries.size() >= n; });
    return entries;
  }

  Proposer* proposer = nullptr;  // loop thread
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::vector<std::string>> entries;
};

lv::Command Acquire(const std::string& name) {
  lv::Command c;
  c.mutable_acquire()->set_name(name);
  return c;
}

class ProposerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    node_ = replication::StartSingleVoter(dir_.path(), &hooks_);
    ASSERT_NE(node_, nullptr);
    proposer_ = std::make_unique<Proposer>(node_.get(), &clock_, /*nonce=*/7, /*max_batch=*/64);
    OnLoop([this] { hooks_.proposer = proposer_.get(); });
  }
  void TearDown() override {
    if (node_) node_->Stop();
  }

  // Runs fn on the loop thread and waits until it ran.
  template <typename Fn>
  void OnLoop(Fn fn) {
    replication::RunOnLoop(*node_, std::move(fn));
  }

  // Adds a command whose callback counts into answered_.
  void Add(const std::string& name, bool lazy) {
    proposer_->Add(
        Acquire(name),
        [this](const Status& st, const core::CommandResult*) {
          EXPECT_TRUE(st.ok()) << st.ToString();
          ++answered_;
        },
        lazy);
  }

  latchkey::testing::TempDir dir_;
  ManualClock clock_;
  EntryRecorder hooks_;
  std::unique_ptr<replication::RaftNode> node_;
  std::unique_ptr<Proposer> proposer_;
  int answered_ = 0;  // loop thread
};

TEST_F(ProposerTest, LazyCommandsWaitForTheNextProposal) {
  OnLoop([this] { Add("lazy-1", /*lazy=*/true); });
  // The loop has run its deferred work since: nothing was proposed.
  bool only_lazy = false;
  OnLoop([&] { only_lazy = proposer_->only_lazy_queued() && proposer_->in_flight_entries() == 0; });
  EXPECT_TRUE(only_lazy);
  OnLoop([this] {
    Add("lazy-2", /*lazy=*/true);
    Add("urgent", /*lazy=*/false);
  });
  auto entries = hooks_.WaitEntries(1);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0], (std::vector<std::string>{"lazy-1", "lazy-2", "urgent"}));
  int answered = 0;
  OnLoop([&] { answered = answered_; });
  EXPECT_EQ(answered, 3);
}

TEST_F(ProposerTest, ScheduleFlushProposesLazyCommandsAlone) {
  OnLoop([this] {
    Add("lazy", /*lazy=*/true);
    proposer_->ScheduleFlush();
  });
  auto entries = hooks_.WaitEntries(1);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0], (std::vector<std::string>{"lazy"}));
  bool queued = true;
  OnLoop([&] { queued = proposer_->only_lazy_queued(); });
  EXPECT_FALSE(queued);
}

TEST_F(ProposerTest, CommandsArrivingDuringAWriteWaitForIt) {
  // "first" is proposed and its write starts at once (libraft hands a
  // single voter's entry to the io inside raft_apply). "a" arrives while
  // that write is in progress: its deferred flush holds it back until the
  // write is done, since it could not reach the disk sooner.
  size_t in_flight = 0;
  int queued = -1;
  std::promise<void> checked;
  OnLoop([&] {
    Add("first", false);
    proposer_->Flush();
    Add("a", false);
    node_->Defer([&] {  // runs after the proposer's deferred flush
      in_flight = proposer_->in_flight_entries();
      queued = proposer_->queued().commands_size();
      checked.set_value();
    });
  });
  ASSERT_EQ(checked.get_future().wait_for(kDeadline), std::future_status::ready);
  EXPECT_EQ(in_flight, 1u);
  EXPECT_EQ(queued, 1);
  auto entries = hooks_.WaitEntries(2);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0], (std::vector<std::string>{"first"}));
  EXPECT_EQ(entries[1], (std::vector<std::string>{"a"}));
}

}  // namespace
}  // namespace latchkey::server
