#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <fstream>
#include <iterator>

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
  cmd->add_option("--auth-token-file", flags->auth_token_file,
                  "File holding the token the server wants (its --auth-token-file; env "
                  "LATCHKEY_AUTH_TOKEN_FILE)")
      ->envname("LATCHKEY_AUTH_TOKEN_FILE")
      ->check(CLI::ExistingFile);
}

std::string ClientFlags::AuthToken() const {
  if (auth_token_file.empty()) return "";
  Result<std::string> t = ReadAuthTokenFile(auth_token_file);
  if (!t.ok()) {
    std::fprintf(stderr, "latchkey: %s\n", t.status().message().c_str());
    return "";
  }
  return *t;
}

int ReportConnectFailure(const char* command, const std::string& endpoint, const Status& st) {
  if (st.code() == Code::kUnauthenticated) {
    std::fprintf(stderr, "%s: %s refused the connection: %s\n", command, endpoint.c_str(),
                 st.message().c_str());
    return kExitNoPermission;
  }
  std::fprintf(stderr, "%s: cannot reach %s: %s\n", command, endpoint.c_str(),
               st.ToString().c_str());
  return kExitUnavailable;
}

Result<std::string> ReadAuthTokenFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return InvalidArgument("cannot read the auth token file " + path);
  std::string token((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
    token.pop_back();
  }
  if (token.empty() || token.size() > 4096) {
    return InvalidArgument("the auth token file " + path + " must hold a token of 1 to 4096 bytes");
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    std::fprintf(stderr, "latchkey: warning: %s can be read by other users; chmod 600 it\n",
                 path.c_str());
  }
  return token;
}

}  // namespace latchkey::cli
