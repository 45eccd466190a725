// Leader election (latchkey::Election, `latchkey elect` / `leader`) through
// a real server: one leader at a time, strictly increasing terms, prompt
// hand-over on resign, replacement of a SIGKILLed leader after its lease.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

#include "latchkey/election.h"
#include "testlib/server_fixture.h"
#include "testlib/server_process.h"

namespace latchkey {
namespace {

using namespace std::chrono_literals;
using testing::LatchkeyBinary;
using testing::RunCommand;
using testing::WaitFor;

using ElectionTest = testing::SingleServerTest;

// Kills and reaps a spawned process unless the test already did (pid = -1),
// so an assertion that ends a test early leaves no stray process.
struct Reaper {
  pid_t pid = -1;
  ~Reaper() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      testing::WaitPid(pid);
    }
  }
};

TEST_F(ElectionTest, ThreeCandidatesOneLeaderAtATimeWithIncreasingTerms) {
  constexpr int kCandidates = 3, kRounds = 4;
  std::vector<std::unique_ptr<Client>> cs;
  for (int i = 0; i < kCandidates; ++i) cs.push_back(Connect("c" + std::to_string(i)));
  auto watcher = Connect("watcher");
  Election observed(*watcher, "jobs", ElectionOptions{.observe_interval = 5ms});
  std::mutex mu;
  std::vector<LeaderEvent> events;
  ElectionObserver obs = observed.Observe([&](const LeaderEvent& e) {
    std::lock_guard<std::mutex> g(mu);
    events.push_back(e);
  });

  std::atomic<int> leaders{0}, peak{0};
  std::vector<uint64_t> terms;  // in the order leaders were elected
  std::vector<std::thread> ts;
  for (int i = 0; i < kCandidates; ++i) {
    ts.emplace_back([&, i] {
      Election e(*cs[i], "jobs");
      for (int r = 0; r < kRounds; ++r) {
        const std::string value = "c" + std::to_string(i) + "-" + std::to_string(r);
        auto term = e.Campaign(value);
        ASSERT_TRUE(term.ok()) << term.status().ToString();
        const int now = ++leaders;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        {
          std::lock_guard<std::mutex> g(mu);
          terms.push_back(*term);
        }
        auto who = e.Leader();
        ASSERT_TRUE(who.ok()) << who.status().ToString();
        EXPECT_EQ(who->term, *term);
        EXPECT_EQ(who->value, value);
        EXPECT_EQ(who->session_id, cs[i]->session_id());
        EXPECT_TRUE(e.Check().ok());
        EXPECT_TRUE(e.Verify().ok());
        std::this_thread::sleep_for(15ms);  // lead a little: widens an overlap window
        --leaders;
        ASSERT_TRUE(e.Resign().ok());
        EXPECT_EQ(e.term(), 0u);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(peak.load(), 1);
  ASSERT_EQ(terms.size(), static_cast<size_t>(kCandidates * kRounds));
  for (size_t i = 1; i < terms.size(); ++i) EXPECT_GT(terms[i], terms[i - 1]) << "at " << i;
  // The observer ends on "no leader" and never went back to an older term.
  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard<std::mutex> g(mu);
        return !events.empty() && events.back().kind == LeaderEvent::Kind::kVacant;
      },
      5s));
  obs.Stop();
  uint64_t last = 0;
  size_t elected = 0;
  for (const LeaderEvent& e : events) {
    if (e.kind == LeaderEvent::Kind::kVacant) continue;
    EXPECT_GE(e.leader.term, last);
    if (e.kind == LeaderEvent::Kind::kElected) {
      EXPECT_GT(e.leader.term, last);
      ++elected;
    }
    last = e.leader.term;
  }
  EXPECT_GE(elected, 1u);
}

TEST_F(ElectionTest, ResignHandsOverPromptlyAndProclaimIsObserved) {
  auto a = Connect("a"), b = Connect("b"), w = Connect("w");
  Election ea(*a, "sched"), eb(*b, "sched");
  auto ta = ea.Campaign("a:7000");
  ASSERT_TRUE(ta.ok()) << ta.status().ToString();
  EXPECT_EQ(eb.Proclaim("b:7000").code(), Code::kNotHeld);
  EXPECT_EQ(eb.Resign().code(), Code::kNotHeld);
  EXPECT_EQ(eb.Check().code(), Code::kFailedPrecondition);

  Election ew(*w, "sched", ElectionOptions{.observe_interval = 5ms});
  std::mutex mu;
  std::vector<LeaderEvent> events;
  ElectionObserver obs = ew.Observe([&](const LeaderEvent& e) {
    std::lock_guard<std::mutex> g(mu);
    events.push_back(e);
  });
  auto seen = [&](LeaderEvent::Kind kind, const std::string& value) {
    std::lock_guard<std::mutex> g(mu);
    for (const LeaderEvent& e : events) {
      if (e.kind == kind && e.leader.value == value) return true;
    }
    return false;
  };
  ASSERT_TRUE(WaitFor([&] { return seen(LeaderEvent::Kind::kElected, "a:7000"); }, 5s));
  ASSERT_TRUE(ea.Proclaim("a:7001").ok());
  auto l = ew.Leader();
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->value, "a:7001");
  EXPECT_EQ(l->term, *ta);  // a proclamation keeps the term
  EXPECT_TRUE(WaitFor([&] { return seen(LeaderEvent::Kind::kProclaimed, "a:7001"); }, 5s));

  auto tb = std::async(std::launch::async, [&] { return eb.Campaign("b:7000"); });
  ASSERT_TRUE(WaitFor([&] { return Waiters(*w, Election::LockName("sched")) == 1; }, 5s));
  const auto resigned_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(ea.Resign().ok());
  ASSERT_EQ(tb.wait_for(2s), std::future_status::ready) << "hand-over was not prompt";
  const auto handover = std::chrono::steady_clock::now() - resigned_at;
  auto term_b = tb.get();
  ASSERT_TRUE(term_b.ok()) << term_b.status().ToString();
  EXPECT_GT(*term_b, *ta);
  EXPECT_LT(handover, 2s);
  std::printf("resign -> next candidate elected: %lld ms\n",
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(handover).count()));
  EXPECT_TRUE(WaitFor([&] { return seen(LeaderEvent::Kind::kElected, "b:7000"); }, 5s));
  EXPECT_EQ(ea.Check().code(), Code::kFailedPrecondition);
}

// Ten candidates lead one after another with no pause in between, each for
// a single round trip: the observer (default options: it would poll every
// 100 ms without lock watches) reports every term, in order, each followed
// by the vacancy its resignation leaves.
TEST_F(ElectionTest, ObserverSeesEveryTermOfARapidSuccession) {
  auto c = Connect("candidates"), w = Connect("w");
  Election ew(*w, "rapid");
  std::mutex mu;
  std::vector<LeaderEvent> events;
  ElectionObserver obs = ew.Observe([&](const LeaderEvent& e) {
    std::lock_guard<std::mutex> g(mu);
    events.push_back(e);
  });
  auto count = [&] {
    std::lock_guard<std::mutex> g(mu);
    return events.size();
  };
  ASSERT_TRUE(WaitFor([&] { return count() == 1; }, 5s));  // vacant at the start
  constexpr int kTerms = 10;
  for (int i = 0; i < kTerms; ++i) {
    Election e(*c, "rapid", ElectionOptions{.owner = "o" + std::to_string(i)});
    ASSERT_TRUE(e.Campaign("v" + std::to_string(i)).ok());
    ASSERT_TRUE(e.Resign().ok());
  }
  ASSERT_TRUE(WaitFor([&] { return count() == 1 + 2 * kTerms; }, 5s)) << count();
  std::lock_guard<std::mutex> g(mu);
  EXPECT_EQ(events[0].kind, LeaderEvent::Kind::kVacant);
  uint64_t last_term = 0;
  for (int i = 0; i < kTerms; ++i) {
    const LeaderEvent& elected = events[static_cast<size_t>(1 + 2 * i)];
    EXPECT_EQ(elected.kind, LeaderEvent::Kind::kElected) << i;
    EXPECT_EQ(elected.leader.value, "v" + std::to_string(i));
    EXPECT_GT(elected.leader.term, last_term);
    last_term = elected.leader.term;
    EXPECT_EQ(events[static_cast<size_t>(2 + 2 * i)].kind, LeaderEvent::Kind::kVacant) << i;
  }
}

TEST_F(ElectionTest, LeadershipGuardResignsAndSessionLossEndsCampaign) {
  auto a = Connect("a"), b = Connect("b");
  Election ea(*a, "guarded"), eb(*b, "guarded");
  {
    auto lead = ea.Lead("a");
    ASSERT_TRUE(lead.ok()) << lead.status().ToString();
    EXPECT_TRUE(lead->Check().ok());
    EXPECT_TRUE(lead->Proclaim("a2").ok());
  }  // resigns here
  EXPECT_EQ(eb.Leader().status().code(), Code::kNotFound);

  // The lease runs out (the server is paused past the ttl): the waiting
  // candidate stops campaigning and the leader learns it no longer leads.
  auto la = Connect("la", 500ms), lb = Connect("lb", 500ms);
  Election ela(*la, "lease"), elb(*lb, "lease");
  auto term = ela.Campaign("la");
  ASSERT_TRUE(term.ok()) << term.status().ToString();
  auto pending = std::async(std::launch::async, [&] { return elb.Campaign("lb"); });
  ASSERT_TRUE(WaitFor([&] { return Waiters(*a, Election::LockName("lease")) == 1; }, 5s));
  server_.Stop(SIGSTOP);
  const bool lost =
      WaitFor([&] { return !la->session_status().ok() && !lb->session_status().ok(); }, 10s);
  server_.Cont();
  ASSERT_TRUE(lost) << "sessions still alive after the server was paused past their ttl";
  ASSERT_EQ(pending.wait_for(5s), std::future_status::ready);
  auto r = pending.get();
  EXPECT_EQ(r.status().code(), Code::kSessionExpired) << r.status().ToString();
  EXPECT_NE(r.status().message().find("campaign for 'lease' ended"), std::string::npos)
      << r.status().ToString();
  EXPECT_EQ(ela.Check().code(), Code::kSessionExpired);
  // Once the server expires the old leader's session, a new candidate wins.
  Election ec(*b, "lease");
  auto next = ec.Campaign("b", 10s);
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_GT(*next, *term);
}

TEST_F(ElectionTest, KilledLeaderIsReplacedAfterItsLease) {
  const std::string out = dir_.File("victim.out");
  pid_t victim = testing::SpawnCommand({LatchkeyBinary(), "elect", "-e", server_.endpoint(),
                                        "--session-ttl", "1s", "--value", "victim", "ha"},
                                       out);
  Reaper reaper{victim};
  auto b = Connect("b");
  Election eb(*b, "ha");
  Result<LeaderInfo> first = NotFound("not yet");
  ASSERT_TRUE(WaitFor(
      [&] {
        first = eb.Leader();
        return first.ok() && first->value == "victim";
      },
      10s));
  // The CLI has seen its grant and said so (it flushes the line).
  auto printed = [&] {
    std::ifstream f(out);
    std::stringstream text;
    text << f.rdbuf();
    return text.str().find("elected leader of 'ha' (term " + std::to_string(first->term) + ")") !=
           std::string::npos;
  };
  ASSERT_TRUE(WaitFor(printed, 10s));
  auto next = std::async(std::launch::async, [&] { return eb.Campaign("b"); });
  ASSERT_TRUE(WaitFor([&] { return Waiters(*b, Election::LockName("ha")) == 1; }, 5s));
  const auto killed_at = std::chrono::steady_clock::now();
  kill(victim, SIGKILL);
  testing::WaitPid(victim);
  reaper.pid = -1;
  ASSERT_EQ(next.wait_for(15s), std::future_status::ready) << "no new leader after the lease";
  const auto after = std::chrono::steady_clock::now() - killed_at;
  auto term = next.get();
  ASSERT_TRUE(term.ok()) << term.status().ToString();
  EXPECT_GT(*term, first->term);
  EXPECT_GE(after, 500ms) << "elected before the old leader's lease could have run out";
  std::printf(
      "SIGKILL of a leader with a 1 s session ttl -> next candidate elected: %lld ms\n",
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(after).count()));
  auto now = eb.Leader();
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->value, "b");
}

TEST_F(ElectionTest, CliRunsCommandWhileLeaderAndResignsAfter) {
  std::string out;
  const std::string script = "echo term=$LATCHKEY_TERM election=$LATCHKEY_ELECTION; " +
                             LatchkeyBinary() + " leader --json -e " + server_.endpoint() +
                             " cron; exit 4";
  int rc = RunCommand({LatchkeyBinary(), "elect", "-e", server_.endpoint(), "--value", "box-1",
                       "cron", "--", "sh", "-c", script},
                      &out);
  EXPECT_EQ(rc, 4) << out;
  EXPECT_NE(out.find("elected leader of 'cron'"), std::string::npos) << out;
  EXPECT_NE(out.find("election=cron"), std::string::npos) << out;
  EXPECT_NE(out.find("\"value\":\"box-1\""), std::string::npos) << out;
  EXPECT_EQ(out.find("term= "), std::string::npos) << out;
  auto c = Connect("c");
  EXPECT_EQ(Election(*c, "cron").Leader().status().code(), Code::kNotFound);  // resigned
  EXPECT_EQ(RunCommand({LatchkeyBinary(), "leader", "-e", server_.endpoint(), "cron"}, &out), 0);
  EXPECT_NE(out.find("has no leader"), std::string::npos) << out;
  // Busy: --wait gives up with 75 while another candidate leads.
  Election held(*c, "cron");
  ASSERT_TRUE(held.Campaign("c").ok());
  EXPECT_EQ(RunCommand({LatchkeyBinary(), "elect", "-e", server_.endpoint(), "--wait", "200ms",
                        "cron", "--", "true"},
                       &out),
            75)
      << out;
}

TEST_F(ElectionTest, CliLeaderThatLosesItsSessionStopsItsCommandAndExits76) {
  const std::string out = dir_.File("lost.out");
  pid_t elect = testing::SpawnCommand({LatchkeyBinary(), "elect", "-e", server_.endpoint(),
                                       "--session-ttl", "600ms", "lost", "--", "sleep", "60"},
                                      out);
  auto text = [&] {
    std::ifstream f(out);
    std::stringstream t;
    t << f.rdbuf();
    return t.str();
  };
  int status = 0;
  bool exited = false;
  auto reaped = [&] {
    exited = exited || waitpid(elect, &status, WNOHANG) == elect;
    return exited;
  };
  const bool elected =
      WaitFor([&] { return text().find("elected leader of 'lost'") != std::string::npos; }, 10s);
  if (elected) server_.Stop(SIGSTOP);  // no keepalive is answered past the ttl
  const bool done = elected && WaitFor(reaped, 10s);
  if (elected) server_.Cont();
  if (!done && !reaped()) {
    kill(elect, SIGKILL);
    testing::WaitPid(elect);
  }
  ASSERT_TRUE(elected) << text();
  ASSERT_TRUE(done) << "latchkey elect kept running after its session was lost: " << text();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 76) << text();
  EXPECT_NE(text().find("session lost"), std::string::npos) << text();
}

TEST_F(ElectionTest, CliLeaderWatchPrintsEveryChangeInTermOrder) {
  const std::string out = dir_.File("watch.out");
  pid_t watch = testing::SpawnCommand({LatchkeyBinary(), "leader", "-e", server_.endpoint(),
                                       "--watch", "--json", "--interval", "10ms", "w"},
                                      out);
  Reaper reaper{watch};
  auto text = [&] {
    std::ifstream f(out);
    std::stringstream t;
    t << f.rdbuf();
    return t.str();
  };
  ASSERT_TRUE(
      WaitFor([&] { return text().find("\"event\":\"vacant\"") != std::string::npos; }, 10s));
  auto c = Connect("c");
  Election e(*c, "w");
  auto term = e.Campaign("first");
  ASSERT_TRUE(term.ok());
  ASSERT_TRUE(
      WaitFor([&] { return text().find("\"value\":\"first\"") != std::string::npos; }, 10s));
  ASSERT_TRUE(e.Proclaim("second").ok());
  ASSERT_TRUE(
      WaitFor([&] { return text().find("\"event\":\"proclaimed\"") != std::string::npos; }, 10s));
  kill(watch, SIGINT);
  EXPECT_EQ(testing::WaitPid(watch), 0);
  reaper.pid = -1;
  const std::string t = text();
  EXPECT_NE(t.find("\"term\":" + std::to_string(*term)), std::string::npos) << t;
  EXPECT_LT(t.find("\"value\":\"first\""), t.find("\"value\":\"second\"")) << t;
}

}  // namespace
}  // namespace latchkey
