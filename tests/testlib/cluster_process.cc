#include "testlib/cluster_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace latchkey::testing {

namespace {

using Clock = std::chrono::steady_clock;

bool SendFrame(int fd, const v1::ClientFrame& frame) {
  std::string payload = frame.SerializeAsString();
  const uint32_t n = htonl(static_cast<uint32_t>(payload.size()));
  std::string bytes(reinterpret_cast<const char*>(&n), 4);
  bytes += payload;
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t w = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (w <= 0) return false;
    off += static_cast<size_t>(w);
  }
  return true;
}

bool ReadExact(int fd, char* out, size_t len, Clock::time_point deadline) {
  size_t off = 0;
  while (off < len) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    ssize_t r = ::recv(fd, out + off, len - off, 0);
    if (r <= 0) return false;
    off += static_cast<size_t>(r);
  }
  return true;
}

std::optional<v1::Response> ReadResponse(int fd, Clock::time_point deadline) {
  char hdr[4];
  if (!ReadExact(fd, hdr, 4, deadline)) return std::nullopt;
  uint32_t n;
  std::memcpy(&n, hdr, 4);
  n = ntohl(n);
  if (n > (1u << 20)) return std::nullopt;
  std::string payload(n, '\0');
  if (!ReadExact(fd, payload.data(), n, deadline)) return std::nullopt;
  v1::ServerFrame frame;
  if (!frame.ParseFromString(payload) || !frame.has_response()) return std::nullopt;
  return frame.response();
}

}  // namespace

std::optional<v1::GetStatusReply> QueryStatus(const std::string& endpoint,
                                              std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(endpoint.substr(colon + 1))));
  if (inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    return std::nullopt;
  }
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return std::nullopt;
  std::optional<v1::GetStatusReply> out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    v1::ClientFrame hello;
    hello.mutable_request()->set_id(1);
    hello.mutable_request()->mutable_hello()->set_protocol_version(1);
    v1::ClientFrame status;
    status.mutable_request()->set_id(2);
    status.mutable_request()->mutable_get_status();
    if (SendFrame(fd, hello) && SendFrame(fd, status)) {
      for (int i = 0; i < 2; ++i) {
        auto resp = ReadResponse(fd, deadline);
        if (!resp) break;
        if (resp->id() == 2 && resp->has_get_status()) out = resp->get_status();
      }
    }
  }
  ::close(fd);
  return out;
}

ClusterProcess::ClusterProcess(int voters, std::vector<std::string> extra_args, int spares)
    : voters_(voters), spares_(spares), extra_args_(std::move(extra_args)) {
  Configure();
}

void ClusterProcess::Configure() {
  const int voters = voters_;
  const int total = voters_ + spares_;
  const std::vector<std::string>& extra_args = extra_args_;
  client_ports_.clear();
  raft_ports_.clear();
  nodes_.clear();
  for (int i = 0; i < total; ++i) {
    client_ports_.push_back(PickFreePort());
    raft_ports_.push_back(PickFreePort());
  }
  std::string peers;
  for (int i = 0; i < voters; ++i) {
    if (!peers.empty()) peers += ",";
    peers += std::to_string(i + 1) + "=" + raft_address(static_cast<uint64_t>(i + 1)) + "@" +
             client_address(static_cast<uint64_t>(i + 1));
  }
  for (int i = 0; i < total; ++i) {
    std::vector<std::string> args = {"--node-id", std::to_string(i + 1)};
    if (i < voters) {
      args.insert(args.end(), {"--peers", peers});
    } else {
      args.push_back("--join");
    }
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    auto node =
        std::make_unique<ServerProcess>(dir_.File("node" + std::to_string(i + 1)), std::move(args));
    node->set_raft_port(raft_ports_[static_cast<size_t>(i)]);
    nodes_.push_back(std::move(node));
  }
}

ClusterProcess::~ClusterProcess() {
  for (auto& n : nodes_) n->Kill9();
}

std::string ClusterProcess::raft_address(uint64_t id) const {
  return "127.0.0.1:" + std::to_string(raft_ports_.at(id - 1));
}

std::string ClusterProcess::client_address(uint64_t id) const {
  return "127.0.0.1:" + std::to_string(client_ports_.at(id - 1));
}

bool ClusterProcess::Start() {
  // Ports are picked free before the processes bind them, so another test
  // may take one meanwhile; a node that exits while starting gets the whole
  // cluster restarted on fresh ports and empty data dirs (twice at most).
  for (int attempt = 0;; ++attempt) {
    bool exited = false;
    for (int i = 0; i < voters_; ++i) {
      ServerProcess& n = *nodes_[static_cast<size_t>(i)];
      if (!n.Start(client_ports_[static_cast<size_t>(i)])) {
        exited = !n.running();
        break;
      }
      if (i + 1 == voters_) return true;
    }
    if (!exited || attempt == 2) return false;
    std::fprintf(stderr, "cluster: a node exited while starting; retrying on fresh ports\n");
    for (auto& n : nodes_) {
      n->Kill9();
      std::filesystem::remove_all(n->data_dir());
    }
    Configure();
  }
}

bool ClusterProcess::StartJoiner(uint64_t id) {
  // A joiner's ports reach the cluster only through AddMember, after this
  // returns, so a port taken meanwhile by another test is replaced by a fresh
  // one (twice at most) instead of failing the test.
  const size_t slot = id - 1;
  for (int attempt = 0;; ++attempt) {
    ServerProcess& n = node(id);
    if (n.Start(client_ports_.at(slot))) return true;
    if (n.running() || attempt == 2) return false;
    std::fprintf(stderr, "cluster: joiner %llu exited while starting; retrying on fresh ports\n",
                 static_cast<unsigned long long>(id));
    std::filesystem::remove_all(n.data_dir());
    client_ports_[slot] = PickFreePort();
    raft_ports_[slot] = PickFreePort();
    n.set_raft_port(raft_ports_[slot]);
  }
}

std::string ClusterProcess::Endpoints() {
  std::string out;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (!nodes_[i]->running()) continue;
    if (!out.empty()) out += ",";
    out += client_address(i + 1);
  }
  return out;
}

std::vector<uint64_t> ClusterProcess::Running(const std::vector<uint64_t>& among) {
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const uint64_t id = i + 1;
    if (!nodes_[i]->running()) continue;
    if (!among.empty() && std::find(among.begin(), among.end(), id) == among.end()) continue;
    ids.push_back(id);
  }
  return ids;
}

uint64_t ClusterProcess::WaitForLeader(std::chrono::milliseconds deadline,
                                       std::vector<uint64_t> among) {
  uint64_t leader = 0;
  WaitFor(
      [&] {
        leader = 0;
        for (uint64_t id : Running(among)) {
          auto st = QueryStatus(client_address(id), std::chrono::milliseconds(500));
          if (!st || st->leader_id() == 0) return false;
          if (leader != 0 && st->leader_id() != leader) return false;
          leader = st->leader_id();
          if (id == leader && st->raft_state() != "leader") return false;
        }
        return leader != 0 && node(leader).running();
      },
      deadline);
  if (leader == 0 || !node(leader).running()) return 0;
  auto st = QueryStatus(client_address(leader));
  return st && st->raft_state() == "leader" ? leader : 0;
}

bool ClusterProcess::WaitForEqualDigests(std::chrono::milliseconds deadline,
                                         std::vector<uint64_t> among) {
  const bool converged = WaitFor(
      [&] {
        std::optional<v1::GetStatusReply> first;
        for (uint64_t id : Running(among)) {
          auto st = QueryStatus(client_address(id), std::chrono::milliseconds(500));
          if (!st) return false;
          if (!first) {
            first = st;
          } else if (st->core_applied_index() != first->core_applied_index() ||
                     st->state_digest() != first->state_digest()) {
            return false;
          }
        }
        return first.has_value();
      },
      deadline);
  if (!converged) {
    // Say what each node reports, so a failure tells lagging from diverged.
    for (uint64_t id : Running(among)) {
      auto st = QueryStatus(client_address(id), std::chrono::milliseconds(500));
      if (!st) {
        std::fprintf(stderr, "node %llu: no status\n", static_cast<unsigned long long>(id));
        continue;
      }
      std::fprintf(stderr,
                   "node %llu: %s term %llu commit %llu raft-applied %llu core-applied %llu "
                   "digest %016llx\n",
                   static_cast<unsigned long long>(id), st->raft_state().c_str(),
                   static_cast<unsigned long long>(st->raft_term()),
                   static_cast<unsigned long long>(st->commit_index()),
                   static_cast<unsigned long long>(st->applied_index()),
                   static_cast<unsigned long long>(st->core_applied_index()),
                   static_cast<unsigned long long>(st->state_digest()));
    }
  }
  return converged;
}

std::optional<v1::Response> QueryNode(const std::string& endpoint, const v1::Request& request,
                                      std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(endpoint.substr(colon + 1))));
  if (inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    return std::nullopt;
  }
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return std::nullopt;
  std::optional<v1::Response> out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    v1::ClientFrame hello;
    hello.mutable_request()->set_id(1);
    hello.mutable_request()->mutable_hello()->set_protocol_version(1);
    v1::ClientFrame req;
    *req.mutable_request() = request;
    req.mutable_request()->set_id(2);
    if (SendFrame(fd, hello) && SendFrame(fd, req)) {
      for (int i = 0; i < 2; ++i) {
        auto resp = ReadResponse(fd, deadline);
        if (!resp) break;
        if (resp->id() == 2) out = std::move(resp);
      }
    }
  }
  ::close(fd);
  return out;
}

}  // namespace latchkey::testing
