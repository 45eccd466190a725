// Records (seed 004) through the real server, client library and CLI:
// racing unique creates from several clients (exactly one wins), number
// reuse over many create/delete cycles, delete while another client holds
// the lock (revoke event, later update fails), lock-if-unchanged, waiters
// failed by a delete, find at one revision, and the CLI.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include "latchkey/client.h"
#include "latchkey/records.h"
#include "testlib/server_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::LatchkeyBinary;
using testing::RunCommand;
using testing::ServerProcess;
using testing::TempDir;
using testing::WaitFor;

class RecordIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()); }
  std::unique_ptr<Client> Connect(const std::string& name) {
    ClientOptions o;
    o.endpoint = server_.endpoint();
    o.client_name = name;
    o.on_lock_lost = [this](const LockLost& l) {
      std::lock_guard<std::mutex> g(mu_);
      lost_.push_back(l);
    };
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c.value()) : nullptr;
  }

  TempDir dir_;
  ServerProcess server_{dir_.File("data")};
  std::mutex mu_;
  std::vector<LockLost> lost_;
};

TEST_F(RecordIntegrationTest, FourClientsRaceToCreateTheSameRecordAndOneWins) {
  constexpr int kClients = 4;
  constexpr int kRounds = 20;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(Connect("racer" + std::to_string(i)));
  for (int round = 0; round < kRounds; ++round) {
    std::atomic<int> go{0};
    std::vector<std::future<Result<Record>>> results;
    for (int i = 0; i < kClients; ++i) {
      results.push_back(std::async(std::launch::async, [&, i] {
        Records recs(*clients[i], "hotels");
        go.fetch_add(1);
        while (go.load() < kClients) std::this_thread::yield();
        return recs.Create({{"name", "Palace " + std::to_string(round)},
                            {"location", "Smallville"},
                            {"by", std::to_string(i)}},
                           {"name", "location"});
      }));
    }
    int wins = 0;
    uint64_t winner = 0;
    std::vector<Status> losers;
    for (auto& f : results) {
      Result<Record> r = f.get();
      if (r.ok()) {
        ++wins;
        winner = r->number;
      } else {
        losers.push_back(r.status());
      }
    }
    ASSERT_EQ(wins, 1) << "round " << round;
    for (const Status& s : losers) {
      EXPECT_EQ(s.code(), Code::kAlreadyExists) << s.ToString();
      EXPECT_NE(s.message().find("hotels/" + std::to_string(winner)), std::string::npos)
          << s.ToString();
    }
  }
  Records recs(*clients[0], "hotels");
  auto all = recs.Find({{"location", "Small"}}, 0, 0, 1000);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->records.size(), static_cast<size_t>(kRounds));
}

TEST_F(RecordIntegrationTest, CreateDeleteCyclesReuseNumbers) {
  auto c = Connect("cycler");
  Records recs(*c, "rooms");
  for (int i = 1; i <= 3; ++i) {
    auto r = recs.Create({{"room", std::to_string(i)}});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->number, static_cast<uint64_t>(i));
  }
  for (int cycle = 0; cycle < 50; ++cycle) {
    const uint64_t victim = 1 + static_cast<uint64_t>(cycle % 3);
    ASSERT_TRUE(recs.Lock(victim).ok());
    ASSERT_TRUE(recs.Delete(victim).ok());
    auto r = recs.Create({{"room", "c" + std::to_string(cycle)}});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->number, victim) << "cycle " << cycle;
  }
  auto more = recs.Create({{"room", "new"}});
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(more->number, 4u);
}

TEST_F(RecordIntegrationTest, DeleteRevokesAnotherClientsLockAndItsUpdateFails) {
  auto holder_client = Connect("holder");
  auto deleter_client = Connect("deleter");
  auto waiter_client = Connect("waiter");
  Records holder(*holder_client, "hotels"), deleter(*deleter_client, "hotels"),
      waiter(*waiter_client, "hotels");
  auto rec = holder.Create({{"name", "Castle"}, {"location", "Gotham"}});
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  // Scene: holder holds CR, deleter holds PW, waiter waits for EX.
  ASSERT_TRUE(holder.Lock(rec->number, {.mode = LockMode::kCR}).ok());
  ASSERT_TRUE(deleter.Lock(rec->number, {.mode = LockMode::kPW}).ok());
  auto waiting2 = std::async(std::launch::async, [&] { return waiter.Lock(rec->number); });
  ASSERT_EQ(waiting2.wait_for(200ms), std::future_status::timeout);
  auto del = deleter.Delete(rec->number);
  ASSERT_TRUE(del.ok()) << del.status().ToString();
  // The waiter fails with NOT_FOUND; the holder is told it lost the lock.
  auto w2 = waiting2.get();
  EXPECT_EQ(w2.status().code(), Code::kNotFound) << w2.status().ToString();
  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard<std::mutex> lk(mu_);
        for (const LockLost& l : lost_) {
          if (l.name == rec->lock_name && l.reason.find("deleted") != std::string::npos) {
            return true;
          }
        }
        return false;
      },
      5s));
  // A later update by the former holder fails: the record is gone.
  EXPECT_EQ(holder.Update(rec->number, {{"name", "X"}}).status().code(), Code::kNotFound);
  // Its number is reused, and the new record's lock is free.
  auto again = deleter.Create({{"name", "Tower"}, {"location", "Gotham"}});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->number, rec->number);
  // Without the lock, update is refused.
  EXPECT_EQ(holder.Update(again->number, {{"name", "Y"}}).status().code(), Code::kNotHeld);
}

TEST_F(RecordIntegrationTest, LockIfUnchangedAndFindAtOneRevision) {
  auto a_client = Connect("a");
  auto b_client = Connect("b");
  Records a(*a_client, "hotels"), b(*b_client, "hotels");
  ASSERT_TRUE(a.Create({{"name", "Palace"}, {"location", "Smallville"}}).ok());
  ASSERT_TRUE(a.Create({{"name", "Palace Inn"}, {"location", "Metropolis"}}).ok());
  auto seen = b.Find({{"name", "Pal"}});
  ASSERT_TRUE(seen.ok());
  ASSERT_EQ(seen->records.size(), 2u);
  const uint64_t read_rev = seen->revision;
  {
    auto guard = RecordLockGuard::Acquire(a, 1, {.if_unchanged_since = read_rev});
    ASSERT_TRUE(guard.ok()) << guard.status().ToString();
    ASSERT_TRUE(a.Update(1, {{"rate", "150"}}).ok());
  }  // unlocked here
  auto stale = b.Lock(1, {.if_unchanged_since = read_rev});
  EXPECT_EQ(stale.status().code(), Code::kRecordChanged) << stale.status().ToString();
  auto fresh = b.Get(1);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->fields.at("rate"), "150");
  EXPECT_TRUE(b.Lock(1, {.if_unchanged_since = fresh->mod_revision}).ok());
  // The old revision still reads the old version.
  auto old = b.Get(1, read_rev);
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->fields.count("rate"), 0u);
  EXPECT_EQ(b.Lock(2, {.try_only = true}).ok(), true);
  EXPECT_EQ(a.Lock(2, {.try_only = true}).status().code(), Code::kLockBusy);
}

TEST_F(RecordIntegrationTest, Cli) {
  const std::string bin = LatchkeyBinary();
  const std::string ep = server_.endpoint();
  std::string out;
  ASSERT_EQ(RunCommand({bin, "record", "create", "-e", ep, "--key", "name", "hotels", "name=Palace",
                        "location=Smallville"},
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("hotels/1 created"), std::string::npos) << out;
  EXPECT_EQ(
      RunCommand({bin, "record", "create", "-e", ep, "hotels", "name=Palace", "location=X"}, &out),
      75)
      << out;
  EXPECT_NE(out.find("ALREADY_EXISTS"), std::string::npos) << out;
  ASSERT_EQ(RunCommand({bin, "record", "get", "-e", ep, "--json", "hotels", "1"}, &out), 0) << out;
  EXPECT_NE(out.find("\"name\":\"Palace\""), std::string::npos) << out;
  ASSERT_EQ(RunCommand({bin, "record", "update", "-e", ep, "hotels", "1", "rate=120"}, &out), 0)
      << out;
  EXPECT_NE(out.find("rate = 120"), std::string::npos) << out;
  EXPECT_EQ(RunCommand({bin, "record", "update", "-e", ep, "--if-unchanged-since", "1", "hotels",
                        "1", "rate=1"},
                       &out),
            75)
      << out;
  EXPECT_NE(out.find("RECORD_CHANGED"), std::string::npos) << out;
  ASSERT_EQ(RunCommand({bin, "record", "lock", "-e", ep, "hotels", "1", "--", "sh", "-c",
                        "echo token=$LATCHKEY_FENCING_TOKEN name=$LATCHKEY_LOCK_NAME"},
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("name=records.hotels.1"), std::string::npos) << out;
  ASSERT_EQ(RunCommand({bin, "record", "find", "-e", ep, "hotels", "location=Small"}, &out), 0)
      << out;
  EXPECT_NE(out.find("1 records at revision"), std::string::npos) << out;
  ASSERT_EQ(RunCommand({bin, "record", "delete", "-e", ep, "hotels", "1"}, &out), 0) << out;
  EXPECT_NE(out.find("deleted"), std::string::npos) << out;
  EXPECT_EQ(RunCommand({bin, "record", "get", "-e", ep, "hotels", "1"}, &out), 1) << out;
}

}  // namespace
}  // namespace latchkey
