// Watches, pub/sub and scripts (docs/design/0012-watches-pubsub-scripts.md):
//   latchkey watch KEY | --prefix P [--from REV] [--count N] [--json]
//   latchkey publish NS MSG
//   latchkey subscribe NS [--count N] [--json]
//   latchkey script put NAME FILE | latchkey script rm NAME
// watch and subscribe print one line (or one JSON object) per event and run
// until interrupted, or until --count events were printed.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "cli/lock_display.h"
#include "common/duration.h"
#include "latchkey/client.h"
#include "latchkey/objects.h"
#include "latchkey/pubsub.h"
#include "latchkey/watch.h"

namespace latchkey::cli {

namespace {

struct WatchFlags {
  ClientFlags client;
  bool json = false;
  std::string key;
  std::string prefix;
  bool prefix_given = false;
  uint64_t from = 0;
  uint64_t count = 0;  // 0 = until interrupted
  std::string name;
  std::string value;
};

int Fail(const char* cmd, const Status& st) {
  std::fprintf(stderr, "latchkey %s: %s\n", cmd, st.ToString().c_str());
  switch (st.code()) {
    case Code::kInvalidArgument: return kExitUsage;
    case Code::kUnavailable:
    case Code::kNotLeader: return kExitUnavailable;
    case Code::kCompacted: return 3;
    default: return kExitSoftware;
  }
}

Result<std::unique_ptr<Client>> Connect(const WatchFlags& f, const char* name) {
  ClientOptions o;
  o.endpoint = f.client.endpoint;
  o.auth_token = f.client.AuthToken();
  o.client_name = std::string("latchkey ") + name;
  auto ttl = ParseDurationMs(f.client.session_ttl);
  if (!ttl.ok()) return ttl.status();
  o.session_ttl = std::chrono::milliseconds(*ttl);
  return Client::Connect(o);
}

std::string EventJson(const Object& o) {
  std::string s = "{\"key\":" + JsonString(o.key) +
                  ",\"type\":" + JsonString(o.state == ObjectState::kAbsent ? "delete" : "put") +
                  ",\"state\":" + JsonString(ObjectStateName(o.state)) +
                  ",\"revision\":" + std::to_string(o.mod_revision);
  if (o.state != ObjectState::kAbsent) {
    s += ",\"value\":" + JsonString(o.value) + ",\"version\":" + std::to_string(o.version);
  }
  return s + "}";
}

int RunWatch(const WatchFlags& f) {
  WatchOptions o;
  o.endpoint = f.client.endpoint;
  o.auth_token = f.client.AuthToken();
  o.prefix = f.prefix_given;
  o.key = f.prefix_given ? f.prefix : f.key;
  o.from_revision = f.from;
  if (!f.prefix_given && f.key.empty()) {
    return Fail("watch", InvalidArgument("give a KEY or --prefix PREFIX"));
  }
  auto w = Watch::Open(o);
  if (!w.ok()) return Fail("watch", w.status());
  if (!f.json) {
    std::fprintf(
        stderr, "watching %s'%s' from revision %llu\n", o.prefix ? "prefix " : "", o.key.c_str(),
        static_cast<unsigned long long>(f.from != 0 ? f.from : (*w)->start_revision() + 1));
  }
  for (uint64_t n = 0; f.count == 0 || n < f.count;) {
    auto ev = (*w)->Next(std::chrono::seconds(1));
    if (!ev.ok()) {
      if (ev.status().code() == Code::kTimeout) continue;
      return Fail("watch", ev.status());
    }
    ++n;
    if (f.json) {
      std::printf("%s\n", EventJson(*ev).c_str());
    } else if (ev->state == ObjectState::kAbsent) {
      std::printf("%llu DELETE %s\n", static_cast<unsigned long long>(ev->mod_revision),
                  ev->key.c_str());
    } else {
      std::printf("%llu %s %s %s\n", static_cast<unsigned long long>(ev->mod_revision),
                  ev->state == ObjectState::kReserved ? "RESERVE" : "PUT", ev->key.c_str(),
                  ev->value.c_str());
    }
    std::fflush(stdout);
  }
  return 0;
}

int RunPublish(const WatchFlags& f) {
  auto client = Connect(f, "publish");
  if (!client.ok()) return Fail("publish", client.status());
  auto rev = Publish(**client, f.name, f.value);
  if (!rev.ok()) return Fail("publish", rev.status());
  if (f.json) {
    std::printf("{\"revision\":%llu}\n", static_cast<unsigned long long>(*rev));
  } else {
    std::printf("published at revision %llu\n", static_cast<unsigned long long>(*rev));
  }
  return 0;
}

int RunSubscribe(const WatchFlags& f) {
  SubscribeOptions o;
  o.endpoint = f.client.endpoint;
  o.auth_token = f.client.AuthToken();
  o.namespace_name = f.name;
  auto sub = Subscription::Open(o);
  if (!sub.ok()) return Fail("subscribe", sub.status());
  if (!f.json) std::fprintf(stderr, "subscribed to '%s'\n", f.name.c_str());
  for (uint64_t n = 0; f.count == 0 || n < f.count;) {
    auto m = (*sub)->Next(std::chrono::seconds(1));
    if (!m.ok()) {
      if (m.status().code() == Code::kTimeout) continue;
      return Fail("subscribe", m.status());
    }
    ++n;
    if (f.json) {
      std::printf("{\"namespace\":%s,\"revision\":%llu,\"message\":%s}\n",
                  JsonString(m->namespace_name).c_str(),
                  static_cast<unsigned long long>(m->revision), JsonString(m->payload).c_str());
    } else {
      std::printf("%s\n", m->payload.c_str());
    }
    std::fflush(stdout);
  }
  return 0;
}

int RunScriptPut(const WatchFlags& f, bool remove) {
  std::string source;
  if (!remove) {
    std::ifstream in(f.value, std::ios::binary);
    if (!in) return Fail("script put", InvalidArgument("cannot read " + f.value));
    source.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (source.empty()) return Fail("script put", InvalidArgument(f.value + " is empty"));
  }
  auto client = Connect(f, "script");
  if (!client.ok()) return Fail("script", client.status());
  Objects objs(**client);
  auto rev = objs.PutScript(f.name, source);
  if (!rev.ok()) return Fail("script", rev.status());
  if (f.json) {
    std::printf("{\"name\":%s,\"revision\":%llu}\n", JsonString(f.name).c_str(),
                static_cast<unsigned long long>(*rev));
  } else {
    std::printf("script '%s' %s at revision %llu\n", f.name.c_str(),
                remove ? "removed" : "registered", static_cast<unsigned long long>(*rev));
  }
  return 0;
}

}  // namespace

std::vector<Subcommand> AddWatchCommands(CLI::App& app) {
  std::vector<Subcommand> out;
  auto flags = std::make_shared<WatchFlags>();
  auto common = [flags](CLI::App* c) {
    AddClientFlags(c, &flags->client);
    c->add_flag("--json", flags->json, "One JSON object per line");
  };
  CLI::App* w = app.add_subcommand("watch", "Stream the changes of a key or prefix");
  common(w);
  w->add_option("key", flags->key, "Object key");
  w->add_option("--prefix", flags->prefix, "Watch every key starting with this")
      ->each([f = flags.get()](const std::string&) { f->prefix_given = true; });
  w->add_option("--from", flags->from, "Replay history from this revision (default: now)");
  w->add_option("--count", flags->count, "Stop after this many events (default: never)");
  out.push_back({w, [flags] { return RunWatch(*flags); }});

  CLI::App* p = app.add_subcommand("publish", "Publish a message to a namespace");
  common(p);
  p->add_option("namespace", flags->name, "Namespace")->required();
  p->add_option("message", flags->value, "Message")->required();
  out.push_back({p, [flags] { return RunPublish(*flags); }});

  CLI::App* s = app.add_subcommand("subscribe", "Print the messages published to a namespace");
  common(s);
  s->add_option("namespace", flags->name, "Namespace")->required();
  s->add_option("--count", flags->count, "Stop after this many messages (default: never)");
  out.push_back({s, [flags] { return RunSubscribe(*flags); }});

  CLI::App* sc = app.add_subcommand("script", "Register Lua user methods (run with exec)");
  sc->require_subcommand(1);
  CLI::App* put = sc->add_subcommand("put", "Register or replace script NAME from FILE");
  common(put);
  put->add_option("name", flags->name, "Method name")->required();
  put->add_option("file", flags->value, "Lua source file")->required();
  CLI::App* rm = sc->add_subcommand("rm", "Remove script NAME");
  common(rm);
  rm->add_option("name", flags->name, "Method name")->required();
  out.push_back({sc, [flags, put] { return RunScriptPut(*flags, !put->parsed()); }});
  return out;
}

}  // namespace latchkey::cli
