// `latchkey server`: runs a node until SIGTERM / SIGINT.
#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>

#include "cli/commands.h"
#include "common/log.h"
#include "server/server.h"

namespace latchkey::cli {

Subcommand AddServerCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "server",
      "Run a Latchkey node (single node by default: a one-voter Raft group whose data lives "
      "in --data-dir). Stops cleanly on SIGTERM or Ctrl-C.");
  auto opts = std::make_shared<server::ServerOptions>();
  auto ready_file = std::make_shared<std::string>();
  auto log_level = std::make_shared<std::string>("info");
  cmd->add_option("--listen", opts->listen,
                  "Client address: HOST:PORT (port 0 picks a free port) or unix:/PATH")
      ->capture_default_str();
  cmd->add_option("--data-dir", opts->data_dir, "Directory for the Raft log and snapshots")
      ->capture_default_str();
  cmd->add_option("--raft-address", opts->raft_address,
                  "HOST:PORT of libraft's peer transport (bound even on a single node)")
      ->capture_default_str();
  cmd->add_option("--node-id", opts->node_id, "This node's Raft id")->capture_default_str();
  cmd->add_option("--default-session-ttl-ms", opts->default_session_ttl_ms,
                  "Lease of sessions that ask for no TTL")
      ->capture_default_str();
  cmd->add_option("--ready-file", *ready_file,
                  "Write the listen address to this file once serving (for scripts)");
  cmd->add_option("--log-level", *log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();
  return {cmd, [opts, ready_file, log_level]() -> int {
            SetLogLevel(*log_level == "debug"   ? LogLevel::kDebug
                        : *log_level == "warn"  ? LogLevel::kWarn
                        : *log_level == "error" ? LogLevel::kError
                                                : LogLevel::kInfo);
            // Block the stop signals in every thread; this thread waits for them.
            sigset_t stop;
            sigemptyset(&stop);
            sigaddset(&stop, SIGTERM);
            sigaddset(&stop, SIGINT);
            pthread_sigmask(SIG_BLOCK, &stop, nullptr);

            server::Server srv(*opts);
            Status st = srv.Start();
            if (!st.ok()) {
              std::fprintf(stderr, "latchkey server: cannot start: %s\n", st.ToString().c_str());
              return kExitUnavailable;
            }
            std::printf("latchkey %s serving on %s (data in %s, single-node raft at %s)\n",
                        LATCHKEY_VERSION, srv.listen_address().c_str(), opts->data_dir.c_str(),
                        opts->raft_address.c_str());
            std::fflush(stdout);
            if (!ready_file->empty()) {
              std::string tmp = *ready_file + ".tmp";
              {
                std::ofstream f(tmp);
                f << srv.listen_address() << "\n";
              }
              std::rename(tmp.c_str(), ready_file->c_str());
            }
            int sig = 0;
            sigwait(&stop, &sig);
            LK_LOG_INFO("received %s; shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            srv.Stop();
            return 0;
          }};
}

}  // namespace latchkey::cli
