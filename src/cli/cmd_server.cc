// `latchkey server`: runs a node until SIGTERM / SIGINT.
#include <malloc.h>
#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "cli/commands.h"
#include "common/log.h"
#include "server/cluster_config.h"
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
  auto peers = std::make_shared<std::string>();
  auto* listen_opt =
      cmd->add_option("--listen", opts->listen,
                      "Client address: HOST:PORT (port 0 picks a free port) or unix:/PATH. "
                      "In cluster mode defaults to this node's client address in --peers")
          ->capture_default_str()
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  // The last --listen / --data-dir / --raft-address wins, so a wrapper such as
  // scripts/run-server.sh can pass defaults and still take the user's.
  cmd->add_option("--data-dir", opts->data_dir, "Directory for the Raft log and snapshots")
      ->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  auto* raft_opt = cmd->add_option("--raft-address", opts->raft_address,
                                   "HOST:PORT of libraft's peer transport (bound even on a "
                                   "single node; taken from --peers in cluster mode)")
                       ->capture_default_str()
                       ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--node-id", opts->node_id, "This node's Raft id")->capture_default_str();
  cmd->add_option("--peers", *peers,
                  "Cluster mode: every initial voter as ID=RAFT_HOST:PORT@CLIENT_HOST:PORT, "
                  "comma-separated; the same list on every node (first boot bootstraps it, "
                  "restarts rejoin from --data-dir)");
  cmd->add_flag("--join", opts->join,
                "Start empty and wait to be added with `latchkey member add` (no bootstrap)");
  cmd->add_option("--election-timeout-ms", opts->election_timeout_ms,
                  "Raft election timeout (randomized up to twice this)")
      ->capture_default_str();
  cmd->add_option("--heartbeat-timeout-ms", opts->heartbeat_timeout_ms,
                  "Raft heartbeat period; must be below the election timeout")
      ->capture_default_str();
  // Tests shrink these to force compaction and snapshot installs.
  cmd->add_option("--snapshot-threshold", opts->snapshot_threshold)->group("");
  cmd->add_option("--snapshot-trailing", opts->snapshot_trailing)->group("");
  cmd->add_option_function<std::string>(
         "--client-io",
         [opts](const std::string& v) {
           opts->client_io = v == "threads" ? server::ServerOptions::ClientIo::kThreads
                                            : server::ServerOptions::ClientIo::kLoop;
         },
         "Where client connections are served: 'loop' (on the Raft loop thread, no handoff "
         "per request) or 'threads' (an io thread hands requests to the loop)")
      ->check(CLI::IsMember({"loop", "threads"}))
      ->default_str("loop");
  // For A/B runs of the scheduling policy (docs/benchmarks/sessions-04-06.md).
  cmd->add_option("--io-sched-batch", opts->io_sched_batch)->group("");
  cmd->add_option("--direct-writes", opts->direct_writes)->group("");
  cmd->add_option("--idle-compaction-ms", opts->idle_compaction_ms,
                  "Once no write arrived for this long, snapshot and shorten the log, and "
                  "return the memory it held (0 = off)")
      ->capture_default_str();
  cmd->add_option("--default-session-ttl-ms", opts->default_session_ttl_ms,
                  "Lease of sessions that ask for no TTL")
      ->capture_default_str();
  // Limits on untrusted input (docs/operations.md, "Limits").
  cmd->add_option("--max-connections", opts->max_connections,
                  "Client connections at once; more are refused with RESOURCE_EXHAUSTED")
      ->capture_default_str();
  cmd->add_option("--max-frame-bytes", opts->max_frame_bytes,
                  "Largest frame a client may send (FRAME_TOO_LARGE beyond)")
      ->capture_default_str();
  cmd->add_option("--max-pending-write-bytes", opts->max_pending_write_bytes,
                  "Replies and pushes queued for a client that does not read; beyond, the "
                  "connection is closed (slow consumer)")
      ->capture_default_str();
  cmd->add_option("--max-sessions", opts->max_sessions, "Live sessions on the server")
      ->capture_default_str();
  cmd->add_option("--max-sessions-per-connection", opts->max_sessions_per_connection,
                  "Sessions opened or attached on one connection")
      ->capture_default_str();
  cmd->add_option("--max-waits-per-session", opts->max_waits_per_session,
                  "Waiting requests (locks, semaphores, latches, barriers) of one session")
      ->capture_default_str();
  cmd->add_option("--max-locks", opts->max_locks,
                  "Held plus waiting locks on the server (~470 bytes each)")
      ->capture_default_str();
  cmd->add_option("--metrics-listen", opts->metrics_listen,
                  "Serve Prometheus metrics at http://HOST:PORT/metrics (off unless given; "
                  "bind it to a trusted network only)");
  auto token_file = std::make_shared<std::string>();
  cmd->add_option("--auth-token-file", *token_file,
                  "Require every client to send the token this file holds (chmod 600 it; "
                  "clients pass the same file). Tokens travel unencrypted: trusted networks "
                  "only. The Raft port between nodes is not covered")
      ->check(CLI::ExistingFile);
  cmd->add_option("--ready-file", *ready_file,
                  "Write the listen address to this file once serving (for scripts)");
  cmd->add_option("--log-level", *log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();
  // Object store (docs/design/0008-object-store.md).
  cmd->add_option("--object-default-ttl-ms", opts->object_default_ttl_ms,
                  "TTL of objects given the server's default timeout")
      ->capture_default_str();
  cmd->add_option("--object-retain-revisions", opts->object_retain_revisions,
                  "Automatic compaction keeps at least this many revisions (0 = no bound)")
      ->capture_default_str();
  cmd->add_option("--object-retain-ms", opts->object_retain_ms,
                  "Automatic compaction keeps history younger than this (0 = no bound; both "
                  "0 = compact only on request)")
      ->capture_default_str();
  // Planted bugs for the nemesis's own tests (ServerOptions::test_only_bug):
  // hidden, and refused without LATCHKEY_ALLOW_TEST_BUGS=1.
  cmd->add_option("--test-only-bug", opts->test_only_bug)
      ->check(CLI::IsMember({"skip-watch-event", "stale-object-read"}))
      ->group("");
  return {cmd, [opts, ready_file, log_level, peers, listen_opt, raft_opt, token_file]() -> int {
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

            if (!peers->empty()) {
              auto parsed = server::ParsePeers(*peers);
              Status st = parsed.status();
              if (st.ok()) {
                opts->peers = std::move(parsed).value();
                st = server::ApplyPeers(opts.get(), listen_opt->count() > 0, raft_opt->count() > 0);
              }
              if (!st.ok()) {
                std::fprintf(stderr, "latchkey server: %s\n", st.message().c_str());
                return kExitUsage;
              }
            }
            if (!opts->test_only_bug.empty()) {
              const char* allow = std::getenv("LATCHKEY_ALLOW_TEST_BUGS");
              if (allow == nullptr || std::string(allow) != "1") {
                std::fprintf(stderr,
                             "latchkey server: --test-only-bug plants a bug; it needs "
                             "LATCHKEY_ALLOW_TEST_BUGS=1\n");
                return kExitUsage;
              }
              LK_LOG_WARN("PLANTED BUG %s is active (tests only)", opts->test_only_bug.c_str());
            }
            if (!token_file->empty()) {
              Result<std::string> token = ReadAuthTokenFile(*token_file);
              if (!token.ok()) {
                std::fprintf(stderr, "latchkey server: %s\n", token.status().message().c_str());
                return kExitUsage;
              }
              opts->auth_token = std::move(token).value();
            }
            // Large buffers (snapshots, big frames) get pages of their own
            // that go back to the OS when freed. glibc would otherwise raise
            // the threshold to the largest block freed so far and serve the
            // next ones from the heap, where they keep RSS up (W3 in
            // docs/benchmarks/sessions-10-11.md, session 11: 7 bytes per held lock).
            mallopt(M_MMAP_THRESHOLD, 64 * 1024);
            server::Server srv(*opts);
            Status st = srv.Start();
            if (!st.ok()) {
              std::fprintf(stderr, "latchkey server: cannot start: %s\n", st.ToString().c_str());
              return kExitUnavailable;
            }
            std::printf("latchkey %s serving on %s (data in %s, %s raft at %s, node %llu)\n",
                        LATCHKEY_VERSION, srv.listen_address().c_str(), opts->data_dir.c_str(),
                        opts->join               ? "joining"
                        : opts->peers.size() > 1 ? "cluster"
                                                 : "single-node",
                        opts->raft_address.c_str(), static_cast<unsigned long long>(opts->node_id));
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
