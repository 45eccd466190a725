// `latchkey locks [PREFIX]`: the locks at or below PREFIX, one row per
// holder, as a table or (--json) as one JSON object for scripts.
#include <algorithm>
#include <cstdio>

#include "cli/commands.h"
#include "cli/lock_display.h"
#include "common/duration.h"
#include "latchkey/client.h"

namespace latchkey::cli {
namespace {

struct LocksFlags {
  ClientFlags client;
  std::string prefix;
  bool json = false;
  uint32_t limit = 1000;
};

void PrintJson(const std::vector<LockInfo>& locks, bool maybe_truncated) {
  std::string out = "{\"locks\":[";
  for (size_t i = 0; i < locks.size(); ++i) {
    const LockInfo& l = locks[i];
    if (i) out += ",";
    out += "{\"name\":" + JsonString(l.name) +
           ",\"server_time_ms\":" + std::to_string(l.server_time_ms) + ",\"holders\":[";
    for (size_t k = 0; k < l.holders.size(); ++k) {
      const LockHolderInfo& h = l.holders[k];
      if (k) out += ",";
      out += "{\"session_id\":" + std::to_string(h.session_id) +
             ",\"owner\":" + JsonString(h.owner) + ",\"client_name\":" + JsonString(h.client_name) +
             ",\"mode\":" + JsonString(LockModeName(h.mode)) +
             ",\"count\":" + std::to_string(h.count) +
             ",\"fencing_token\":" + std::to_string(h.fencing_token) +
             ",\"granted_at_ms\":" + std::to_string(h.granted_at_ms) +
             ",\"held_for_ms\":" + std::to_string(AgeMs(l.server_time_ms, h.granted_at_ms)) +
             ",\"lock_ttl_ms\":" + std::to_string(h.lock_ttl_ms) + "}";
    }
    out += "],\"waiters\":[";
    for (size_t k = 0; k < l.waiter_list.size(); ++k) {
      const LockWaiterInfo& w = l.waiter_list[k];
      if (k) out += ",";
      out += "{\"session_id\":" + std::to_string(w.session_id) +
             ",\"owner\":" + JsonString(w.owner) + ",\"client_name\":" + JsonString(w.client_name) +
             ",\"mode\":" + JsonString(LockModeName(w.mode)) +
             ",\"conversion\":" + (w.conversion ? "true" : "false") +
             ",\"queued_at_ms\":" + std::to_string(w.queued_at_ms) +
             ",\"waiting_for_ms\":" + std::to_string(AgeMs(l.server_time_ms, w.queued_at_ms)) + "}";
    }
    out += "]}";
  }
  out += std::string("],\"truncated\":") + (maybe_truncated ? "true" : "false") + "}\n";
  std::fputs(out.c_str(), stdout);
}

std::string TtlText(const LockHolderInfo& h, uint64_t now_ms) {
  if (h.lock_ttl_ms == 0) return "-";
  const uint64_t deadline = h.granted_at_ms + h.lock_ttl_ms;
  return FormatDurationMs(h.lock_ttl_ms) + " (" + FormatDurationMs(AgeMs(deadline, now_ms)) +
         " left)";
}

void PrintTable(const std::vector<LockInfo>& locks) {
  using Row = std::vector<std::string>;
  std::vector<Row> rows = {
      {"NAME", "MODE", "SESSION", "OWNER", "TOKEN", "HELD FOR", "TTL", "WAITERS", "CLIENT"}};
  for (const LockInfo& l : locks) {
    const std::string waiters = std::to_string(l.waiter_list.size());
    if (l.holders.empty()) {  // only waiters (e.g. being handed over)
      rows.push_back({l.name, "-", "-", "-", "-", "-", "-", waiters, ""});
      continue;
    }
    for (size_t k = 0; k < l.holders.size(); ++k) {
      const LockHolderInfo& h = l.holders[k];
      std::string mode(LockModeName(h.mode));
      if (h.count > 1) mode += " x" + std::to_string(h.count);
      rows.push_back({k == 0 ? l.name : "", mode, std::to_string(h.session_id),
                      h.owner.empty() ? "-" : h.owner, std::to_string(h.fencing_token),
                      FormatDurationMs(AgeMs(l.server_time_ms, h.granted_at_ms)),
                      TtlText(h, l.server_time_ms), k == 0 ? waiters : "", h.client_name});
    }
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const Row& r : rows) {
    for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  }
  for (const Row& r : rows) {
    std::string line;
    for (size_t c = 0; c < r.size(); ++c) {
      line += r[c];
      if (c + 1 < r.size()) line += std::string(width[c] - r[c].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  }
}

int RunLocks(const LocksFlags& f) {
  ClientOptions o;
  o.endpoint = f.client.endpoint;
  o.auth_token = f.client.AuthToken();
  o.client_name = "latchkey locks";
  auto client = Client::Connect(o);
  if (!client.ok()) {
    return ReportConnectFailure("latchkey locks", f.client.endpoint.c_str(), client.status());
  }
  auto locks = (*client)->ListLocks(f.prefix, f.limit);
  if (!locks.ok()) {
    std::fprintf(stderr, "latchkey locks: %s\n", locks.status().ToString().c_str());
    return locks.status().code() == Code::kInvalidArgument ? kExitUsage : kExitUnavailable;
  }
  const bool maybe_truncated = locks->size() >= f.limit;
  if (f.json) {
    PrintJson(*locks, maybe_truncated);
    return 0;
  }
  if (locks->empty()) {
    if (f.prefix.empty()) {
      std::printf("no locks are held or waited for\n");
    } else {
      std::printf("no locks are held or waited for at or below '%s'\n", f.prefix.c_str());
    }
    return 0;
  }
  PrintTable(*locks);
  if (maybe_truncated) {
    std::printf("(showing the first %u; there may be more: narrow PREFIX or raise --limit)\n",
                f.limit);
  }
  return 0;
}

}  // namespace

Subcommand AddLocksCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "locks",
      "List the locks at or below PREFIX (all locks without it), one row per holder: mode "
      "(with the reentrant count), holder session/owner/client, fencing token, how long it has "
      "been held, its TTL and how many requests wait for it. A lock on 'a.b' is listed under "
      "the prefixes 'a' and 'a.b', not under 'a.bc'.");
  auto f = std::make_shared<LocksFlags>();
  cmd->add_option("prefix", f->prefix, "Name prefix, e.g. build (matches build and build.*)");
  cmd->add_flag("--json", f->json,
                "Print one JSON object {locks:[{name, holders:[...], waiters:[...]}], truncated} "
                "with times in milliseconds");
  cmd->add_option("--limit", f->limit, "List at most this many locks")
      ->check(CLI::Range(1u, 100'000u))
      ->capture_default_str();
  AddClientFlags(cmd, &f->client);
  return {cmd, [f]() { return RunLocks(*f); }};
}

}  // namespace latchkey::cli
