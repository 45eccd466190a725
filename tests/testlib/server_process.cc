#include "testlib/server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace latchkey::testing {

std::string LatchkeyBinary() {
  const char* env = std::getenv("LATCHKEY_BIN");
  return env ? env : LATCHKEY_BIN;
}

// LATCHKEY_TEST_LOG_LEVEL=debug makes the servers started by tests log more.
std::string TestLogLevel() {
  const char* env = std::getenv("LATCHKEY_TEST_LOG_LEVEL");
  return env && *env ? env : "warn";
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/latchkey-test-XXXXXX";
  char* p = mkdtemp(tmpl.data());
  if (p == nullptr) std::abort();
  path_ = p;
}

TempDir::~TempDir() {
  // LATCHKEY_KEEP_TEST_DIRS=1 keeps data dirs and server logs for a post-mortem.
  if (const char* keep = std::getenv("LATCHKEY_KEEP_TEST_DIRS"); keep && *keep == '1') {
    std::fprintf(stderr, "kept test dir %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

int PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

std::string ExchangeOnLoopback(int port, std::string_view request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    if (!request.empty()) ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 10'000) <= 0) break;
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return out;
}

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling interval
  }
  return cond();
}

ServerProcess::ServerProcess(std::string data_dir, std::vector<std::string> extra_args)
    : data_dir_(std::move(data_dir)), extra_args_(std::move(extra_args)) {}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) Kill9();
}

bool ServerProcess::Start(int listen_port) {
  // A single voter's raft transport has no peers: port 0 avoids two tests
  // racing for the same "free" port.
  const std::string ready = data_dir_ + ".ready";
  std::filesystem::remove(ready);
  std::vector<std::string> argv = {
      LatchkeyBinary(), "server",  "--listen",       "127.0.0.1:" + std::to_string(listen_port),
      "--data-dir",     data_dir_, "--raft-address", "127.0.0.1:" + std::to_string(raft_port_),
      "--ready-file",   ready,     "--log-level",    TestLogLevel()};
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  pid_ = SpawnCommand(argv, data_dir_ + ".log");
  std::string addr;
  bool exited = false;
  bool ok = WaitFor(
      [&] {
        std::ifstream f(ready);
        if (f >> addr) return true;
        int status = 0;
        exited = waitpid(pid_, &status, WNOHANG) == pid_;
        return exited;
      },
      std::chrono::seconds(30));
  if (!ok || exited) {
    // Say why: the tail of the server's log (e.g. a port taken meanwhile).
    std::ifstream log(data_dir_ + ".log");
    std::deque<std::string> last;
    for (std::string line; std::getline(log, line);) {
      last.push_back(std::move(line));
      if (last.size() > 20) last.pop_front();
    }
    std::string tail;
    for (const std::string& l : last) tail += l + "\n";
    std::fprintf(stderr, "server %s did not become ready (%s); its log ends:\n%s\n",
                 data_dir_.c_str(), exited ? "it exited" : "timed out", tail.c_str());
    if (exited) pid_ = -1;
    return false;
  }
  endpoint_ = addr;
  port_ = std::stoi(addr.substr(addr.rfind(':') + 1));
  return true;
}

void ServerProcess::Kill9() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  WaitPid(pid_);
  pid_ = -1;
}

bool ServerProcess::Terminate() {
  if (pid_ <= 0) return false;
  kill(pid_, SIGTERM);
  // A clean stop takes well under a second; a hang fails the test instead of
  // hanging it.
  int status = 0;
  const bool exited =
      WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, std::chrono::seconds(30));
  if (!exited) {
    kill(pid_, SIGKILL);
    WaitPid(pid_);
    pid_ = -1;
    return false;
  }
  pid_ = -1;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool ServerProcess::Restart() {
  return Start(port_);
}

void ServerProcess::Stop(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

void ServerProcess::Cont() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

pid_t SpawnCommand(const std::vector<std::string>& argv, const std::string& output_file,
                   const std::string& working_dir) {
  pid_t pid = fork();
  if (pid == 0) {
    if (!working_dir.empty() && chdir(working_dir.c_str()) != 0) _exit(126);
    if (!output_file.empty()) {
      int fd = open(output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
      }
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

int WaitPid(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::string DescribeExit(int wait_status) {
  if (WIFEXITED(wait_status))
    return "exited with status " + std::to_string(WEXITSTATUS(wait_status));
  if (!WIFSIGNALED(wait_status))
    return "stopped or continued (status " + std::to_string(wait_status) + ")";
  const int sig = WTERMSIG(wait_status);
  const char* name = sigabbrev_np(sig);
  return "died of signal " + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : "") +
         (WCOREDUMP(wait_status) ? ", core dumped" : "");
}

std::optional<std::string> ReapIfExited(pid_t pid) {
  int status = 0;
  if (pid <= 0 || waitpid(pid, &status, WNOHANG) != pid) return std::nullopt;
  return DescribeExit(status);
}

std::optional<std::string> AwaitCleanExit(pid_t pid, std::chrono::milliseconds bound) {
  int status = 0;
  if (!WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, bound)) {
    kill(pid, SIGKILL);
    WaitPid(pid);
    return "did not stop on SIGTERM: killed";
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return std::nullopt;
  return "stopping, " + DescribeExit(status);
}

int RunCommand(const std::vector<std::string>& argv, std::string* output,
               const std::vector<std::string>& env) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    dup2(pipefd[1], 1);
    dup2(pipefd[1], 2);
    close(pipefd[1]);
    for (const auto& kv : env) putenv(const_cast<char*>(kv.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(pipefd[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  if (output) *output = out;
  return WaitPid(pid);
}

}  // namespace latchkey::testing
