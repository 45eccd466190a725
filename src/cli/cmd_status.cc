// `latchkey status`: what the server is and holds.
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "cli/lock_display.h"
#include "common/duration.h"
#include "latchkey/client.h"

namespace latchkey::cli {
namespace {

// One JSON object with every field of the status, for scripts and probes.
void PrintJson(const ServerStatus& s) {
  auto num = [](uint64_t v) { return std::to_string(v); };
  std::string out =
      "{\"server_version\":" + JsonString(s.server_version) + ",\"node_id\":" + num(s.node_id) +
      ",\"uptime_ms\":" + num(s.uptime_ms) + ",\"listen_address\":" + JsonString(s.listen_address) +
      ",\"data_dir\":" + JsonString(s.data_dir) + ",\"raft_state\":" + JsonString(s.raft_state) +
      ",\"raft_term\":" + num(s.raft_term) + ",\"commit_index\":" + num(s.commit_index) +
      ",\"applied_index\":" + num(s.applied_index) + ",\"voters\":" + num(s.voters) +
      ",\"leader_id\":" + num(s.leader_id) +
      ",\"leader_endpoint\":" + JsonString(s.leader_endpoint) + ",\"sessions\":" + num(s.sessions) +
      ",\"locks_held\":" + num(s.locks_held) + ",\"waiters\":" + num(s.waiters) +
      ",\"connections\":" + num(s.connections) + ",\"revision\":" + num(s.revision) +
      ",\"log_appends\":" + num(s.log_appends) +
      ",\"log_append_micros\":" + num(s.log_append_micros) +
      ",\"state_digest\":" + num(s.state_digest) +
      ",\"core_applied_index\":" + num(s.core_applied_index) +
      ",\"metrics_address\":" + JsonString(s.metrics_address) + "}";
  std::printf("%s\n", out.c_str());
}

}  // namespace

Subcommand AddStatusCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("status", "Show the server, its Raft state, sessions and locks");
  auto flags = std::make_shared<ClientFlags>();
  AddClientFlags(cmd, flags.get());
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json,
                "Print one JSON object with every field (times in milliseconds, the log "
                "appends' summed time in microseconds)");
  return {cmd, [flags, json]() -> int {
            ClientOptions o;
            o.endpoint = flags->endpoint;
            o.auth_token = flags->AuthToken();
            o.client_name = "latchkey status";
            auto client = Client::Connect(o);
            if (!client.ok()) {
              return ReportConnectFailure("latchkey status", flags->endpoint.c_str(),
                                          client.status());
            }
            auto st = (*client)->GetStatus();
            if (!st.ok()) {
              std::fprintf(stderr, "latchkey status: %s\n", st.status().ToString().c_str());
              return kExitUnavailable;
            }
            const ServerStatus& s = *st;
            if (*json) {
              PrintJson(s);
              return 0;
            }
            std::printf("server      latchkey %s, node %llu, up %s\n", s.server_version.c_str(),
                        static_cast<unsigned long long>(s.node_id),
                        FormatDurationMs(s.uptime_ms).c_str());
            std::printf("listening   %s\n", s.listen_address.c_str());
            std::printf("data dir    %s\n", s.data_dir.c_str());
            std::printf("raft        %s, term %llu, commit %llu, applied %llu, %u voter%s\n",
                        s.raft_state.c_str(), static_cast<unsigned long long>(s.raft_term),
                        static_cast<unsigned long long>(s.commit_index),
                        static_cast<unsigned long long>(s.applied_index), s.voters,
                        s.voters == 1 ? "" : "s");
            // This command's own session is included in the count.
            std::printf("sessions    %llu (including this one)\n",
                        static_cast<unsigned long long>(s.sessions));
            std::printf("locks       %llu held, %llu waiting\n",
                        static_cast<unsigned long long>(s.locks_held),
                        static_cast<unsigned long long>(s.waiters));
            std::printf("connections %llu\n", static_cast<unsigned long long>(s.connections));
            std::printf("revision    %llu\n", static_cast<unsigned long long>(s.revision));
            if (s.log_appends > 0) {
              std::printf("log writes  %llu appends, mean %llu us from hand-over to durable\n",
                          static_cast<unsigned long long>(s.log_appends),
                          static_cast<unsigned long long>(s.log_append_micros / s.log_appends));
            }
            if (!s.metrics_address.empty()) {
              std::printf("metrics     http://%s/metrics\n", s.metrics_address.c_str());
            }
            return 0;
          }};
}

}  // namespace latchkey::cli
