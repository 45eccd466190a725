// `latchkey sync list [PREFIX]`: the semaphores, latches and barriers at or
// below PREFIX with their holders, counts, parties and waiters, as a table
// or (--json) as one JSON object for scripts. The counterpart of `locks`.
#include <algorithm>
#include <cstdio>

#include "cli/commands.h"
#include "cli/lock_display.h"
#include "common/duration.h"
#include "latchkey/sync_info.h"

namespace latchkey::cli {
namespace {

struct SyncFlags {
  ClientFlags client;
  std::string prefix;
  bool json = false;
  bool stale = false;
  uint32_t limit = 1000;
};

std::string PartyJson(const SyncPartyInfo& p, uint64_t now_ms, bool holder) {
  std::string s = "{\"session_id\":" + std::to_string(p.session_id) +
                  ",\"owner\":" + JsonString(p.owner) +
                  ",\"client_name\":" + JsonString(p.client_name);
  if (holder || p.permits > 0) s += ",\"permits\":" + std::to_string(p.permits);
  if (holder) s += ",\"fencing_token\":" + std::to_string(p.fencing_token);
  if (p.since_ms != 0) {
    s += std::string(holder ? ",\"granted_at_ms\":" : ",\"queued_at_ms\":") +
         std::to_string(p.since_ms) + (holder ? ",\"held_for_ms\":" : ",\"waiting_for_ms\":") +
         std::to_string(AgeMs(now_ms, p.since_ms));
  }
  return s + "}";
}

void PrintJson(const SyncListing& l) {
  std::string out = "{\"objects\":[";
  for (size_t i = 0; i < l.objects.size(); ++i) {
    const SyncObjectInfo& o = l.objects[i];
    if (i) out += ",";
    out += "{\"name\":" + JsonString(o.name) + ",\"kind\":" + JsonString(SyncKindName(o.kind));
    switch (o.kind) {
      case SyncKind::kSemaphore:
        out += ",\"limit\":" + std::to_string(o.limit) + ",\"used\":" + std::to_string(o.used);
        break;
      case SyncKind::kLatch:
        out +=
            ",\"initial\":" + std::to_string(o.initial) + ",\"count\":" + std::to_string(o.count);
        break;
      case SyncKind::kBarrier:
        out += ",\"parties\":" + std::to_string(o.parties) +
               ",\"generation\":" + std::to_string(o.generation);
        break;
    }
    out += ",\"holders\":[";
    for (size_t k = 0; k < o.holders.size(); ++k) {
      out += (k ? "," : "") + PartyJson(o.holders[k], l.server_time_ms, true);
    }
    out += "],\"waiters\":[";
    for (size_t k = 0; k < o.waiters.size(); ++k) {
      out += (k ? "," : "") + PartyJson(o.waiters[k], l.server_time_ms, false);
    }
    out += "]}";
  }
  out += std::string("],\"truncated\":") + (l.truncated ? "true" : "false") +
         ",\"server_time_ms\":" + std::to_string(l.server_time_ms) + "}\n";
  std::fputs(out.c_str(), stdout);
}

std::string StateText(const SyncObjectInfo& o) {
  switch (o.kind) {
    case SyncKind::kSemaphore:
      return std::to_string(o.used) + " of " + std::to_string(o.limit) + " permits used";
    case SyncKind::kLatch:
      return o.count == 0 ? "open (counted down from " + std::to_string(o.initial) + ")"
                          : "count " + std::to_string(o.count) + " of " + std::to_string(o.initial);
    case SyncKind::kBarrier:
      return std::to_string(o.waiters.size()) + " of " + std::to_string(o.parties) +
             " parties waiting, generation " + std::to_string(o.generation);
  }
  return "";
}

void PrintTable(const SyncListing& l) {
  using Row = std::vector<std::string>;
  std::vector<Row> rows = {{"NAME", "KIND", "STATE", "WAITERS"}};
  for (const SyncObjectInfo& o : l.objects) {
    rows.push_back({o.name, std::string(SyncKindName(o.kind)), StateText(o),
                    std::to_string(o.waiters.size())});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const Row& r : rows) {
    for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  }
  auto line = [&](const Row& r) {
    std::string s;
    for (size_t c = 0; c < r.size(); ++c) {
      s += r[c];
      if (c + 1 < r.size()) s += std::string(width[c] - r[c].size() + 2, ' ');
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    std::printf("%s\n", s.c_str());
  };
  line(rows[0]);
  for (size_t i = 0; i < l.objects.size(); ++i) {
    line(rows[i + 1]);
    const SyncObjectInfo& o = l.objects[i];
    for (const SyncPartyInfo& h : o.holders) {
      std::printf("  holder  %s: %u permit%s, token %llu, for %s\n",
                  DescribeOwner(h.session_id, h.owner, h.client_name).c_str(), h.permits,
                  h.permits == 1 ? "" : "s", static_cast<unsigned long long>(h.fencing_token),
                  FormatDurationMs(AgeMs(l.server_time_ms, h.since_ms)).c_str());
    }
    for (const SyncPartyInfo& w : o.waiters) {
      std::string s = "  waiter  " + DescribeOwner(w.session_id, w.owner, w.client_name);
      if (o.kind == SyncKind::kSemaphore) {
        s += ": wants " + std::to_string(w.permits) + " permit" + (w.permits == 1 ? "" : "s");
        if (w.since_ms != 0) {
          s += ", for " + FormatDurationMs(AgeMs(l.server_time_ms, w.since_ms));
        }
      }
      std::printf("%s\n", s.c_str());
    }
  }
}

int RunSyncList(const SyncFlags& f) {
  ClientOptions o;
  o.endpoint = f.client.endpoint;
  o.auth_token = f.client.AuthToken();
  o.client_name = "latchkey sync";
  auto client = Client::Connect(o);
  if (!client.ok()) {
    return ReportConnectFailure("latchkey sync list", f.client.endpoint.c_str(), client.status());
  }
  ListSyncOptions lo;
  lo.prefix = f.prefix;
  lo.limit = f.limit;
  lo.consistency = f.stale ? ReadConsistency::kSerializable : ReadConsistency::kLinearizable;
  auto listing = ListSync(**client, lo);
  if (!listing.ok()) {
    std::fprintf(stderr, "latchkey sync list: %s\n", listing.status().ToString().c_str());
    return listing.status().code() == Code::kInvalidArgument ? kExitUsage : kExitUnavailable;
  }
  if (f.json) {
    PrintJson(*listing);
    return 0;
  }
  if (listing->objects.empty()) {
    std::printf("no semaphores, latches or barriers%s\n",
                f.prefix.empty() ? "" : (" at or below '" + f.prefix + "'").c_str());
    return 0;
  }
  PrintTable(*listing);
  if (listing->truncated) {
    std::printf("(showing the first %u: narrow PREFIX or raise --limit)\n", f.limit);
  }
  return 0;
}

}  // namespace

Subcommand AddSyncCommand(CLI::App& app) {
  auto* sync = app.add_subcommand("sync", "Inspect semaphores, latches and barriers");
  sync->require_subcommand(1);
  auto* cmd = sync->add_subcommand(
      "list",
      "List the semaphores, latches and barriers at or below PREFIX (all without it): "
      "semaphores with permits used/limit and each holder (session, owner, client, permits, "
      "fencing token, how long held), latches with their count, barriers with parties and "
      "generation, and every waiter in queue order. 'a' covers 'a' and 'a.*', not 'ab'.");
  auto f = std::make_shared<SyncFlags>();
  cmd->add_option("prefix", f->prefix, "Name prefix, e.g. jobs (matches jobs and jobs.*)");
  cmd->add_flag("--json", f->json,
                "Print one JSON object {objects:[{name, kind, limit/used | initial/count | "
                "parties/generation, holders:[...], waiters:[...]}], truncated, server_time_ms}");
  cmd->add_flag("--stale", f->stale,
                "Read the connected node's state without a read barrier (may lag)");
  cmd->add_option("--limit", f->limit, "List at most this many objects")
      ->check(CLI::Range(1u, 100'000u))
      ->capture_default_str();
  AddClientFlags(cmd, &f->client);
  return {cmd, [f]() { return RunSyncList(*f); }};
}

}  // namespace latchkey::cli
