// Subcommands of the `latchkey` binary. Each registers its CLI11 options and
// returns the process exit code when run.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

namespace latchkey::cli {

// Exit codes (sysexits-style) shared by the client subcommands.
inline constexpr int kExitUsage = 64;        // bad arguments
inline constexpr int kExitUnavailable = 69;  // server unreachable / not ready
inline constexpr int kExitSoftware = 70;     // internal error
inline constexpr int kExitBusy = 75;         // lock busy or wait timed out
inline constexpr int kExitSessionLost = 76;  // session lost while holding

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
};
void AddClientFlags(CLI::App* cmd, ClientFlags* flags);

}  // namespace latchkey::cli
