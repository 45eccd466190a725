// Running a command while a lock (or a leadership) is held, shared by
// `latchkey lock` (cmd_lock.cc) and `latchkey elect` (cmd_elect.cc).
//
// Signals: the caller blocks SIGINT/SIGTERM/SIGHUP/SIGQUIT in every thread
// and starts SignalThread, which takes them with sigwait. Before the command
// runs, the first signal is recorded in `signal` (the waiting main thread
// wakes on `cv`); while it runs, every signal is forwarded to it.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace latchkey::cli {

struct SignalState {
  std::mutex mu;
  std::condition_variable cv;
  int signal = 0;  // first stop signal received before a child ran
  std::atomic<pid_t> child{0};
  std::atomic<bool> session_lost{false};
};

// Runs forever on a detached thread: sigwait on `set`, forward or record.
void SignalThread(std::shared_ptr<SignalState> sh, sigset_t set);

// A ClientOptions::on_session_lost that records the loss in `sh`, says on
// stderr "WHO: session lost (WHY): WHAT", sends SIGTERM to the running
// command (if any) and wakes the waiting main thread.
std::function<void(const Status&)> StopCommandOnSessionLost(std::shared_ptr<SignalState> sh,
                                                            std::string who, std::string what);

// "user@host pid N", to name this process in client names and values.
std::string UserAtHostPid();

// Forks and runs `command` with `env` added, unblocking `blocked` in the
// child; forwards a signal that arrived before the fork, sends SIGTERM if the
// session is already lost, and waits. Returns the command's exit code (128 +
// signal if killed). `who` prefixes error messages ("latchkey lock").
int RunChildWhileHeld(const char* who, const std::vector<std::string>& command,
                      const std::vector<std::pair<std::string, std::string>>& env, SignalState& sh,
                      const sigset_t& blocked);

}  // namespace latchkey::cli
