// Parsing and checking the cluster-mode flags of `latchkey server`.
#pragma once

#include <string_view>
#include <vector>

#include "common/status.h"
#include "server/options.h"

namespace latchkey::server {

// Parses "--peers": a comma-separated list of ID=RAFT_HOST:PORT@CLIENT_HOST:PORT,
// e.g. "1=10.0.0.1:7412@10.0.0.1:7411,2=10.0.0.2:7412@10.0.0.2:7411".
// Errors (INVALID_ARGUMENT, naming the bad item): empty list, id 0 or not a
// number, missing '=' or '@', empty address, duplicate id, duplicate raft
// address.
Result<std::vector<ServerOptions::Peer>> ParsePeers(std::string_view text);

// Fills options->raft_address (and listen, unless listen_given) from this
// node's entry in options->peers. REQUIRES: peers non-empty. Errors when
// node_id is not listed, or raft_given and raft_address differs from the
// listed one (libraft identifies a node by its address).
Status ApplyPeers(ServerOptions* options, bool listen_given, bool raft_given);

}  // namespace latchkey::server
