#include "server/request_inbox.h"

#include <gtest/gtest.h>

namespace latchkey::server {
namespace {

using Next = RequestInbox::Next;

RequestInbox::Item Req(uint64_t conn, uint64_t id) {
  auto r = std::make_shared<v1::Request>();
  r->set_id(id);
  return {conn, r};
}

std::vector<uint64_t> Ids(const std::vector<RequestInbox::Item>& items) {
  std::vector<uint64_t> out;
  for (const auto& [conn, req] : items) out.push_back(conn * 100 + req->id());
  return out;
}

// One request per pass: flush at once, except for the periodic probe.
void SinglePass(RequestInbox& inbox, uint64_t id, bool* probed) {
  const Next next = inbox.Add(Req(1, id));
  ASSERT_NE(next, Next::kNothing);
  *probed = next == Next::kFlushLater;
  EXPECT_EQ(inbox.Take(/*end_of_pass=*/*probed).size(), 1u);
}

// Gets the inbox into batching: single requests until the probe, which
// finds a second one in the same pass.
void BatchThroughAProbe(RequestInbox& inbox) {
  bool probed = false;
  while (!probed) {
    const Next next = inbox.Add(Req(1, 1));
    probed = next == Next::kFlushLater;
    if (probed) inbox.Add(Req(2, 1));
    inbox.Take(probed);
  }
}

TEST(RequestInboxTest, StartsFlushingAtOnceAndKeepsOrder) {
  RequestInbox inbox;
  EXPECT_EQ(inbox.Add(Req(1, 1)), Next::kFlushNow);
  // Until the caller takes, later requests ride along.
  EXPECT_EQ(inbox.Add(Req(2, 1)), Next::kNothing);
  EXPECT_EQ(inbox.Add(Req(1, 2)), Next::kNothing);
  EXPECT_EQ(Ids(inbox.Take(false)), (std::vector<uint64_t>{101, 201, 102}));
  EXPECT_TRUE(inbox.Take(false).empty());
  EXPECT_FALSE(inbox.batching());
}

TEST(RequestInboxTest, ProbesThenBatchesWhileAPassBringsSeveralRequests) {
  RequestInbox inbox;
  bool probed = false;
  int immediate = 0;
  for (uint64_t id = 1; !probed; ++id) {
    SinglePass(inbox, id, &probed);
    if (!probed) ++immediate;
    ASSERT_LE(immediate, RequestInbox::kProbeEvery);
  }
  EXPECT_EQ(immediate, RequestInbox::kProbeEvery - 1);
  EXPECT_FALSE(inbox.batching());  // the probe carried one request

  // The next probe finds a busy pass: three connections' requests.
  for (int i = 0; i < RequestInbox::kProbeEvery - 1; ++i) SinglePass(inbox, 1, &probed);
  ASSERT_EQ(inbox.Add(Req(1, 1)), Next::kFlushLater);
  EXPECT_EQ(inbox.Add(Req(2, 1)), Next::kNothing);
  EXPECT_EQ(inbox.Add(Req(3, 1)), Next::kNothing);
  EXPECT_EQ(inbox.Take(true).size(), 3u);
  EXPECT_TRUE(inbox.batching());
  // Now every first request defers.
  EXPECT_EQ(inbox.Add(Req(1, 2)), Next::kFlushLater);
  EXPECT_EQ(inbox.Take(true).size(), 1u);
  EXPECT_TRUE(inbox.batching());
}

TEST(RequestInboxTest, StopsDeferringAfterPassesOfOneRequest) {
  RequestInbox inbox;
  BatchThroughAProbe(inbox);
  ASSERT_TRUE(inbox.batching());
  for (int i = 0; i < RequestInbox::kSinglesToStop; ++i) {
    EXPECT_TRUE(inbox.batching());
    ASSERT_EQ(inbox.Add(Req(1, 1)), Next::kFlushLater);
    inbox.Take(true);
  }
  EXPECT_FALSE(inbox.batching());
  EXPECT_EQ(inbox.Add(Req(1, 1)), Next::kFlushNow);
  inbox.Take(false);
}

TEST(RequestInboxTest, OtherFlushesDoNotCountAsPasses) {
  RequestInbox inbox;
  BatchThroughAProbe(inbox);
  ASSERT_TRUE(inbox.batching());
  // A flush before a connection closes takes one request; still batching.
  for (int i = 0; i < 2 * RequestInbox::kSinglesToStop; ++i) {
    inbox.Add(Req(1, 1));
    EXPECT_EQ(inbox.Take(false).size(), 1u);
  }
  EXPECT_TRUE(inbox.batching());
}

}  // namespace
}  // namespace latchkey::server
