// Object store subcommands (docs/design/0008-object-store.md):
//   latchkey get|put|reserve|wait|rm|ttl|txn|history|find|exec|compact
// Output a person can read, or --json (one JSON object) for scripts.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "cli/lock_display.h"
#include "common/duration.h"
#include "latchkey/client.h"
#include "latchkey/objects.h"

namespace latchkey::cli {

namespace {

inline constexpr int kExitAbsent = 1;  // get/wait: the object does not exist

struct ObjFlags {
  ClientFlags client;
  bool json = false;
  std::string key;
  std::string value;
  bool value_given = false;
  uint64_t revision = 0;
  uint32_t limit = 0;
  std::string duration;
  bool sliding = false;
  bool use_default = false;
  bool clear = false;
  bool all_pages = false;
  std::vector<std::string> args;
  std::vector<std::string> ifs, thens, elses;
};

std::string Num(uint64_t v) {
  return std::to_string(v);
}

std::string ObjectJson(const Object& o) {
  std::string s =
      "{\"key\":" + JsonString(o.key) + ",\"state\":" + JsonString(ObjectStateName(o.state));
  if (o.state != ObjectState::kAbsent) {
    s += ",\"value\":" + JsonString(o.value) + ",\"create_revision\":" + Num(o.create_revision) +
         ",\"version\":" + Num(o.version);
  }
  s += ",\"mod_revision\":" + Num(o.mod_revision);
  if (o.reserved_by != 0) s += ",\"reserved_by\":" + Num(o.reserved_by);
  if (o.ttl_ms != 0) {
    s += ",\"ttl_ms\":" + Num(o.ttl_ms) + ",\"ttl_sliding\":" + (o.ttl_sliding ? "true" : "false");
    if (o.expires_at_ms != 0) s += ",\"expires_at_ms\":" + Num(o.expires_at_ms);
  }
  if (o.read_revision != 0) s += ",\"read_revision\":" + Num(o.read_revision);
  return s + "}";
}

std::string ObjectLine(const Object& o) {
  std::string s = o.key + ": " + std::string(ObjectStateName(o.state));
  if (o.state == ObjectState::kAbsent) {
    if (o.mod_revision != 0) s += " (removed at revision " + Num(o.mod_revision) + ")";
    return s;
  }
  s += ", version " + Num(o.version) + ", revision " + Num(o.mod_revision) + " (created at " +
       Num(o.create_revision) + ")";
  if (o.reserved_by != 0) s += ", reserved by session " + Num(o.reserved_by);
  if (o.ttl_ms != 0) {
    s += ", ttl " + FormatDurationMs(o.ttl_ms) + (o.ttl_sliding ? " (sliding)" : " (absolute)");
  }
  return s;
}

void PrintObject(const ObjFlags& f, const Object& o) {
  if (f.json) {
    std::printf("%s\n", ObjectJson(o).c_str());
    return;
  }
  std::printf("%s\n", ObjectLine(o).c_str());
  if (o.state == ObjectState::kAvailable) std::printf("%s\n", o.value.c_str());
}

int Fail(const char* cmd, const Status& st) {
  std::fprintf(stderr, "latchkey %s: %s\n", cmd, st.ToString().c_str());
  switch (st.code()) {
    case Code::kInvalidArgument: return kExitUsage;
    case Code::kUnavailable:
    case Code::kNotLeader: return kExitUnavailable;
    case Code::kTimeout:
    case Code::kAlreadyExists:
    case Code::kLockBusy: return kExitBusy;
    case Code::kNotFound: return kExitAbsent;
    default: return kExitSoftware;
  }
}

Result<std::unique_ptr<Client>> Connect(const ObjFlags& f, const char* name) {
  ClientOptions o;
  o.endpoint = f.client.endpoint;
  o.auth_token = f.client.AuthToken();
  o.client_name = std::string("latchkey ") + name;
  auto ttl = ParseDurationMs(f.client.session_ttl);
  if (!ttl.ok()) return ttl.status();
  o.session_ttl = std::chrono::milliseconds(*ttl);
  return Client::Connect(o);
}

// Runs `argv` with stdout captured; returns (exit status, output).
Result<std::pair<int, std::string>> RunCaptured(const std::vector<std::string>& args) {
  int fds[2];
  if (::pipe(fds) != 0) return Internal(std::string("pipe: ") + std::strerror(errno));
  pid_t pid = ::fork();
  if (pid < 0) return Internal(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "latchkey reserve: cannot run %s: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return std::make_pair(rc, std::move(out));
}

// "value(K) == V", "version(K) >= N", "mod(K) < N", "create(K) == N",
// "holds(L) >= MODE", "token(L) == N".
Result<Compare> ParseCompare(const std::string& text) {
  const auto open = text.find('('), close = text.find(')');
  if (open == std::string::npos || close == std::string::npos || close < open) {
    return InvalidArgument("compare '" + text + "': expected FUNC(KEY) OP VALUE");
  }
  const std::string fn = text.substr(0, open), key = text.substr(open + 1, close - open - 1);
  std::istringstream rest(text.substr(close + 1));
  std::string op_text, arg;
  rest >> op_text;
  std::getline(rest >> std::ws, arg);
  static const std::pair<const char*, Compare::Op> kOps[] = {
      {"==", Compare::Op::kEq}, {"!=", Compare::Op::kNe}, {"<", Compare::Op::kLt},
      {"<=", Compare::Op::kLe}, {">", Compare::Op::kGt},  {">=", Compare::Op::kGe}};
  std::optional<Compare::Op> op;
  for (const auto& [t, o] : kOps) {
    if (op_text == t) op = o;
  }
  if (!op) return InvalidArgument("compare '" + text + "': unknown operator '" + op_text + "'");
  if (fn == "value") return Compare::Value(key, *op, arg);
  if (fn == "holds") {
    auto mode = ParseLockMode(arg);
    if (!mode || *op != Compare::Op::kGe) {
      return InvalidArgument("compare '" + text + "': use holds(LOCK) >= MODE");
    }
    return Compare::HoldsLock(key, *mode);
  }
  uint64_t num = 0;
  auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), num);
  if (arg.empty() || ec != std::errc() || end != arg.data() + arg.size()) {
    return InvalidArgument("compare '" + text + "': '" + arg + "' is not a number");
  }
  if (fn == "version") return Compare::Version(key, *op, num);
  if (fn == "mod") return Compare::ModRevision(key, *op, num);
  if (fn == "create") return Compare::CreateRevision(key, *op, num);
  if (fn == "token") return Compare::LockToken(key, *op, num);
  return InvalidArgument("compare '" + text +
                         "': use value(), version(), mod(), create(), holds() or token()");
}

// "put K V", "del K", "get K", "release L".
Result<TxnOp> ParseOp(const std::string& text) {
  std::istringstream in(text);
  std::string verb, key, value;
  in >> verb >> key;
  std::getline(in >> std::ws, value);
  if (key.empty()) return InvalidArgument("op '" + text + "': expected VERB KEY [VALUE]");
  if (verb == "put") return TxnOp::Put(key, value);
  if (verb == "del") return TxnOp::Delete(key);
  if (verb == "get") return TxnOp::Get(key);
  if (verb == "release") return TxnOp::ReleaseLock(key);
  return InvalidArgument("op '" + text + "': use put, del, get or release");
}

int RunObjectCommand(const std::string& name, const ObjFlags& f) {
  const char* cmd = name.c_str();
  auto client = Connect(f, cmd);
  if (!client.ok()) return Fail(cmd, client.status());
  Objects objs(**client);
  if (name == "get" || name == "wait") {
    uint64_t ms = 0;
    if (!f.duration.empty()) {
      auto d = ParseDurationMs(f.duration);
      if (!d.ok()) return Fail(cmd, d.status());
      ms = *d;
    }
    Result<Object> o = name == "get" ? objs.Get(f.key, f.revision)
                                     : objs.WaitFor(f.key, std::chrono::milliseconds(ms));
    if (!o.ok()) return Fail(cmd, o.status());
    PrintObject(f, *o);
    return o->state == ObjectState::kAbsent ? kExitAbsent : 0;
  }
  if (name == "put") {
    std::string value = f.value;
    if (!f.value_given) {
      value.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    }
    auto rev = objs.Put(f.key, value);
    if (!rev.ok()) return Fail(cmd, rev.status());
    if (f.json) {
      std::printf("{\"key\":%s,\"revision\":%llu}\n", JsonString(f.key).c_str(),
                  static_cast<unsigned long long>(*rev));
    } else {
      std::printf("%s: written at revision %llu\n", f.key.c_str(),
                  static_cast<unsigned long long>(*rev));
    }
    return 0;
  }
  if (name == "reserve") {
    auto o = objs.Reserve(f.key);
    if (!o.ok()) return Fail(cmd, o.status());
    if (f.args.empty()) {
      PrintObject(f, *o);
      std::fprintf(stderr,
                   "latchkey reserve: the reservation ends with this command; give a command "
                   "(latchkey reserve KEY -- CMD...) to compute and publish the value\n");
      return 0;
    }
    auto run = RunCaptured(f.args);
    if (!run.ok()) return Fail(cmd, run.status());
    if (run->first != 0) {
      // Closing the session drops the reservation: waiters see the key absent.
      std::fprintf(stderr, "latchkey reserve: command exited %d; reservation dropped\n",
                   run->first);
      return run->first;
    }
    auto rev = objs.Put(f.key, run->second);
    if (!rev.ok()) return Fail(cmd, rev.status());
    if (f.json) {
      std::printf("{\"key\":%s,\"revision\":%llu}\n", JsonString(f.key).c_str(),
                  static_cast<unsigned long long>(*rev));
    } else {
      std::printf("%s: published %zu bytes at revision %llu\n", f.key.c_str(), run->second.size(),
                  static_cast<unsigned long long>(*rev));
    }
    return 0;
  }
  if (name == "rm") {
    auto existed = objs.Remove(f.key);
    if (!existed.ok()) return Fail(cmd, existed.status());
    if (f.json) {
      std::printf("{\"key\":%s,\"existed\":%s}\n", JsonString(f.key).c_str(),
                  *existed ? "true" : "false");
    } else {
      std::printf("%s: %s\n", f.key.c_str(), *existed ? "removed" : "did not exist");
    }
    return 0;
  }
  if (name == "ttl") {
    Status st;
    if (f.clear) {
      st = objs.ClearTimeout(f.key);
    } else if (f.use_default) {
      st = f.sliding ? objs.SetDefaultTimeoutAfterRequest(f.key) : objs.SetDefaultTimeout(f.key);
    } else {
      auto d = ParseDurationMs(f.duration);
      if (!d.ok()) return Fail(cmd, d.status());
      const std::chrono::milliseconds ms(*d);
      st = f.sliding ? objs.SetTimeoutAfterRequest(f.key, ms) : objs.SetTimeout(f.key, ms);
    }
    if (!st.ok()) return Fail(cmd, st);
    auto o = objs.Get(f.key);
    if (!o.ok()) return Fail(cmd, o.status());
    if (f.json) {
      std::printf("%s\n", ObjectJson(*o).c_str());
    } else {
      std::printf("%s\n", ObjectLine(*o).c_str());
    }
    return 0;
  }
  if (name == "txn") {
    TxnRequest t;
    for (const auto& s : f.ifs) {
      auto c = ParseCompare(s);
      if (!c.ok()) return Fail(cmd, c.status());
      t.compares.push_back(*c);
    }
    for (const auto& [list, out] :
         {std::make_pair(&f.thens, &t.then_ops), std::make_pair(&f.elses, &t.else_ops)}) {
      for (const auto& s : *list) {
        auto op = ParseOp(s);
        if (!op.ok()) return Fail(cmd, op.status());
        out->push_back(*op);
      }
    }
    auto r = objs.Txn(t);
    if (!r.ok()) return Fail(cmd, r.status());
    if (f.json) {
      std::string s = std::string("{\"succeeded\":") + (r->succeeded ? "true" : "false") +
                      ",\"revision\":" + Num(r->revision) + ",\"gets\":[";
      for (size_t i = 0; i < r->gets.size(); ++i) s += (i ? "," : "") + ObjectJson(r->gets[i]);
      std::printf("%s]}\n", s.c_str());
    } else {
      std::printf("%s branch ran at revision %llu\n", r->succeeded ? "then" : "else",
                  static_cast<unsigned long long>(r->revision));
      for (const Object& o : r->gets) PrintObject(f, o);
    }
    return r->succeeded ? 0 : kExitAbsent;
  }
  if (name == "history" || name == "find") {
    std::vector<Object> all;
    uint64_t rev = f.revision;
    bool truncated = false;
    std::string after;
    do {
      auto page = name == "history" ? objs.History(f.key, f.revision, f.limit)
                                    : objs.Find(f.key, rev, after, f.limit);
      if (!page.ok()) return Fail(cmd, page.status());
      rev = page->revision;
      truncated = page->truncated;
      for (Object& o : page->objects) all.push_back(std::move(o));
      if (!all.empty()) after = all.back().key;
    } while (name == "find" && f.all_pages && truncated);
    if (f.json) {
      std::string s = "{\"revision\":" + Num(rev) +
                      ",\"truncated\":" + (truncated ? "true" : "false") + ",\"objects\":[";
      for (size_t i = 0; i < all.size(); ++i) s += (i ? "," : "") + ObjectJson(all[i]);
      std::printf("%s]}\n", s.c_str());
      return 0;
    }
    for (const Object& o : all) {
      std::printf("%s\n", ObjectLine(o).c_str());
      if (o.state == ObjectState::kAvailable) std::printf("  %s\n", o.value.c_str());
    }
    std::printf("%zu %s %s %llu%s\n", all.size(), name == "find" ? "objects" : "versions",
                name == "find" ? "at revision" : "kept; compacted below revision",
                static_cast<unsigned long long>(rev), truncated ? " (more: raise --limit)" : "");
    return 0;
  }
  if (name == "exec") {
    auto r = objs.ExecuteMethod(f.key, f.value, f.args);
    if (!r.ok()) return Fail(cmd, r.status());
    if (f.json) {
      std::printf("{\"result\":%s}\n", JsonString(*r).c_str());
    } else {
      std::printf("%s\n", r->c_str());
    }
    return 0;
  }
  if (name == "compact") {
    auto r = objs.Compact(f.revision);
    if (!r.ok()) return Fail(cmd, r.status());
    if (f.json) {
      std::printf("{\"compact_revision\":%llu}\n", static_cast<unsigned long long>(*r));
    } else {
      std::printf("history below revision %llu forgotten\n", static_cast<unsigned long long>(*r));
    }
    return 0;
  }
  return kExitUsage;
}

Subcommand Add(CLI::App& app, const std::string& name, const std::string& help,
               const std::function<void(CLI::App*, ObjFlags*)>& setup) {
  auto* cmd = app.add_subcommand(name, help);
  auto f = std::make_shared<ObjFlags>();
  AddClientFlags(cmd, &f->client);
  cmd->add_flag("--json", f->json, "Print one JSON object (for scripts)");
  setup(cmd, f.get());
  return {cmd, [name, f]() { return RunObjectCommand(name, *f); }};
}

}  // namespace

std::vector<Subcommand> AddObjectCommands(CLI::App& app) {
  std::vector<Subcommand> out;
  out.push_back(Add(app, "get", "Show an object (state, revisions, value)", [](auto* c, auto* f) {
    c->add_option("key", f->key, "Object key")->required();
    c->add_option("--revision", f->revision, "Read as of this revision (0 = latest)");
  }));
  out.push_back(Add(app, "put", "Create or replace an object's value", [](auto* c, auto* f) {
    c->add_option("key", f->key, "Object key")->required();
    c->add_option("value", f->value, "The value (default: read stdin)")
        ->each([f](const std::string&) { f->value_given = true; });
  }));
  out.push_back(Add(app, "reserve",
                    "Reserve an object, run a command and publish its stdout as the value",
                    [](auto* c, auto* f) {
                      c->add_option("key", f->key, "Object key")->required();
                      c->add_option("command", f->args, "Command to run (after --)");
                    }));
  out.push_back(
      Add(app, "wait", "Get an object, waiting while it is reserved", [](auto* c, auto* f) {
        c->add_option("key", f->key, "Object key")->required();
        c->add_option("--timeout", f->duration, "Give up after (e.g. 30s)");
      }));
  out.push_back(Add(app, "rm", "Remove an object", [](auto* c, auto* f) {
    c->add_option("key", f->key, "Object key")->required();
  }));
  out.push_back(Add(app, "ttl", "Set or clear an object's timeout", [](auto* c, auto* f) {
    c->add_option("key", f->key, "Object key")->required();
    c->add_option("duration", f->duration, "e.g. 30s, 5m");
    c->add_flag("--sliding", f->sliding, "Restart the clock whenever the object is read");
    c->add_flag("--default", f->use_default, "Use the server's default TTL");
    c->add_flag("--clear", f->clear, "Remove the timeout");
  }));
  out.push_back(Add(app, "txn", "Atomic compare -> then/else", [](auto* c, auto* f) {
    c->add_option("--if", f->ifs,
                  "value(K) == V | version(K) OP N | mod(K) OP N | create(K) OP N | "
                  "holds(L) >= MODE | token(L) OP N");
    c->add_option("--then", f->thens, "put K V | del K | get K | release L");
    c->add_option("--else", f->elses, "put K V | del K | get K | release L");
  }));
  out.push_back(Add(app, "history", "Versions of a key", [](auto* c, auto* f) {
    c->add_option("key", f->key, "Object key")->required();
    c->add_option("--from", f->revision, "From this revision");
    c->add_option("--limit", f->limit, "At most this many (default 100)");
  }));
  out.push_back(Add(app, "find", "Objects under a prefix, at one revision", [](auto* c, auto* f) {
    c->add_option("prefix", f->key, "Key prefix ('' = all)");
    c->add_option("--revision", f->revision, "As of this revision (0 = latest)");
    c->add_option("--limit", f->limit, "Page size (default 100)");
    c->add_flag("--all", f->all_pages, "Fetch every page (same revision)");
  }));
  out.push_back(Add(app, "exec", "Run a server-side method on an object", [](auto* c, auto* f) {
    c->add_option("key", f->key, "Object key")->required();
    c->add_option("method", f->value,
                  "counter.add, counter.get, cas, append, get, lock_for, get_lock_holder, unlock, "
                  "or a script registered with `latchkey script put`")
        ->required();
    c->add_option("args", f->args, "Method arguments");
  }));
  out.push_back(Add(app, "compact", "Forget object history below a revision", [](auto* c, auto* f) {
    c->add_option("revision", f->revision, "Revision (default: current)");
  }));
  return out;
}

}  // namespace latchkey::cli
