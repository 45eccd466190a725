#include <unistd.h>

#include "cli/commands.h"

namespace latchkey::cli {

void AddClientFlags(CLI::App* cmd, ClientFlags* flags) {
  cmd->add_option("-e,--endpoint", flags->endpoint,
                  "Server address: HOST:PORT or unix:/PATH (env LATCHKEY_ENDPOINT)")
      ->envname("LATCHKEY_ENDPOINT")
      ->capture_default_str();
  cmd->add_option("--session-ttl", flags->session_ttl,
                  "Session lease: how long the server keeps this client's locks after it "
                  "stops hearing from it")
      ->capture_default_str();
}

}  // namespace latchkey::cli
