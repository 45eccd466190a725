// `latchkey`: the server and the command-line client in one binary.
#include <csignal>
#include <cstdio>

#include "cli/commands.h"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{
      "Latchkey: a distributed lock and coordination service.\n\n"
      "Start a single-node server:      latchkey server\n"
      "Run a command under a lock:      latchkey lock build.artifacts -- ./make-release.sh\n"
      "Share it with other readers:     latchkey lock --mode PR catalog -- ./read-catalog.sh\n"
      "Who holds what, who waits:       latchkey locks build; latchkey waits\n"
      "Look at the server:              latchkey status\n",
      "latchkey"};
  app.set_version_flag("--version", std::string("latchkey ") + LATCHKEY_VERSION);
  app.require_subcommand(1);
  const latchkey::cli::Subcommand subs[] = {
      latchkey::cli::AddServerCommand(app), latchkey::cli::AddLockCommand(app),
      latchkey::cli::AddStatusCommand(app), latchkey::cli::AddMemberCommand(app),
      latchkey::cli::AddLocksCommand(app),  latchkey::cli::AddWaitsCommand(app),
  };
  const std::vector<latchkey::cli::Subcommand> object_subs = latchkey::cli::AddObjectCommands(app);
  const std::vector<latchkey::cli::Subcommand> watch_subs = latchkey::cli::AddWatchCommands(app);
  const latchkey::cli::Subcommand elect_subs[] = {
      latchkey::cli::AddElectCommand(app),
      latchkey::cli::AddLeaderCommand(app),
      latchkey::cli::AddSyncCommand(app),
  };
  const latchkey::cli::Subcommand state_sub = latchkey::cli::AddStateCommand(app);
  const std::vector<latchkey::cli::Subcommand> record_subs = latchkey::cli::AddRecordCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : latchkey::cli::kExitUsage;
  }
  for (const auto& sub : subs) {
    if (sub.app->parsed()) return sub.run();
  }
  for (const auto& sub : object_subs) {
    if (sub.app->parsed()) return sub.run();
  }
  for (const auto& sub : watch_subs) {
    if (sub.app->parsed()) return sub.run();
  }
  for (const auto& sub : elect_subs) {
    if (sub.app->parsed()) return sub.run();
  }
  if (state_sub.app->parsed()) return state_sub.run();
  for (const auto& sub : record_subs) {
    if (sub.app->parsed()) return sub.run();
  }
  return latchkey::cli::kExitUsage;
}
