// ServerProcess: runs the real `latchkey server` binary for integration and
// fault tests, on 127.0.0.1 port 0 (or a given port) and a temp data dir.
// Waits for readiness by polling the --ready-file with a deadline.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace latchkey::testing {

// Path of the latchkey binary (set by CMake as LATCHKEY_BIN).
std::string LatchkeyBinary();

// A fresh directory under $TMPDIR (or /tmp), removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Returns a port that was free a moment ago on 127.0.0.1.
int PickFreePort();

// Connects to 127.0.0.1:port, sends `request` and returns all the peer
// answered until it closed (or sent nothing for 10 s); "" if the connect
// failed. For plain-text endpoints such as the metrics page.
std::string ExchangeOnLoopback(int port, std::string_view request);

// Polls cond every 5 ms until it holds or the deadline passes.
bool WaitFor(const std::function<bool()>& cond,
             std::chrono::milliseconds deadline = std::chrono::seconds(10));

class ServerProcess {
 public:
  explicit ServerProcess(std::string data_dir, std::vector<std::string> extra_args = {});
  ~ServerProcess();  // SIGKILL if still running

  // Starts and waits until it serves. listen_port 0 picks a free port; the
  // same port is reused by Restart().
  bool Start(int listen_port = 0);
  void Kill9();
  bool Terminate();  // SIGTERM + wait; true if it exited with status 0
  bool Restart();    // Start on the same listen port and data dir
  void Stop(int sig);
  void Cont();

  // Fixes the raft port before the first Start() (cluster tests must know
  // every node's addresses up front). 0 = pick one at Start().
  void set_raft_port(int port) { raft_port_ = port; }
  int raft_port() const { return raft_port_; }
  bool running() const { return pid_ > 0; }
  const std::string& data_dir() const { return data_dir_; }

  const std::string& endpoint() const { return endpoint_; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }

 private:
  std::string data_dir_;
  std::vector<std::string> extra_args_;
  std::string endpoint_;
  int port_ = 0;
  int raft_port_ = 0;
  pid_t pid_ = -1;
};

// Runs a command (argv) to completion; returns its exit status (or 128+sig),
// capturing stdout+stderr into *output if given.
int RunCommand(const std::vector<std::string>& argv, std::string* output = nullptr,
               const std::vector<std::string>& env = {});

// Starts a command in the background; returns its pid. stdout and stderr go
// to `output_file` (appended) if given; the command runs in `working_dir`
// if given (where its core file lands, with the default core_pattern).
pid_t SpawnCommand(const std::vector<std::string>& argv, const std::string& output_file = "",
                   const std::string& working_dir = "");
int WaitPid(pid_t pid);
// A waitpid() status in words: "exited with status N" or "died of signal N
// (NAME)", with ", core dumped" when it dumped one.
std::string DescribeExit(int wait_status);
// If `pid` has exited, reaps it and returns how (DescribeExit); nullopt
// while it runs (or is stopped). Does not block.
std::optional<std::string> ReapIfExited(pid_t pid);
// Waits up to `bound` for `pid` (already sent SIGTERM) to exit, and
// SIGKILLs and reaps it if it does not. Returns what went wrong ("did not
// stop on SIGTERM: killed", or "stopping, <DescribeExit>" for an exit other
// than status 0), or nullopt for a clean exit.
std::optional<std::string> AwaitCleanExit(pid_t pid, std::chrono::milliseconds bound);

}  // namespace latchkey::testing
