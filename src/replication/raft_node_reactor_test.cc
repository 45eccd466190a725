// RaftNode as a Reactor (common/reactor.h): descriptor watches and one-shot
// timers on a real single-voter node's loop.
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>

#include "replication/raft_node.h"
#include "replication/raft_node_test_util.h"
#include "testlib/server_process.h"

namespace latchkey::replication {
namespace {

using namespace std::chrono_literals;

class ReactorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    node_ = StartSingleVoter(dir_.path(), &hooks_);
    ASSERT_NE(node_, nullptr);
    efd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ASSERT_GE(efd_, 0);
  }
  void TearDown() override {
    if (node_) node_->Stop();
    if (efd_ >= 0) ::close(efd_);
  }

  void Signal() {
    const uint64_t one = 1;
    ASSERT_EQ(::write(efd_, &one, sizeof one), static_cast<ssize_t>(sizeof one));
  }

  latchkey::testing::TempDir dir_;
  NoHooks hooks_;
  std::unique_ptr<RaftNode> node_;
  int efd_ = -1;
};

TEST_F(ReactorTest, InLoopOnlyOnTheLoopThread) {
  EXPECT_FALSE(node_->InLoop());
  EXPECT_TRUE(RunOnLoop(*node_, [&] { return node_->InLoop(); }));
}

// A readable eventfd calls back on the loop until drained; a watch can
// remove itself from inside its callback, and then hears nothing more.
TEST_F(ReactorTest, WatchFdCallsBackAndCanUnwatchItself) {
  std::atomic<int> calls{0};
  std::atomic<int> off_loop{0};
  Reactor::WatchId id = 0;
  auto watched = RunOnLoop(*node_, [&] {
    return node_->WatchFd(efd_, Reactor::kReadable, [&](int events) {
      if (!node_->InLoop()) ++off_loop;
      EXPECT_TRUE(events & Reactor::kReadable);
      uint64_t v = 0;
      EXPECT_EQ(::read(efd_, &v, sizeof v), static_cast<ssize_t>(sizeof v));
      if (++calls == 2) node_->UnwatchFd(id);
    });
  });
  ASSERT_TRUE(watched.ok()) << watched.status().ToString();
  id = *watched;
  Signal();
  ASSERT_TRUE(latchkey::testing::WaitFor([&] { return calls.load() == 1; }));
  Signal();
  ASSERT_TRUE(latchkey::testing::WaitFor([&] { return calls.load() == 2; }));
  Signal();  // unwatched: stays unread
  RunOnLoop(*node_, [] {});
  RunOnLoop(*node_, [] {});
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(off_loop.load(), 0);
  uint64_t v = 0;
  EXPECT_EQ(::read(efd_, &v, sizeof v), static_cast<ssize_t>(sizeof v)) << "the loop read it";
  RunOnLoop(*node_, [&] { node_->UnwatchFd(id); });  // unknown by now: ignored
}

// UpdateFd(0) pauses a level-triggered watch; other events resume it.
TEST_F(ReactorTest, UpdateFdPausesAndResumes) {
  std::atomic<int> calls{0};
  auto watched = RunOnLoop(*node_, [&] {
    return node_->WatchFd(efd_, Reactor::kWritable, [&](int events) {
      EXPECT_TRUE(events & Reactor::kWritable);
      ++calls;
    });
  });
  ASSERT_TRUE(watched.ok());
  const Reactor::WatchId id = *watched;
  ASSERT_TRUE(latchkey::testing::WaitFor([&] { return calls.load() >= 3; }));  // always writable
  const int paused_at = RunOnLoop(*node_, [&] {
    node_->UpdateFd(id, 0);
    return calls.load();
  });
  RunOnLoop(*node_, [] {});
  RunOnLoop(*node_, [] {});
  EXPECT_EQ(calls.load(), paused_at);
  RunOnLoop(*node_, [&] { node_->UpdateFd(id, Reactor::kWritable); });
  EXPECT_TRUE(latchkey::testing::WaitFor([&] { return calls.load() > paused_at; }));
  RunOnLoop(*node_, [&] { node_->UnwatchFd(id); });
}

TEST_F(ReactorTest, RunAfterFiresOnceOnTheLoop) {
  std::atomic<int> fired{0};
  std::atomic<bool> on_loop{false};
  const auto t0 = std::chrono::steady_clock::now();
  RunOnLoop(*node_, [&] {
    node_->RunAfter(20, [&] {
      on_loop = node_->InLoop();
      ++fired;
    });
  });
  ASSERT_TRUE(latchkey::testing::WaitFor([&] { return fired.load() == 1; }));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 15ms);
  EXPECT_TRUE(on_loop.load());
  RunOnLoop(*node_, [] {});
  EXPECT_EQ(fired.load(), 1);
}

// Watches and timers left open when the node stops are closed with it: Stop
// returns, their callbacks are destroyed without running.
TEST_F(ReactorTest, StopClosesLeftoverWatchesAndTimers) {
  auto sentinel = std::make_shared<int>(0);
  std::weak_ptr<int> alive = sentinel;
  std::atomic<int> timer_runs{0};
  RunOnLoop(*node_, [&, sentinel] {
    ASSERT_TRUE(node_->WatchFd(efd_, Reactor::kReadable, [sentinel](int) {}).ok());
    node_->RunAfter(60000, [sentinel, &timer_runs] { ++timer_runs; });
  });
  sentinel.reset();
  EXPECT_FALSE(alive.expired());
  node_->Stop();
  EXPECT_TRUE(alive.expired());
  EXPECT_EQ(timer_runs.load(), 0);
}

}  // namespace
}  // namespace latchkey::replication
