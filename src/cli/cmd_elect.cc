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

std::string Identity() {
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  const char* user = std::getenv("USER");
  if (user == nullptr) {
    if (const passwd* pw = getpwuid(getuid())) user = pw->pw_name;
  }
  return std::string(user ? user : "?") + "@" + host + " pid " + std::to_string(getpid());
}

struct Shared {
  std::mutex mu;
  std::condition_variable cv;
  int signal = 0;
  std::optional<Result<uint64_t>> elected;
  std::atomic<pid_t> child{0};
  std::atomic<bool> session_lost{false};
};

void SignalThread(std::shared_ptr<Shared> sh, sigset_t set) {
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    pid_t child = sh->child.load();
    if (child > 0) {
      kill(child, sig);
      continue;
    }
    std::lock_guard<std::mutex> g(sh->mu);
    if (sh->signal == 0) sh->signal = sig;
    sh->cv.notify_all();
  }
}

int RunLeaderChild(const ElectFlags& f, const std::string& value, uint64_t term,
                   uint64_t session_id, const std::shared_ptr<Shared>& sh,
                   const sigset_t& blocked) {
  pid_t pid = fork();
  if (pid < 0) {
    std::fprintf(stderr, "latchkey elect: fork failed: %s\n", std::strerror(errno));
    return kExitSoftware;
  }
  if (pid == 0) {
    pthread_sigmask(SIG_UNBLOCK, &blocked, nullptr);
    setenv("LATCHKEY_ELECTION", f.name.c_str(), 1);
    setenv("LATCHKEY_LEADER_VALUE", value.c_str(), 1);
    setenv("LATCHKEY_TERM", std::to_string(term).c_str(), 1);
    setenv("LATCHKEY_FENCING_TOKEN", std::to_string(term).c_str(), 1);
    setenv("LATCHKEY_SESSION_ID", std::to_string(session_id).c_str(), 1);
    setenv("LATCHKEY_ENDPOINT", f.client.endpoint.c_str(), 1);
    std::vector<char*> argv;
    for (const auto& a : f.command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "latchkey elect: cannot run '%s': %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  sh->child = pid;
  {
    std::lock_guard<std::mutex> g(sh->mu);
    if (sh->signal != 0) kill(pid, sh->signal);
  }
  if (sh->session_lost) kill(pid, SIGTERM);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  sh->child = 0;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return kExitSoftware;
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
  const std::string value = f.value.empty() ? Identity() : f.value;

  sigset_t stop;
  sigemptyset(&stop);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&stop, s);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  auto sh = std::make_shared<Shared>();
  std::thread(SignalThread, sh, stop).detach();

  ClientOptions co;
  co.endpoint = f.client.endpoint;
  co.client_name = "latchkey-elect " + Identity();
  co.session_ttl = std::chrono::milliseconds(*session_ttl);
  co.on_session_lost = [sh, name = f.name](const Status& why) {
    sh->session_lost = true;
    pid_t child = sh->child.load();
    std::fprintf(stderr, "latchkey elect: session lost (%s): no longer the leader of '%s'%s\n",
                 why.ToString().c_str(), name.c_str(),
                 child > 0 ? "; sending SIGTERM to the command" : "");
    if (child > 0) kill(child, SIGTERM);
    std::lock_guard<std::mutex> g(sh->mu);
    sh->cv.notify_all();
  };
  auto connected = Client::Connect(co);
  if (!connected.ok()) {
    std::fprintf(stderr, "latchkey elect: cannot reach %s: %s\n", f.client.endpoint.c_str(),
                 connected.status().ToString().c_str());
    return kExitUnavailable;
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
    rc = RunLeaderChild(f, value, *term, client->session_id(), sh, stop);
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
