// Subcommands of the `latchkey` binary. Each registers its CLI11 options and
// returns the process exit code when run.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

namespace latchkey::cli {

// Exit codes (sysexits-style) shared by the client subcommands.
inline constexpr int kExitUsage = 64;         // bad arguments
inline constexpr int kExitUnavailable = 69;   // server unreachable / not ready
inline constexpr int kExitSoftware = 70;      // internal error
inline constexpr int kExitBusy = 75;          // lock busy or wait timed out
inline constexpr int kExitSessionLost = 76;   // session lost while holding
inline constexpr int kExitNoPermission = 77;  // the server refused the auth token

struct Subcommand {
  CLI::App* app;
  std::function<int()> run;  // called when app->parsed()
};

Subcommand AddServerCommand(CLI::App& app);
Subcommand AddLockCommand(CLI::App& app);
Subcommand AddStatusCommand(CLI::App& app);
Subcommand AddMemberCommand(CLI::App& app);  // cmd_member.cc
Subcommand AddLocksCommand(CLI::App& app);   // cmd_locks.cc
Subcommand AddWaitsCommand(CLI::App& app);   // cmd_waits.cc
// get, put, reserve, wait, rm, ttl, txn, history, find, exec, compact (cmd_objects.cc)
std::vector<Subcommand> AddObjectCommands(CLI::App& app);
// watch, publish, subscribe, script put|rm (cmd_watch.cc)
std::vector<Subcommand> AddWatchCommands(CLI::App& app);
// Leader election and sync-object introspection (design 0016).
Subcommand AddElectCommand(CLI::App& app);   // cmd_elect.cc: elect NAME [-- COMMAND]
Subcommand AddLeaderCommand(CLI::App& app);  // cmd_leader.cc: leader NAME [--watch]
Subcommand AddSyncCommand(CLI::App& app);    // cmd_sync.cc: sync list [PREFIX]
// state owner KEY, state bucket B (cmd_state.cc)
Subcommand AddStateCommand(CLI::App& app);
// record create|get|update|delete|lock|find (cmd_records.cc)
std::vector<Subcommand> AddRecordCommands(CLI::App& app);

// Options every client subcommand takes.
struct ClientFlags {
  std::string endpoint = "127.0.0.1:7411";
  std::string session_ttl = "10s";
  std::string auth_token_file;  // --auth-token-file / LATCHKEY_AUTH_TOKEN_FILE
  // The token in auth_token_file ("" without one, or if it cannot be read:
  // the server then answers UNAUTHENTICATED).
  std::string AuthToken() const;
};
// The token a file holds: its bytes without trailing whitespace (1..4096
// bytes). Warns on stderr when others than the owner may read the file.
Result<std::string> ReadAuthTokenFile(const std::string& path);
// Prints why `command` could not connect to `endpoint` and returns the exit
// code: kExitNoPermission when the server refused the auth token,
// kExitUnavailable otherwise.
int ReportConnectFailure(const char* command, const std::string& endpoint, const Status& st);
void AddClientFlags(CLI::App* cmd, ClientFlags* flags);

}  // namespace latchkey::cli
