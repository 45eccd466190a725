// `latchkey leader NAME [--watch] [--json]`: who leads election NAME (see
// `latchkey elect`), once or on every change until Ctrl-C.
#include <pthread.h>

#include <csignal>
#include <cstdio>

#include "cli/commands.h"
#include "cli/lock_display.h"
#include "common/duration.h"
#include "latchkey/election.h"

namespace latchkey::cli {
namespace {

struct LeaderFlags {
  ClientFlags client;
  std::string name;
  bool watch = false;
  bool json = false;
  bool stale = false;
  std::string interval = "100ms";
};

std::string Json(const LeaderEvent& e, bool with_event) {
  std::string out = "{\"election\":" + JsonString(e.leader.election);
  if (with_event) out += ",\"event\":" + JsonString(LeaderEventKindName(e.kind));
  if (e.kind == LeaderEvent::Kind::kVacant) return out + ",\"leader\":null}\n";
  const LeaderInfo& l = e.leader;
  return out + ",\"leader\":{\"session_id\":" + std::to_string(l.session_id) +
         ",\"owner\":" + JsonString(l.owner) + ",\"client_name\":" + JsonString(l.client_name) +
         ",\"term\":" + std::to_string(l.term) + ",\"value\":" + JsonString(l.value) +
         ",\"elected_at_ms\":" + std::to_string(l.elected_at_ms) +
         ",\"leading_for_ms\":" + std::to_string(AgeMs(l.server_time_ms, l.elected_at_ms)) +
         ",\"value_revision\":" + std::to_string(l.value_revision) + "}}\n";
}

std::string Text(const LeaderEvent& e) {
  const LeaderInfo& l = e.leader;
  if (e.kind == LeaderEvent::Kind::kVacant) return "'" + l.election + "' has no leader\n";
  std::string who = DescribeOwner(l.session_id, l.owner, l.client_name);
  std::string s = e.kind == LeaderEvent::Kind::kProclaimed ? "proclaimed: " : "";
  return s + "'" + l.election + "' leader: " + who + ", term " + std::to_string(l.term) +
         ", value '" + l.value + "', leading for " +
         FormatDurationMs(AgeMs(l.server_time_ms, l.elected_at_ms)) + "\n";
}

int RunLeader(const LeaderFlags& f) {
  auto interval = ParseDurationMs(f.interval);
  if (!interval.ok() || *interval == 0) {
    std::fprintf(stderr, "latchkey leader: --interval: %s\n",
                 interval.ok() ? "must be more than 0" : interval.status().message().c_str());
    return kExitUsage;
  }
  sigset_t stop;
  sigemptyset(&stop);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop, s);
  if (f.watch) pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before any thread starts
  ClientOptions o;
  o.endpoint = f.client.endpoint;
  o.auth_token = f.client.AuthToken();
  o.client_name = "latchkey leader";
  auto client = Client::Connect(o);
  if (!client.ok()) {
    return ReportConnectFailure("latchkey leader", f.client.endpoint.c_str(), client.status());
  }
  ElectionOptions eo;
  eo.observe_interval = std::chrono::milliseconds(*interval);
  eo.observe_consistency =
      f.stale ? ReadConsistency::kSerializable : ReadConsistency::kLinearizable;
  Election election(**client, f.name, eo);
  auto print = [&f](const LeaderEvent& e) {
    const std::string line = f.json ? Json(e, f.watch) : Text(e);
    std::fputs(line.c_str(), stdout);
    std::fflush(stdout);
  };
  if (!f.watch) {
    Result<LeaderInfo> l = election.Leader(eo.observe_consistency);
    LeaderEvent e;
    if (l.ok()) {
      e.leader = std::move(*l);
    } else if (l.status().code() == Code::kNotFound) {
      e.kind = LeaderEvent::Kind::kVacant;
      e.leader.election = f.name;
    } else {
      std::fprintf(stderr, "latchkey leader: %s\n", l.status().ToString().c_str());
      return l.status().code() == Code::kInvalidArgument ? kExitUsage : kExitUnavailable;
    }
    print(e);
    return 0;
  }
  ElectionObserver obs = election.Observe(print);
  int sig = 0;
  while (sigwait(&stop, &sig) != 0) {
  }
  obs.Stop();
  (void)(*client)->Close();
  return 0;
}

}  // namespace

Subcommand AddLeaderCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "leader",
      "Show who leads election NAME (see 'latchkey elect'): session, client, term (fencing "
      "token) and value. With --watch, print every change (elected, proclaimed, vacant) in "
      "term order until Ctrl-C, as the server pushes them: no term is missed, however short "
      "(against a server too old for lock watches it polls every --interval, and faster "
      "changes may be coalesced).");
  auto f = std::make_shared<LeaderFlags>();
  cmd->add_option("name", f->name, "Election name")->required();
  cmd->add_flag("--watch", f->watch, "Keep printing leadership changes");
  cmd->add_flag("--json", f->json,
                "One JSON object per line: {election, [event,] leader:{session_id, owner, "
                "client_name, term, value, elected_at_ms, leading_for_ms, value_revision} or "
                "null}");
  cmd->add_flag("--stale", f->stale,
                "Read from the node connected to without a read barrier (may lag)");
  cmd->add_option("--interval", f->interval,
                  "How often --watch reads the leader when the server cannot push changes")
      ->capture_default_str();
  AddClientFlags(cmd, &f->client);
  return {cmd, [f]() { return RunLeader(*f); }};
}

}  // namespace latchkey::cli
