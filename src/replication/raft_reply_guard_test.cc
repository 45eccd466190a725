// AppendReplyGuard (raft_reply_guard.h): the clamp applies only to a
// successful AppendEntries result sent while libraft processes an
// AppendEntries, and only lowers last_log_index to what that request covered.
// An adapter test: it includes raft.h through the guard's header.
#include "replication/raft_reply_guard.h"

#include <gtest/gtest.h>

namespace latchkey::replication {
namespace {

struct raft_message AppendEntries(raft_index prev, unsigned n) {
  struct raft_message m {};
  m.type = RAFT_IO_APPEND_ENTRIES;
  m.server_id = 1;
  m.append_entries.prev_log_index = prev;
  m.append_entries.n_entries = n;
  return m;
}

struct raft_message Result(raft_index last, raft_index rejected) {
  struct raft_message m {};
  m.type = RAFT_IO_APPEND_ENTRIES_RESULT;
  m.server_id = 1;
  m.append_entries_result.last_log_index = last;
  m.append_entries_result.rejected = rejected;
  return m;
}

TEST(AppendReplyGuardTest, ClampsASuccessToWhatTheRequestCovered) {
  AppendReplyGuard g;
  struct raft_message out {};
  // A heartbeat at prev 10 answered by a follower whose log runs to 14 with
  // entries of an older term: the leader may only learn 10.
  g.BeginRecv(AppendEntries(10, 0));
  ASSERT_TRUE(g.Fix(Result(14, 0), &out));
  EXPECT_EQ(out.append_entries_result.last_log_index, 10u);
  EXPECT_EQ(out.type, RAFT_IO_APPEND_ENTRIES_RESULT);
  g.EndRecv();
  // Entries 11..12 it already had: 12.
  g.BeginRecv(AppendEntries(10, 2));
  ASSERT_TRUE(g.Fix(Result(14, 0), &out));
  EXPECT_EQ(out.append_entries_result.last_log_index, 12u);
  g.EndRecv();
  EXPECT_EQ(g.clamped(), 2u);
}

TEST(AppendReplyGuardTest, LeavesEverythingElseAlone) {
  AppendReplyGuard g;
  struct raft_message out {};
  EXPECT_FALSE(g.Fix(Result(14, 0), &out));  // not inside a receive (async reply)
  g.BeginRecv(AppendEntries(10, 2));
  EXPECT_FALSE(g.Fix(Result(11, 0), &out));  // not past the request (entries not stored yet)
  EXPECT_FALSE(g.Fix(Result(12, 0), &out));
  EXPECT_FALSE(g.Fix(Result(14, 11), &out));       // a rejection
  EXPECT_FALSE(g.Fix(AppendEntries(3, 1), &out));  // not a result
  g.EndRecv();
  struct raft_message snap {};
  snap.type = RAFT_IO_INSTALL_SNAPSHOT;
  g.BeginRecv(snap);  // the result of an InstallSnapshot is libraft's to set
  EXPECT_FALSE(g.Fix(Result(200, 0), &out));
  g.EndRecv();
  EXPECT_EQ(g.clamped(), 0u);
}

}  // namespace
}  // namespace latchkey::replication
