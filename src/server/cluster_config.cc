#include "server/cluster_config.h"

#include <charconv>
#include <set>
#include <string>

namespace latchkey::server {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Status BadPeer(std::string_view item, const std::string& why) {
  return InvalidArgument("--peers item '" + std::string(item) + "': " + why +
                         " (expected ID=RAFT_HOST:PORT@CLIENT_HOST:PORT)");
}

}  // namespace

Result<std::vector<ServerOptions::Peer>> ParsePeers(std::string_view text) {
  std::vector<ServerOptions::Peer> out;
  std::set<uint64_t> ids;
  std::set<std::string> raft_addresses;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string_view item = Trim(text.substr(start, comma - start));
    start = comma + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    const size_t at = item.find('@');
    if (eq == std::string_view::npos || at == std::string_view::npos || at < eq) {
      return BadPeer(item, "missing '=' or '@'");
    }
    ServerOptions::Peer p;
    const std::string_view id = Trim(item.substr(0, eq));
    auto [ptr, ec] = std::from_chars(id.data(), id.data() + id.size(), p.id);
    if (ec != std::errc() || ptr != id.data() + id.size() || p.id == 0) {
      return BadPeer(item, "the node id must be a number > 0");
    }
    p.raft_address = std::string(Trim(item.substr(eq + 1, at - eq - 1)));
    p.client_address = std::string(Trim(item.substr(at + 1)));
    if (p.raft_address.find(':') == std::string::npos ||
        p.client_address.find(':') == std::string::npos) {
      return BadPeer(item, "both addresses must be HOST:PORT");
    }
    if (!ids.insert(p.id).second) return BadPeer(item, "duplicate node id");
    if (!raft_addresses.insert(p.raft_address).second) {
      return BadPeer(item, "duplicate raft address");
    }
    out.push_back(std::move(p));
  }
  if (out.empty()) return InvalidArgument("--peers is empty");
  return out;
}

Status ApplyPeers(ServerOptions* options, bool listen_given, bool raft_given) {
  for (const ServerOptions::Peer& p : options->peers) {
    if (p.id != options->node_id) continue;
    if (raft_given && options->raft_address != p.raft_address) {
      return InvalidArgument("--raft-address " + options->raft_address + " differs from node " +
                             std::to_string(p.id) + "'s entry in --peers (" + p.raft_address +
                             "); omit --raft-address in cluster mode");
    }
    options->raft_address = p.raft_address;
    if (!listen_given) options->listen = p.client_address;
    return Status::Ok();
  }
  return InvalidArgument("--node-id " + std::to_string(options->node_id) +
                         " is not listed in --peers");
}

}  // namespace latchkey::server
