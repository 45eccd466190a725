// The `latchkey` CLI against a real server.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "latchkey/client.h"
#include "latchkey/watch.h"
#include "testlib/cluster_process.h"
#include "testlib/server_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::LatchkeyBinary;
using testing::RunCommand;
using testing::ServerProcess;
using testing::TempDir;
using testing::WaitFor;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()); }
  std::vector<std::string> Lock(std::vector<std::string> args) {
    std::vector<std::string> argv = {LatchkeyBinary(), "lock", "-e", server_.endpoint()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  std::unique_ptr<Client> Connect() {
    ClientOptions o;
    o.endpoint = server_.endpoint();
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok());
    return std::move(c.value());
  }
  bool Held(Client& c, const std::string& name) {
    auto i = c.GetLock(name);
    return i.ok() && i->held;
  }

  TempDir dir_;
  ServerProcess server_{dir_.File("data")};
};

// GET over a fresh connection; the whole answer ("" if unreachable).
std::string HttpGet(const std::string& address, const std::string& path) {
  return testing::ExchangeOnLoopback(std::stoi(address.substr(address.rfind(':') + 1)),
                                     "GET " + path + " HTTP/1.1\r\nHost: test\r\n\r\n");
}

// The value of an unlabelled metric line "NAME VALUE", -1 if absent.
long long MetricValue(const std::string& page, const std::string& name) {
  const size_t at = page.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stoll(page.substr(at + name.size() + 2));
}

// --metrics-listen serves Prometheus text at /metrics; GetStatus names the
// address (port 0 picks one); the numbers follow what clients do.
TEST(ServerFlagsTest, MetricsEndpointReportsWhatClientsDo) {
  TempDir dir;
  ServerProcess server(dir.File("data"), {"--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(server.Start());
  auto st = testing::QueryStatus(server.endpoint());
  ASSERT_TRUE(st.has_value());
  const std::string addr = st->metrics_address();
  ASSERT_FALSE(addr.empty());
  std::string status_out;
  EXPECT_EQ(RunCommand({LatchkeyBinary(), "status", "-e", server.endpoint()}, &status_out), 0);
  EXPECT_NE(status_out.find("metrics     http://" + addr + "/metrics"), std::string::npos)
      << status_out;
  std::string page = HttpGet(addr, "/metrics");
  ASSERT_EQ(page.rfind("HTTP/1.1 200 OK", 0), 0u) << page;
  EXPECT_NE(page.find("# TYPE latchkey_locks_held gauge"), std::string::npos);
  EXPECT_EQ(MetricValue(page, "latchkey_locks_held"), 0);
  EXPECT_EQ(MetricValue(page, "latchkey_raft_is_leader"), 1);
  ClientOptions o;
  o.endpoint = server.endpoint();
  auto c = Client::Connect(o);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE((*c)->Acquire("metrics.a").ok());
  ASSERT_TRUE((*c)->Acquire("metrics.b").ok());
  page = HttpGet(addr, "/metrics");
  EXPECT_EQ(MetricValue(page, "latchkey_locks_held"), 2);
  EXPECT_EQ(MetricValue(page, "latchkey_sessions"), 1);
  EXPECT_GE(MetricValue(page, "latchkey_connections"), 1);
  EXPECT_NE(page.find("latchkey_requests_total{type=\"Acquire\"} 2\n"), std::string::npos) << page;
  // Both acquires reached the disk through timed appends.
  EXPECT_GE(MetricValue(page, "latchkey_raft_log_appended_entries_total"), 2);
  EXPECT_GT(MetricValue(page, "latchkey_raft_log_appended_bytes_total"), 0);
  const long long appends = MetricValue(page, "latchkey_raft_log_append_seconds_count");
  EXPECT_GE(appends, 1);
  EXPECT_NE(page.find("latchkey_raft_log_append_seconds_bucket{le=\"+Inf\"} " +
                      std::to_string(appends) + "\n"),
            std::string::npos)
      << page;
  EXPECT_EQ(HttpGet(addr, "/").rfind("HTTP/1.1 404", 0), 0u);
}

// --auth-token-file: a client must send the same token in Hello, through
// the library, the streams and the CLI; without it, or with another one, it
// gets UNAUTHENTICATED and an error that says what to pass.
TEST(ServerFlagsTest, AuthTokenIsRequiredWhenConfigured) {
  TempDir dir;
  const std::string token_file = dir.File("token");
  {
    std::ofstream f(token_file);
    f << "s3cret-token\n";  // the trailing newline is not part of the token
  }
  ASSERT_EQ(chmod(token_file.c_str(), 0600), 0);
  ServerProcess server(dir.File("data"), {"--auth-token-file", token_file});
  ASSERT_TRUE(server.Start());
  auto connect = [&](const std::string& token) {
    ClientOptions o;
    o.endpoint = server.endpoint();
    o.auth_token = token;
    o.connect_timeout = 2s;
    return Client::Connect(o);
  };
  auto none = connect("");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Code::kUnauthenticated) << none.status().ToString();
  EXPECT_NE(none.status().message().find("--auth-token-file"), std::string::npos);
  auto wrong = connect("s3cret-tokeN");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), Code::kUnauthenticated);
  auto right = connect("s3cret-token");
  ASSERT_TRUE(right.ok()) << right.status().ToString();
  ASSERT_TRUE((*right)->Acquire("auth.lock").ok());

  LockWatchOptions lo;
  lo.endpoint = server.endpoint();
  lo.name = "auth.lock";
  EXPECT_EQ(LockWatch::Open(lo).status().code(), Code::kUnauthenticated);
  lo.auth_token = "s3cret-token";
  auto w = LockWatch::Open(lo);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  auto state = (*w)->Next(5s);
  ASSERT_TRUE(state.ok());
  EXPECT_TRUE(state->held);

  std::string out;
  EXPECT_EQ(RunCommand({LatchkeyBinary(), "locks", "auth", "-e", server.endpoint(),
                        "--auth-token-file", token_file},
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("auth.lock"), std::string::npos) << out;
  EXPECT_EQ(RunCommand({LatchkeyBinary(), "locks", "-e", server.endpoint()}, &out), 77);
  EXPECT_NE(out.find("refused the connection"), std::string::npos) << out;
  EXPECT_NE(out.find("--auth-token-file"), std::string::npos) << out;
}

// scripts/run-server.sh passes --listen and --data-dir and then the user's
// arguments: a repeated flag takes the last value instead of failing.
TEST(ServerFlagsTest, TheLastDataDirWins) {
  TempDir dir;
  // ServerProcess passes --data-dir <first> itself; this one comes later.
  ServerProcess server(dir.File("first"), {"--data-dir", dir.File("second")});
  ASSERT_TRUE(server.Start()) << "a repeated --data-dir must not stop the server";
  ClientOptions o;
  o.endpoint = server.endpoint();
  auto c = Client::Connect(o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE((*c)->Acquire("flags.lock").ok());
  EXPECT_TRUE(std::filesystem::exists(dir.File("second")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("first")));
  EXPECT_TRUE(server.Terminate());
}

TEST_F(CliTest, RunsCommandWithTokenInEnvironmentAndReturnsItsExitCode) {
  std::string out;
  int rc = RunCommand(Lock({"build.artifacts", "--", "sh", "-c",
                            "echo name=$LATCHKEY_LOCK_NAME token=$LATCHKEY_FENCING_TOKEN; exit 3"}),
                      &out);
  EXPECT_EQ(rc, 3);
  EXPECT_NE(out.find("name=build.artifacts"), std::string::npos) << out;
  EXPECT_NE(out.find("token="), std::string::npos);
  EXPECT_EQ(out.find("token= "), std::string::npos) << "token missing: " << out;
  auto c = Connect();
  EXPECT_FALSE(Held(*c, "build.artifacts"));  // released after the command
}

TEST_F(CliTest, NoWaitAndWaitTimeoutExitWith75WhenBusy) {
  auto c = Connect();
  ASSERT_TRUE(c->Acquire("busy").ok());
  std::string out;
  EXPECT_EQ(RunCommand(Lock({"--no-wait", "busy", "--", "true"}), &out), 75);
  EXPECT_NE(out.find("LOCK_BUSY"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(Lock({"--wait", "200ms", "busy", "--", "true"}), &out), 75);
  EXPECT_NE(out.find("TIMEOUT"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(Lock({"--wait", "soon", "busy", "--", "true"}), &out), 64);
}

TEST_F(CliTest, TwoLockProcessesNeverOverlap) {
  const std::string file = dir_.File("journal");
  // Each critical section writes "begin <pid>" then "end <pid>"; a short
  // pause inside widens the window in which an overlap would show.
  const std::string body = "for i in 1 2 3 4 5 6 7 8 9 10; do " + LatchkeyBinary() + " lock -e " +
                           server_.endpoint() + " -q journal -- sh -c 'echo begin $$ >> " + file +
                           "; sleep 0.02; echo end $$ >> " + file + "' || exit 1; done";
  pid_t p1 = testing::SpawnCommand({"/bin/sh", "-c", body});
  pid_t p2 = testing::SpawnCommand({"/bin/sh", "-c", body});
  EXPECT_EQ(testing::WaitPid(p1), 0);
  EXPECT_EQ(testing::WaitPid(p2), 0);
  std::ifstream f(file);
  std::string word, pid, open_pid;
  int sections = 0;
  while (f >> word >> pid) {
    if (word == "begin") {
      ASSERT_TRUE(open_pid.empty()) << "overlap: " << pid << " began inside " << open_pid;
      open_pid = pid;
    } else {
      ASSERT_EQ(open_pid, pid);
      open_pid.clear();
      ++sections;
    }
  }
  EXPECT_EQ(sections, 20);
}

TEST_F(CliTest, SigtermIsForwardedAndTheLockReleased) {
  const std::string marker = dir_.File("started");
  pid_t p = testing::SpawnCommand(
      Lock({"-q", "sig", "--", "sh", "-c",
            "trap 'exit 7' TERM; touch " + marker + "; while true; do sleep 0.05; done"}));
  auto c = Connect();
  ASSERT_TRUE(WaitFor([&] { return std::ifstream(marker).good(); }));
  ASSERT_TRUE(Held(*c, "sig"));
  kill(p, SIGTERM);
  EXPECT_EQ(testing::WaitPid(p), 7);
  EXPECT_FALSE(Held(*c, "sig"));
}

TEST_F(CliTest, InterruptWhileWaitingWithdrawsTheRequest) {
  auto c = Connect();
  ASSERT_TRUE(c->Acquire("queue").ok());
  pid_t p = testing::SpawnCommand(Lock({"-q", "queue", "--", "true"}));
  ASSERT_TRUE(WaitFor([&] {
    auto i = c->GetLock("queue");
    return i.ok() && i->waiters == 1;
  }));
  kill(p, SIGINT);
  EXPECT_EQ(testing::WaitPid(p), 128 + SIGINT);
  EXPECT_TRUE(WaitFor([&] {
    auto i = c->GetLock("queue");
    return i.ok() && i->waiters == 0;
  }));
}

TEST_F(CliTest, SessionLossWhileRunningSignalsTheCommand) {
  // The server freezes (SIGSTOP) for longer than the session TTL: the client
  // cannot renew its lease, must assume the lock is gone, tell the user and
  // stop the command.
  const std::string marker = dir_.File("running");
  const std::string out_file = dir_.File("lock.out");
  pid_t p = testing::SpawnCommand(
      Lock({"-q", "--session-ttl", "1s", "fragile", "--", "sh", "-c",
            "trap 'exit 9' TERM; touch " + marker + "; while true; do sleep 0.05; done"}),
      out_file);
  ASSERT_TRUE(WaitFor([&] { return std::ifstream(marker).good(); }));
  server_.Stop(SIGSTOP);
  const int rc = testing::WaitPid(p);
  server_.Cont();
  EXPECT_EQ(rc, 76);
  std::stringstream out;
  out << std::ifstream(out_file).rdbuf();
  EXPECT_NE(out.str().find("session lost"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("SIGTERM"), std::string::npos) << out.str();
}

TEST_F(CliTest, StatusShowsRaftStateAndCounts) {
  auto c = Connect();
  ASSERT_TRUE(c->Acquire("one").ok());
  std::string out;
  EXPECT_EQ(RunCommand({LatchkeyBinary(), "status", "-e", server_.endpoint()}, &out), 0);
  EXPECT_NE(out.find("leader"), std::string::npos) << out;
  EXPECT_NE(out.find("1 held"), std::string::npos) << out;
  EXPECT_NE(out.find("sessions    2"), std::string::npos) << out;
  // The acquire was made durable: the log write line counts it; metrics are off.
  EXPECT_NE(out.find("log writes  "), std::string::npos) << out;
  EXPECT_EQ(out.find("metrics "), std::string::npos) << out;
  // --json: the same figures as one object.
  std::string json;
  EXPECT_EQ(RunCommand({LatchkeyBinary(), "status", "--json", "-e", server_.endpoint()}, &json), 0);
  EXPECT_EQ(json.rfind("{\"server_version\":", 0), 0u) << json;
  EXPECT_NE(json.find("\"raft_state\":\"leader\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"locks_held\":1,"), std::string::npos) << json;
  EXPECT_NE(json.find("\"sessions\":2,"), std::string::npos) << json;
  EXPECT_EQ(json.find("\"log_appends\":0,"), std::string::npos) << json;
  EXPECT_NE(json.find("\"metrics_address\":\"\"}\n"), std::string::npos) << json;
}

TEST_F(CliTest, UnreachableServerIsReportedClearly) {
  std::string out;
  // A port bound but not listening: refused, and no parallel test can take it.
  int held = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(held, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(held, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(held, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  EXPECT_EQ(
      RunCommand({LatchkeyBinary(), "status", "-e", "127.0.0.1:" + std::to_string(port)}, &out),
      69);
  EXPECT_NE(out.find("cannot reach"), std::string::npos) << out;
  close(held);
}

TEST_F(CliTest, MetricsAreOffUnlessAsked) {
  auto st = testing::QueryStatus(server_.endpoint());
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(st->metrics_address().empty());
}

TEST_F(CliTest, HelpReadsWell) {
  std::string out;
  EXPECT_EQ(RunCommand({LatchkeyBinary(), "lock", "--help"}, &out), 0);
  EXPECT_NE(out.find("LATCHKEY_FENCING_TOKEN"), std::string::npos);
  EXPECT_NE(out.find("--no-wait"), std::string::npos);
}

}  // namespace
}  // namespace latchkey
