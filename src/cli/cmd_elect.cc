// `latchkey elect NAME [--value V] [-- COMMAND...]`: campaign in election
// NAME; once elected, run COMMAND while leader and resign when it exits, or
// (without a command) lead until SIGINT/SIGTERM. `latchkey leader NAME`:
// who leads, once or (--watch) on every change.
//
// Signals are handled as in `latchkey lock` (cmd_lock.cc): while campaigning
// they withdraw the candidacy (the session is closed); while the command
// runs they are forwarded to it. If the session is lost while leading, the
// command gets SIGTERM: it is no longer the leader.
#include <pthread.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "cli/child_process.h"
#include "cli/commands.h"
#include "cli/lock_display.h"
#include "common/duration.h"
#include "latchkey/election.h"

namespace latchkey::cli {
namespace {

struct ElectFlags {
  ClientFlags client;
  std::string name;
  std::string value;  // "" = user@host pid N
  std::string wait;   // "" = campaign without limit
  bool quiet = false;
  std::vector<std::string> command;
};

struct Shared : SignalState {
  std::optional<Result<uint64_t>> elected;
};

int RunLeaderChild(const ElectFlags& f, const std::string& value, uint64_t term,
                   uint64_t session_id, Shared& sh, const sigset_t& blocked) {
  return RunChildWhileHeld("latchkey elect", f.command,
                           {{"LATCHKEY_ELECTION", f.name},
                            {"LATCHKEY_LEADER_VALUE", value},
                            {"LATCHKEY_TERM", std::to_string(term)},
                            {"LATCHKEY_FENCING_TOKEN", std::to_string(term)},
                            {"LATCHKEY_SESSION_ID", std::to_string(session_id)},
                            {"LATCHKEY_ENDPOINT", f.client.endpoint}},
                           sh, blocked);
}

int RunElect(ElectFlags f) {
  if (!f.command.empty() && f.command.front() == "--") f.command.erase(f.command.begin());
  std::chrono::milliseconds wait{0};
  if (!f.wait.empty()) {
    auto ms = ParseDurationMs(f.wait);
    if (!ms.ok() || *ms == 0) {
      std::fprintf(stderr, "latchkey elect: --wait: %s\n",
                   ms.ok() ? "must be more than 0" : ms.status().message().c_str());
      return kExitUsage;
    }
    wait = std::chrono::milliseconds(*ms);
  }
  auto session_ttl = ParseDurationMs(f.client.session_ttl);
  if (!session_ttl.ok()) {
    std::fprintf(stderr, "latchkey elect: --session-ttl: %s\n",
                 session_ttl.status().message().c_str());
    return kExitUsage;
  }
  const std::string value = f.value.empty() ? UserAtHostPid() : f.value;

  sigset_t stop;
  sigemptyset(&stop);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&stop, s);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  auto sh = std::make_shared<Shared>();
  std::thread(SignalThread, sh, stop).detach();

  ClientOptions co;
  co.endpoint = f.client.endpoint;
  co.auth_token = f.client.AuthToken();
  co.client_name = "latchkey-elect " + UserAtHostPid();
  co.session_ttl = std::chrono::milliseconds(*session_ttl);
  co.on_session_lost =
      StopCommandOnSessionLost(sh, "latchkey elect", "no longer the leader of '" + f.name + "'");
  auto connected = Client::Connect(co);
  if (!connected.ok()) {
    return ReportConnectFailure("latchkey elect", f.client.endpoint.c_str(), connected.status());
  }
  std::unique_ptr<Client> client = std::move(connected.value());
  Election election(*client, f.name);

  std::thread campaigner([&] {
    Result<uint64_t> r = election.Campaign(value, wait);
    std::lock_guard<std::mutex> g(sh->mu);
    sh->elected.emplace(std::move(r));
    sh->cv.notify_all();
  });
  if (!f.quiet) {
    if (auto l = election.Leader(); l.ok() && l->session_id != client->session_id()) {
      std::fprintf(stderr, "latchkey elect: campaigning for '%s'; leader now: %s, term %llu\n",
                   f.name.c_str(), DescribeOwner(l->session_id, l->owner, l->client_name).c_str(),
                   static_cast<unsigned long long>(l->term));
    }
  }
  int sig = 0;
  {
    std::unique_lock<std::mutex> lk(sh->mu);
    sh->cv.wait(lk, [&] { return sh->elected.has_value() || sh->signal != 0; });
    sig = sh->elected ? 0 : sh->signal;
  }
  if (sig != 0) {
    (void)client->Close();  // withdraws the candidacy; Campaign returns
    campaigner.join();
    return 128 + sig;
  }
  campaigner.join();
  Result<uint64_t> term = std::move(*sh->elected);
  if (!term.ok()) {
    std::fprintf(stderr, "latchkey elect: %s\n", term.status().ToString().c_str());
    if (term.status().code() == Code::kTimeout) return kExitBusy;
    if (term.status().code() == Code::kInvalidArgument) return kExitUsage;
    return kExitUnavailable;
  }
  if (!f.quiet) {
    std::printf("elected leader of '%s' (term %llu) with value '%s'\n", f.name.c_str(),
                static_cast<unsigned long long>(*term), value.c_str());
    std::fflush(stdout);
  }

  int rc = 0;
  if (!f.command.empty()) {
    rc = RunLeaderChild(f, value, *term, client->session_id(), *sh, stop);
  } else {
    std::unique_lock<std::mutex> lk(sh->mu);
    sh->cv.wait(lk, [&] { return sh->signal != 0 || sh->session_lost.load(); });
  }
  if (sh->session_lost) return kExitSessionLost;
  Status s = election.Resign();
  if (!s.ok()) std::fprintf(stderr, "latchkey elect: resign failed: %s\n", s.ToString().c_str());
  if (!f.quiet) std::fprintf(stderr, "latchkey elect: resigned from '%s'\n", f.name.c_str());
  (void)client->Close();
  return rc;
}

}  // namespace

Subcommand AddElectCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "elect",
      "Campaign to lead election NAME. Once elected, print 'elected leader of NAME (term T)', "
      "run COMMAND while leader and resign when it exits; without a command, lead until "
      "Ctrl-C/SIGTERM. Candidates are elected in arrival order; a crashed leader is replaced "
      "once its session lease (--session-ttl) runs out. The command gets LATCHKEY_ELECTION, "
      "LATCHKEY_TERM (= LATCHKEY_FENCING_TOKEN, strictly increasing: pass it to the resource "
      "you guard), LATCHKEY_LEADER_VALUE and LATCHKEY_SESSION_ID. Exit status: the "
      "command's; 75 when --wait ran out; 76 when the session (and leadership) was lost; 69 "
      "when the server is unreachable.");
  auto f = std::make_shared<ElectFlags>();
  cmd->add_option("name", f->name, "Election name, e.g. scheduler")->required();
  cmd->add_option("command", f->command, "Command to run while leader (after --)");
  cmd->add_option("--value", f->value,
                  "What the leader announces (e.g. its address); default: user@host pid N");
  cmd->add_option("-w,--wait", f->wait, "Give up if not elected within this time (e.g. 30s)");
  cmd->add_flag("-q,--quiet", f->quiet, "Print nothing when elected");
  AddClientFlags(cmd, &f->client);
  cmd->positionals_at_end();
  return {cmd, [f]() { return RunElect(*f); }};
}

}  // namespace latchkey::cli
