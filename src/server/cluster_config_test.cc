#include "server/cluster_config.h"

#include <gtest/gtest.h>

namespace latchkey::server {
namespace {

TEST(ParsePeersTest, ParsesThreeNodes) {
  auto peers = ParsePeers("1=127.0.0.1:7412@127.0.0.1:7411, 2=h2:7412@h2:7411,3=h3:1@h3:2");
  ASSERT_TRUE(peers.ok()) << peers.status().ToString();
  ASSERT_EQ(peers->size(), 3u);
  EXPECT_EQ((*peers)[0].id, 1u);
  EXPECT_EQ((*peers)[0].raft_address, "127.0.0.1:7412");
  EXPECT_EQ((*peers)[0].client_address, "127.0.0.1:7411");
  EXPECT_EQ((*peers)[1].client_address, "h2:7411");
}

TEST(ParsePeersTest, RejectsBadItems) {
  for (const char* bad : {"", "1=a:1", "x=a:1@b:2", "0=a:1@b:2", "1=a:1@b:2,1=c:1@d:2",
                          "1=a:1@b:2,2=a:1@d:2", "1=a@b:2", "1@a:1=b:2"}) {
    EXPECT_EQ(ParsePeers(bad).status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(ApplyPeersTest, TakesThisNodesAddresses) {
  ServerOptions o;
  o.node_id = 2;
  o.peers = *ParsePeers("1=a:1@a:2,2=b:1@b:2");
  ASSERT_TRUE(ApplyPeers(&o, false, false).ok());
  EXPECT_EQ(o.raft_address, "b:1");
  EXPECT_EQ(o.listen, "b:2");
  o.node_id = 3;
  EXPECT_FALSE(ApplyPeers(&o, false, false).ok());
  o.node_id = 1;
  o.raft_address = "z:9";
  EXPECT_FALSE(ApplyPeers(&o, false, true).ok());
}

}  // namespace
}  // namespace latchkey::server
