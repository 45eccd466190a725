#include "cli/child_process.h"

#include <pthread.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cli/commands.h"

namespace latchkey::cli {

void SignalThread(std::shared_ptr<SignalState> sh, sigset_t set) {
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    pid_t child = sh->child.load();
    if (child > 0) {
      kill(child, sig);  // forward; the child decides what to do
      continue;
    }
    std::lock_guard<std::mutex> g(sh->mu);
    if (sh->signal == 0) sh->signal = sig;
    sh->cv.notify_all();
  }
}

std::string UserAtHostPid() {
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  const char* user = std::getenv("USER");
  if (user == nullptr) {
    if (const passwd* pw = getpwuid(getuid())) user = pw->pw_name;
  }
  return std::string(user ? user : "?") + "@" + host + " pid " + std::to_string(getpid());
}

int RunChildWhileHeld(const char* who, const std::vector<std::string>& command,
                      const std::vector<std::pair<std::string, std::string>>& env, SignalState& sh,
                      const sigset_t& blocked) {
  pid_t pid = fork();
  if (pid < 0) {
    std::fprintf(stderr, "%s: fork failed: %s\n", who, std::strerror(errno));
    return kExitSoftware;
  }
  if (pid == 0) {
    pthread_sigmask(SIG_UNBLOCK, &blocked, nullptr);
    for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
    std::vector<char*> argv;
    for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "%s: cannot run '%s': %s\n", who, argv[0], std::strerror(errno));
    _exit(127);
  }
  sh.child = pid;
  // A signal that arrived between the grant and the fork is forwarded now.
  {
    std::lock_guard<std::mutex> g(sh.mu);
    if (sh.signal != 0) kill(pid, sh.signal);
  }
  if (sh.session_lost) kill(pid, SIGTERM);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  sh.child = 0;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return kExitSoftware;
}

std::function<void(const Status&)> StopCommandOnSessionLost(std::shared_ptr<SignalState> sh,
                                                            std::string who, std::string what) {
  return [sh = std::move(sh), who = std::move(who), what = std::move(what)](const Status& why) {
    sh->session_lost = true;
    const pid_t child = sh->child.load();
    std::fprintf(stderr, "%s: session lost (%s): %s%s\n", who.c_str(), why.ToString().c_str(),
                 what.c_str(), child > 0 ? "; sending SIGTERM to the command" : "");
    if (child > 0) kill(child, SIGTERM);
    std::lock_guard<std::mutex> g(sh->mu);
    sh->cv.notify_all();
  };
}

}  // namespace latchkey::cli
