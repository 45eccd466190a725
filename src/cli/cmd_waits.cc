// `latchkey waits`: the current wait-for graph, one line per waiting request:
//   session 7 (ci) owner 'x' waits for 'a.b' in EX held by session 3 (bob) in PR
// The graph has no client names or holder modes, so they are looked up with
// ListLocks over the names involved (a display nicety: not atomic with the
// graph, and left out when the lookup fails).
#include <cstdio>
#include <map>
#include <set>
#include <tuple>

#include "cli/commands.h"
#include "cli/lock_display.h"
#include "latchkey/client.h"

namespace latchkey::cli {
namespace {

struct WaitsFlags {
  ClientFlags client;
  bool json = false;
};

using OwnerKey = std::pair<uint64_t, std::string>;  // (session, owner)

struct Context {
  std::map<uint64_t, std::string> client_names;  // session -> client name
  // Explicit grants by owner: (name, mode).
  std::multimap<OwnerKey, std::pair<std::string, LockMode>> grants;
};

Context LookUp(Client& client, const std::vector<WaitEdgeInfo>& edges) {
  Context ctx;
  std::set<std::string> roots;  // first segments: cover ancestors and descendants
  for (const auto& e : edges) roots.insert(e.name.substr(0, e.name.find('.')));
  for (const std::string& root : roots) {
    auto locks = client.ListLocks(root);
    if (!locks.ok()) continue;
    for (const LockInfo& l : *locks) {
      for (const auto& h : l.holders) {
        if (!h.client_name.empty()) ctx.client_names[h.session_id] = h.client_name;
        ctx.grants.emplace(OwnerKey{h.session_id, h.owner}, std::make_pair(l.name, h.mode));
      }
      for (const auto& w : l.waiter_list) {
        if (!w.client_name.empty()) ctx.client_names[w.session_id] = w.client_name;
      }
    }
  }
  return ctx;
}

std::string Who(const Context& ctx, uint64_t session, const std::string& owner) {
  auto it = ctx.client_names.find(session);
  return DescribeOwner(session, owner, it == ctx.client_names.end() ? "" : it->second);
}

// "held by session 3 (bob) in PR", "held by session 3 (bob) in PR on 'a'",
// or "queued behind session 3 (bob)" when the blocker is an earlier waiter.
std::string Blocker(const Context& ctx, const WaitEdgeInfo& e) {
  const std::string who = Who(ctx, e.blocker_session_id, e.blocker_owner);
  auto [lo, hi] = ctx.grants.equal_range(OwnerKey{e.blocker_session_id, e.blocker_owner});
  for (auto it = lo; it != hi; ++it) {
    const auto& [name, mode] = it->second;
    if (!RelatedNames(name, e.name)) continue;
    std::string s = "held by " + who + " in " + std::string(LockModeName(mode));
    if (name != e.name) s += " on '" + name + "'";
    return s;
  }
  return "queued behind " + who;
}

void PrintJson(const std::vector<WaitEdgeInfo>& edges, const Context& ctx) {
  auto name_of = [&](uint64_t s) {
    auto it = ctx.client_names.find(s);
    return JsonString(it == ctx.client_names.end() ? "" : it->second);
  };
  std::string out = "{\"edges\":[";
  for (size_t i = 0; i < edges.size(); ++i) {
    const WaitEdgeInfo& e = edges[i];
    if (i) out += ",";
    out += "{\"waiter_session_id\":" + std::to_string(e.waiter_session_id) +
           ",\"waiter_owner\":" + JsonString(e.waiter_owner) +
           ",\"waiter_client_name\":" + name_of(e.waiter_session_id) +
           ",\"name\":" + JsonString(e.name) + ",\"mode\":" + JsonString(LockModeName(e.mode)) +
           ",\"blocker_session_id\":" + std::to_string(e.blocker_session_id) +
           ",\"blocker_owner\":" + JsonString(e.blocker_owner) +
           ",\"blocker_client_name\":" + name_of(e.blocker_session_id) + "}";
  }
  out += "]}\n";
  std::fputs(out.c_str(), stdout);
}

int RunWaits(const WaitsFlags& f) {
  ClientOptions o;
  o.endpoint = f.client.endpoint;
  o.auth_token = f.client.AuthToken();
  o.client_name = "latchkey waits";
  auto client = Client::Connect(o);
  if (!client.ok()) {
    return ReportConnectFailure("latchkey waits", f.client.endpoint.c_str(), client.status());
  }
  auto edges = (*client)->GetWaitGraph();
  if (!edges.ok()) {
    std::fprintf(stderr, "latchkey waits: %s\n", edges.status().ToString().c_str());
    return kExitUnavailable;
  }
  const Context ctx = LookUp(**client, *edges);
  if (f.json) {
    PrintJson(*edges, ctx);
    return 0;
  }
  if (edges->empty()) {
    std::printf("no one is waiting\n");
    return 0;
  }
  // One line per waiting request, its blockers joined.
  using Request = std::tuple<uint64_t, std::string, std::string, LockMode>;
  std::vector<std::pair<Request, std::vector<std::string>>> lines;
  for (const WaitEdgeInfo& e : *edges) {
    Request r{e.waiter_session_id, e.waiter_owner, e.name, e.mode};
    if (lines.empty() || lines.back().first != r) lines.push_back({r, {}});
    lines.back().second.push_back(Blocker(ctx, e));
  }
  for (const auto& [r, blockers] : lines) {
    const auto& [session, owner, name, mode] = r;
    std::string line = Who(ctx, session, owner) + " waits for '" + name + "' in " +
                       std::string(LockModeName(mode)) + " ";
    for (size_t i = 0; i < blockers.size(); ++i) {
      if (i) line += i + 1 == blockers.size() ? " and " : ", ";
      line += blockers[i];
    }
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

}  // namespace

Subcommand AddWaitsCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "waits",
      "Show who waits for whom right now (the wait-for graph the server checks for "
      "deadlocks), one line per waiting request with the sessions in its way, or \"no one is "
      "waiting\". Exit status 0 (whether or not anyone waits); 69 when the server is "
      "unreachable.");
  auto f = std::make_shared<WaitsFlags>();
  cmd->add_flag("--json", f->json,
                "Print one JSON object {edges:[{waiter_session_id, waiter_owner, "
                "waiter_client_name, name, mode, blocker_session_id, blocker_owner, "
                "blocker_client_name}]}");
  AddClientFlags(cmd, &f->client);
  return {cmd, [f]() { return RunWaits(*f); }};
}

}  // namespace latchkey::cli
