// `latchkey member list|add|promote|remove|transfer-leader`: cluster membership.
// Every change goes to the leader (the client follows NOT_LEADER redirects),
// one change at a time.
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "latchkey/client.h"

namespace latchkey::cli {

namespace {

struct MemberFlags {
  ClientFlags client;
  uint64_t node_id = 0;
  std::string raft_address;
  std::string client_address;
};

int Fail(const char* what, const Status& st) {
  std::fprintf(stderr, "latchkey member %s: %s\n", what, st.ToString().c_str());
  switch (st.code()) {
    case Code::kInvalidArgument:
    case Code::kNotFound:
    case Code::kAlreadyExists:
    case Code::kFailedPrecondition: return kExitUsage;
    default: return kExitUnavailable;
  }
}

}  // namespace

Subcommand AddMemberCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("member", "List or change the nodes of a replicated cluster");
  cmd->require_subcommand(1);
  auto flags = std::make_shared<MemberFlags>();
  AddClientFlags(cmd, &flags->client);
  cmd->fallthrough();  // `member list -e HOST:PORT` as well as `member -e HOST:PORT list`
  auto* list = cmd->add_subcommand("list", "Show every node, its role and the leader");
  auto* add = cmd->add_subcommand(
      "add", "Add a node started with `latchkey server --join`; it becomes a voter once caught up");
  add->add_option("--id", flags->node_id, "The new node's --node-id")->required();
  add->add_option("--raft-address", flags->raft_address, "Its --raft-address (HOST:PORT)")
      ->required();
  add->add_option("--client-address", flags->client_address,
                  "Its client address (HOST:PORT), named in redirects to it");
  auto* promote = cmd->add_subcommand(
      "promote", "Make a spare or standby node a voter (after an add that was not promoted)");
  promote->add_option("--id", flags->node_id, "The node to promote")->required();
  auto* remove = cmd->add_subcommand("remove", "Remove a node (not the leader: transfer first)");
  remove->add_option("--id", flags->node_id, "The node to remove")->required();
  auto* transfer =
      cmd->add_subcommand("transfer-leader", "Hand leadership to another voter (default: any)");
  transfer->add_option("--id", flags->node_id, "The voter that should lead");

  return {cmd, [flags, list, add, promote, remove, transfer]() -> int {
            ClientOptions o;
            o.endpoint = flags->client.endpoint;
            o.auth_token = flags->client.AuthToken();
            o.client_name = "latchkey member";
            auto client = Client::Connect(o);
            if (!client.ok()) {
              return ReportConnectFailure("latchkey member", flags->client.endpoint.c_str(),
                                          client.status());
            }
            Client& c = **client;
            if (list->parsed()) {
              auto members = c.ListMembers();
              if (!members.ok()) return Fail("list", members.status());
              std::printf("%-6s %-8s %-22s %-22s %s\n", "ID", "ROLE", "RAFT", "CLIENT", "LEADER");
              for (const MemberInfo& m : *members) {
                std::printf(
                    "%-6llu %-8s %-22s %-22s %s\n", static_cast<unsigned long long>(m.node_id),
                    m.role.c_str(), m.raft_address.c_str(),
                    m.client_address.empty() ? "-" : m.client_address.c_str(), m.leader ? "*" : "");
              }
              return 0;
            }
            if (add->parsed()) {
              Status st = c.AddMember(flags->node_id, flags->raft_address, flags->client_address);
              if (!st.ok()) return Fail("add", st);
              std::printf("node %llu added as a voter\n",
                          static_cast<unsigned long long>(flags->node_id));
              return 0;
            }
            if (promote->parsed()) {
              // AddMember of a node that is already a spare at its address
              // only promotes it; the address comes from the configuration.
              auto members = c.ListMembers();
              if (!members.ok()) return Fail("promote", members.status());
              for (const MemberInfo& m : *members) {
                if (m.node_id != flags->node_id) continue;
                if (m.role == "voter") {
                  std::printf("node %llu is already a voter\n",
                              static_cast<unsigned long long>(m.node_id));
                  return 0;
                }
                Status st = c.AddMember(m.node_id, m.raft_address, m.client_address);
                if (!st.ok()) return Fail("promote", st);
                std::printf("node %llu promoted to voter\n",
                            static_cast<unsigned long long>(m.node_id));
                return 0;
              }
              return Fail("promote",
                          Status(Code::kNotFound, "node " + std::to_string(flags->node_id) +
                                                      " is not in the configuration; add it with "
                                                      "`latchkey member add`"));
            }
            if (remove->parsed()) {
              Status st = c.RemoveMember(flags->node_id);
              if (!st.ok()) return Fail("remove", st);
              std::printf("node %llu removed\n", static_cast<unsigned long long>(flags->node_id));
              return 0;
            }
            if (transfer->parsed()) {
              auto leader = c.TransferLeadership(flags->node_id);
              if (!leader.ok()) return Fail("transfer-leader", leader.status());
              std::printf("node %llu is the leader\n", static_cast<unsigned long long>(*leader));
              return 0;
            }
            return kExitUsage;
          }};
}

}  // namespace latchkey::cli
