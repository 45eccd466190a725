// TransferSendGuard (raft_transfer_send.h): a leadership transfer's
// TimeoutNow goes to the io with a request of the guard's own; its
// completion reaches libraft's callback only while the transfer lives, so a
// transfer freed before the io finishes the send is never touched again
// (libraft 0.15 use-after-free, nemesis seed 7305). An adapter test: it
// includes raft.h through the guard's header.
#include "replication/raft_transfer_send.h"

#include <gtest/gtest.h>

#include <memory>
#include <utility>
#include <vector>

namespace latchkey::replication {
namespace {

// A fake io: keeps the sends it was given until the test completes them.
struct FakeIo {
  std::vector<std::pair<struct raft_io_send*, raft_io_send_cb>> queued;
  int fail_with = 0;

  TransferSendGuard::SendFn Sender() {
    return [this](struct raft_io_send* req, raft_io_send_cb cb) {
      if (fail_with != 0) return fail_with;
      queued.emplace_back(req, cb);
      return 0;
    };
  }
  void CompleteAll(int status) {
    auto q = std::move(queued);
    queued.clear();
    for (auto& [req, cb] : q) cb(req, status);
  }
};

// What libraft's TimeoutNow callback sees.
struct Completion {
  struct raft_io_send* req = nullptr;
  int status = -1;
};
std::vector<Completion>* g_completions = nullptr;

void LibraftSendCb(struct raft_io_send* req, int status) {
  g_completions->push_back({req, status});
}

class TransferSendGuardTest : public ::testing::Test {
 protected:
  void SetUp() override { g_completions = &completions_; }
  void TearDown() override { g_completions = nullptr; }
  std::vector<Completion> completions_;
};

TEST_F(TransferSendGuardTest, ACompletionReachesLibraftWhileTheTransferLives) {
  TransferSendGuard guard;
  FakeIo io;
  auto transfer = std::make_unique<struct raft_transfer>();
  ASSERT_EQ(guard.Send(transfer.get(), &transfer->send, &LibraftSendCb, io.Sender()), 0);
  ASSERT_EQ(io.queued.size(), 1u);
  EXPECT_NE(io.queued[0].first, &transfer->send);  // the io got the guard's request
  EXPECT_EQ(guard.in_flight(), 1u);
  io.CompleteAll(RAFT_NOCONNECTION);
  ASSERT_EQ(completions_.size(), 1u);
  EXPECT_EQ(completions_[0].req, &transfer->send);  // libraft's own request, its status
  EXPECT_EQ(completions_[0].status, RAFT_NOCONNECTION);
  EXPECT_EQ(guard.in_flight(), 0u);
}

// The crash: the transfer timed out (its callback freed it) while the
// TimeoutNow was queued behind a partition; the io completes it later.
TEST_F(TransferSendGuardTest, ACompletionAfterTheTransferWasFreedIsDropped) {
  TransferSendGuard guard;
  FakeIo io;
  auto transfer = std::make_unique<struct raft_transfer>();
  ASSERT_EQ(guard.Send(transfer.get(), &transfer->send, &LibraftSendCb, io.Sender()), 0);
  guard.Detach(transfer.get());  // what the adapter's transfer callback does
  transfer.reset();
  io.CompleteAll(RAFT_CANCELED);
  EXPECT_TRUE(completions_.empty());
  EXPECT_EQ(guard.in_flight(), 0u);
}

TEST_F(TransferSendGuardTest, DetachOnlyDropsThatTransfersSends) {
  TransferSendGuard guard;
  FakeIo io;
  auto first = std::make_unique<struct raft_transfer>();
  auto second = std::make_unique<struct raft_transfer>();
  ASSERT_EQ(guard.Send(first.get(), &first->send, &LibraftSendCb, io.Sender()), 0);
  guard.Detach(first.get());
  first.reset();
  ASSERT_EQ(guard.Send(second.get(), &second->send, &LibraftSendCb, io.Sender()), 0);
  EXPECT_EQ(guard.in_flight(), 2u);
  io.CompleteAll(0);
  ASSERT_EQ(completions_.size(), 1u);
  EXPECT_EQ(completions_[0].req, &second->send);
  EXPECT_EQ(completions_[0].status, 0);
  EXPECT_EQ(guard.in_flight(), 0u);
}

TEST_F(TransferSendGuardTest, AFailedSendLeavesNothingBehind) {
  TransferSendGuard guard;
  FakeIo io;
  io.fail_with = RAFT_NOCONNECTION;
  auto transfer = std::make_unique<struct raft_transfer>();
  EXPECT_EQ(guard.Send(transfer.get(), &transfer->send, &LibraftSendCb, io.Sender()),
            RAFT_NOCONNECTION);
  EXPECT_EQ(guard.in_flight(), 0u);
  EXPECT_TRUE(completions_.empty());
}

}  // namespace
}  // namespace latchkey::replication
