// `latchkey status`: what the server is and holds.
#include <cstdio>

#include "cli/commands.h"
#include "common/duration.h"
#include "latchkey/client.h"

namespace latchkey::cli {

Subcommand AddStatusCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("status", "Show the server, its Raft state, sessions and locks");
  auto flags = std::make_shared<ClientFlags>();
  AddClientFlags(cmd, flags.get());
  return {cmd, [flags]() -> int {
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
