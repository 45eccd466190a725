// `latchkey lock NAME -- COMMAND...`: runs COMMAND while holding NAME.
//
// Signals: SIGINT/SIGTERM/SIGHUP/SIGQUIT are blocked in every thread and
// taken by a sigwait thread. While waiting for the lock they abort the wait
// (the session is closed so the server withdraws the request); while the
// command runs they are forwarded to it. If the session is lost while the
// command runs, the command gets SIGTERM: it no longer holds the lock.
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
#include "latchkey/client.h"

namespace latchkey::cli {
namespace {

struct LockFlags {
  ClientFlags client;
  std::string name;
  std::string mode = "EX";
  std::string wait;  // empty = wait without limit
  bool no_wait = false;
  std::string ttl;
  bool quiet = false;
  std::vector<std::string> command;
};

// State shared between the main thread, the signal thread, the acquiring
// thread and the client's session-lost callback.
struct Shared : SignalState {
  std::optional<Result<Grant>> acquired;
};

// What keeps this session from `name`, for the waiting line: every holder
// of the name and of the names above and below it (whose grants conflict
// through intention modes), with their modes and ages.
std::string Describe(Client& client, const std::string& name, uint64_t self) {
  std::vector<LockInfo> related;
  if (auto below = client.ListLocks(name, 50); below.ok()) related = std::move(*below);
  for (const std::string& a : AncestorNames(name)) {
    if (auto up = client.GetLock(a); up.ok() && (up->held || !up->waiter_list.empty())) {
      related.push_back(std::move(*up));
    }
  }
  constexpr size_t kMaxShown = 4;
  std::vector<std::string> parts;
  size_t holders = 0, others_waiting = 0, waiting_related = 0;
  for (const LockInfo& l : related) {
    std::string held;
    for (const LockHolderInfo& h : l.holders) {
      if (h.session_id == self) continue;
      if (++holders > kMaxShown) continue;
      held += (held.empty() ? "" : ", ") + DescribeHolder(h, l.server_time_ms);
    }
    if (!held.empty()) {
      parts.push_back((l.name == name ? "held by " : "'" + l.name + "' held by ") + held);
    }
    for (const LockWaiterInfo& w : l.waiter_list) {
      if (w.session_id == self) continue;
      ++(l.name == name ? others_waiting : waiting_related);
    }
  }
  std::string s;
  if (holders == 0) {
    s = waiting_related > 0 ? "queued behind " + std::to_string(waiting_related) +
                                  " earlier request(s) for names above or below it"
                            : "not held (being handed over)";
  } else {
    for (size_t i = 0; i < parts.size(); ++i) s += (i ? "; " : "") + parts[i];
    if (holders > kMaxShown) s += " and " + std::to_string(holders - kMaxShown) + " more";
  }
  if (others_waiting > 0) s += ", " + std::to_string(others_waiting) + " others waiting";
  return s;
}

int RunChild(const LockFlags& f, const Grant& grant, uint64_t session_id, Shared& sh,
             const sigset_t& blocked) {
  return RunChildWhileHeld("latchkey lock", f.command,
                           {{"LATCHKEY_LOCK_NAME", f.name},
                            {"LATCHKEY_FENCING_TOKEN", std::to_string(grant.fencing_token)},
                            {"LATCHKEY_LOCK_MODE", std::string(LockModeName(grant.mode))},
                            {"LATCHKEY_SESSION_ID", std::to_string(session_id)},
                            {"LATCHKEY_ENDPOINT", f.client.endpoint}},
                           sh, blocked);
}

int RunLock(LockFlags f) {
  if (!f.command.empty() && f.command.front() == "--") f.command.erase(f.command.begin());
  if (f.command.empty()) {
    std::fprintf(stderr, "latchkey lock: no command given; write: latchkey lock NAME -- COMMAND\n");
    return kExitUsage;
  }
  AcquireOptions ao;
  if (auto mode = ParseLockMode(f.mode)) {
    ao.mode = *mode;
  } else {
    std::fprintf(stderr,
                 "latchkey lock: --mode: unknown lock mode '%s'; use one of NL CR CW PR PW EX "
                 "(or IS IX S SIX X)\n",
                 f.mode.c_str());
    return kExitUsage;
  }
  if (f.no_wait && !f.wait.empty()) {
    std::fprintf(stderr, "latchkey lock: --wait and --no-wait exclude each other\n");
    return kExitUsage;
  }
  ao.try_only = f.no_wait;
  if (!f.wait.empty()) {
    auto ms = ParseDurationMs(f.wait);
    if (!ms.ok()) {
      std::fprintf(stderr, "latchkey lock: --wait: %s\n", ms.status().message().c_str());
      return kExitUsage;
    }
    if (*ms == 0) ao.try_only = true;
    ao.wait_timeout = std::chrono::milliseconds(*ms);
  }
  if (!f.ttl.empty()) {
    auto ms = ParseDurationMs(f.ttl);
    if (!ms.ok()) {
      std::fprintf(stderr, "latchkey lock: --ttl: %s\n", ms.status().message().c_str());
      return kExitUsage;
    }
    ao.lock_ttl = std::chrono::milliseconds(*ms);
  }
  auto session_ttl = ParseDurationMs(f.client.session_ttl);
  if (!session_ttl.ok()) {
    std::fprintf(stderr, "latchkey lock: --session-ttl: %s\n",
                 session_ttl.status().message().c_str());
    return kExitUsage;
  }

  sigset_t stop;
  sigemptyset(&stop);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&stop, s);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  auto sh = std::make_shared<Shared>();
  std::thread(SignalThread, sh, stop).detach();

  const bool chatty = !f.quiet && isatty(STDERR_FILENO);
  ClientOptions co;
  co.endpoint = f.client.endpoint;
  co.auth_token = f.client.AuthToken();
  co.client_name = "latchkey-lock " + UserAtHostPid();
  co.session_ttl = std::chrono::milliseconds(*session_ttl);
  co.on_session_lost =
      StopCommandOnSessionLost(sh, "latchkey lock", "'" + f.name + "' is no longer held");
  auto connected = Client::Connect(co);
  if (!connected.ok()) {
    return ReportConnectFailure("latchkey lock", f.client.endpoint.c_str(), connected.status());
  }
  std::unique_ptr<Client> client = std::move(connected.value());

  const auto t0 = std::chrono::steady_clock::now();
  std::thread acquirer([&] {
    Result<Grant> r = client->Acquire(f.name, ao);
    std::lock_guard<std::mutex> g(sh->mu);
    sh->acquired.emplace(std::move(r));
    sh->cv.notify_all();
  });

  bool shown = false;
  {
    std::unique_lock<std::mutex> lk(sh->mu);
    auto next_report = t0 + std::chrono::milliseconds(300);
    while (!sh->acquired && sh->signal == 0) {
      sh->cv.wait_until(lk, next_report);
      if (sh->acquired || sh->signal != 0) break;
      if (std::chrono::steady_clock::now() < next_report) continue;
      next_report += std::chrono::seconds(1);
      if (!chatty) continue;
      lk.unlock();
      std::fprintf(stderr, "\r\033[Klatchkey: waiting for '%s' in %s: %s", f.name.c_str(),
                   std::string(LockModeName(ao.mode)).c_str(),
                   Describe(*client, f.name, client->session_id()).c_str());
      shown = true;
      lk.lock();
    }
  }
  if (shown) std::fprintf(stderr, "\r\033[K");

  int sig = 0;
  {
    std::lock_guard<std::mutex> g(sh->mu);
    sig = sh->acquired ? 0 : sh->signal;
  }
  if (sig != 0) {
    // Closing the session withdraws the wait on the server; Acquire returns.
    if (chatty) std::fprintf(stderr, "latchkey lock: interrupted; withdrawing the request\n");
    (void)client->Close();
    acquirer.join();
    return 128 + sig;
  }
  acquirer.join();
  Result<Grant> grant = std::move(*sh->acquired);
  if (!grant.ok()) {
    const Status& s = grant.status();
    std::fprintf(stderr, "latchkey lock: '%s' not acquired: %s\n", f.name.c_str(),
                 s.ToString().c_str());
    if (s.code() == Code::kLockBusy || s.code() == Code::kTimeout) return kExitBusy;
    if (s.code() == Code::kInvalidArgument) return kExitUsage;
    return kExitUnavailable;
  }
  if (chatty) {
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    std::fprintf(stderr, "latchkey: acquired '%s' in %s (fencing token %llu) after %s\n",
                 f.name.c_str(), std::string(LockModeName(grant->mode)).c_str(),
                 static_cast<unsigned long long>(grant->fencing_token),
                 FormatDurationMs(static_cast<uint64_t>(waited.count())).c_str());
  }

  int rc = RunChild(f, *grant, client->session_id(), *sh, stop);
  if (sh->session_lost) return kExitSessionLost;
  Status rel = client->Release(f.name);
  if (!rel.ok()) {
    std::fprintf(stderr, "latchkey lock: release of '%s' failed: %s\n", f.name.c_str(),
                 rel.ToString().c_str());
  }
  (void)client->Close();
  return rc;
}

}  // namespace

Subcommand AddLockCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "lock",
      "Run COMMAND while holding the lock NAME (exclusive unless --mode says otherwise), then "
      "release it.\n"
      "The command gets LATCHKEY_LOCK_NAME, LATCHKEY_LOCK_MODE, LATCHKEY_FENCING_TOKEN and "
      "LATCHKEY_SESSION_ID in its environment; pass the fencing token to the resource you guard so "
      "it can reject a "
      "stale holder. Exit status: the command's; 75 when the lock was busy or the wait timed "
      "out; 76 when the session was lost while the command ran; 69 when the server is "
      "unreachable; 64 on bad arguments.");
  auto f = std::make_shared<LockFlags>();
  cmd->add_option("name", f->name, "Lock name, e.g. build.artifacts")->required();
  cmd->add_option("command", f->command, "Command to run (after --)")->required();
  cmd->add_option("-m,--mode", f->mode,
                  "Lock mode: EX (exclusive), PR (shared: readers run together), PW, CW, CR, NL; "
                  "or IS IX S SIX X. A lock on a.b.c also takes the matching intention mode on "
                  "a.b and a, so 'lock --mode PR a' waits for writers anywhere below a")
      ->capture_default_str();
  cmd->add_option("-w,--wait", f->wait,
                  "Give up if not acquired within this time (e.g. 10s, 500ms); default: wait");
  cmd->add_flag("-n,--no-wait", f->no_wait, "Fail at once (exit 75) if the lock is held");
  cmd->add_option("--ttl", f->ttl,
                  "Lock time-to-live: the server releases it after this long even if the "
                  "command still runs (default: held until the command exits)");
  cmd->add_flag("-q,--quiet", f->quiet, "Do not show who holds the lock while waiting");
  AddClientFlags(cmd, &f->client);
  cmd->positionals_at_end();
  return {cmd, [f]() { return RunLock(*f); }};
}

}  // namespace latchkey::cli
