// A GoogleTest fixture with one real single-node `latchkey` server on port 0
// and a helper to connect named clients to it. Shared by the integration
// tests; header-only, so tests that use it link latchkey_client themselves.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "latchkey/client.h"
#include "testlib/server_process.h"

namespace latchkey::testing {

class SingleServerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()) << "server did not start"; }

  std::unique_ptr<Client> Connect(const std::string& name,
                                  std::chrono::milliseconds ttl = std::chrono::seconds(10)) {
    ClientOptions o;
    o.endpoint = server_.endpoint();
    o.client_name = name;
    o.session_ttl = ttl;
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c.value()) : nullptr;
  }
  // Requests queued on `name` (0 if it cannot be read).
  size_t Waiters(Client& c, const std::string& name) {
    auto info = c.GetLock(name);
    return info.ok() ? info->waiters : 0;
  }

  TempDir dir_;
  ServerProcess server_{dir_.File("data")};
};

}  // namespace latchkey::testing
