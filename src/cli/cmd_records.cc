// Record subcommands (seed 004, docs/design/0013-records.md):
//   latchkey record create|get|update|delete|lock|find
// A CLI process has its own session, so the record lock lives as long as the
// command: `update` and `delete` lock (EX, optionally if unchanged since a
// revision), write and unlock in one invocation; `lock ... -- CMD` runs CMD
// while holding the lock and unlocks when it ends. Output a person can read,
// or --json (one JSON object) for scripts.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "cli/commands.h"
#include "cli/lock_display.h"
#include "common/duration.h"
#include "latchkey/client.h"
#include "latchkey/records.h"

namespace latchkey::cli {

namespace {

inline constexpr int kExitAbsent = 1;  // no such record

struct RecFlags {
  ClientFlags client;
  bool json = false;
  std::string table;
  uint64_t number = 0;
  std::vector<std::string> fields;  // FIELD=VALUE
  std::string key_fields;           // comma-separated
  uint64_t revision = 0;
  uint64_t if_unchanged_since = 0;
  std::string mode = "EX";
  std::string wait;  // "" = no limit
  bool no_wait = false;
  bool exact = false;
  uint32_t limit = 0;
  std::vector<std::string> command;
};

std::string Num(uint64_t v) {
  return std::to_string(v);
}

std::string RecordJson(const Record& r) {
  std::string s =
      "{\"table\":" + JsonString(r.table) + ",\"number\":" + Num(r.number) + ",\"fields\":{";
  bool first = true;
  for (const auto& [name, value] : r.fields) {
    s += (first ? "" : ",") + JsonString(name) + ":" + JsonString(value);
    first = false;
  }
  return s + "},\"create_revision\":" + Num(r.create_revision) +
         ",\"mod_revision\":" + Num(r.mod_revision) + ",\"version\":" + Num(r.version) +
         ",\"lock_name\":" + JsonString(r.lock_name) + "}";
}

void PrintRecord(const RecFlags& f, const Record& r, const char* what) {
  if (f.json) {
    std::printf("%s\n", RecordJson(r).c_str());
    return;
  }
  std::printf("%s/%llu%s: version %llu, revision %llu (created at %llu), lock %s\n",
              r.table.c_str(), static_cast<unsigned long long>(r.number), what,
              static_cast<unsigned long long>(r.version),
              static_cast<unsigned long long>(r.mod_revision),
              static_cast<unsigned long long>(r.create_revision), r.lock_name.c_str());
  for (const auto& [name, value] : r.fields) {
    std::printf("  %s = %s\n", name.c_str(), value.c_str());
  }
}

int Fail(const char* cmd, const Status& st) {
  std::fprintf(stderr, "latchkey record %s: %s\n", cmd, st.ToString().c_str());
  switch (st.code()) {
    case Code::kInvalidArgument: return kExitUsage;
    case Code::kUnavailable:
    case Code::kNotLeader: return kExitUnavailable;
    case Code::kTimeout:
    case Code::kAlreadyExists:
    case Code::kRecordChanged:
    case Code::kLockBusy: return kExitBusy;
    case Code::kNotFound: return kExitAbsent;
    default: return kExitSoftware;
  }
}

Result<RecordFields> ParseFields(const std::vector<std::string>& args) {
  RecordFields out;
  for (const std::string& a : args) {
    const auto eq = a.find('=');
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgument("'" + a + "': expected FIELD=VALUE");
    }
    out[a.substr(0, eq)] = a.substr(eq + 1);
  }
  return out;
}

Result<RecordLockOptions> LockOptions(const RecFlags& f) {
  RecordLockOptions o;
  auto mode = ParseLockMode(f.mode);
  if (!mode) return InvalidArgument("unknown mode '" + f.mode + "'");
  o.mode = *mode;
  o.if_unchanged_since = f.if_unchanged_since;
  o.try_only = f.no_wait;
  if (!f.wait.empty()) {
    auto ms = ParseDurationMs(f.wait);
    if (!ms.ok()) return ms.status();
    o.wait_timeout = std::chrono::milliseconds(*ms);
  }
  return o;
}

int RunCommand(const std::vector<std::string>& args, const Grant& g) {
  ::setenv("LATCHKEY_LOCK_NAME", g.name.c_str(), 1);
  ::setenv("LATCHKEY_FENCING_TOKEN", std::to_string(g.fencing_token).c_str(), 1);
  pid_t pid = ::fork();
  if (pid < 0) return kExitSoftware;
  if (pid == 0) {
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "latchkey record lock: cannot run %s: %s\n", argv[0],
                 std::strerror(errno));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int Run(const std::string& name, const RecFlags& f) {
  const std::string label = name;
  const char* cmd = label.c_str();
  ClientOptions o;
  o.endpoint = f.client.endpoint;
  o.auth_token = f.client.AuthToken();
  o.client_name = "latchkey record " + name;
  auto ttl = ParseDurationMs(f.client.session_ttl);
  if (!ttl.ok()) return Fail(cmd, ttl.status());
  o.session_ttl = std::chrono::milliseconds(*ttl);
  auto client = Client::Connect(o);
  if (!client.ok()) return Fail(cmd, client.status());
  Records recs(**client, f.table);

  if (name == "create") {
    auto fields = ParseFields(f.fields);
    if (!fields.ok()) return Fail(cmd, fields.status());
    std::vector<std::string> key;
    for (size_t start = 0; start < f.key_fields.size();) {
      size_t comma = f.key_fields.find(',', start);
      if (comma == std::string::npos) comma = f.key_fields.size();
      if (comma > start) key.push_back(f.key_fields.substr(start, comma - start));
      start = comma + 1;
    }
    auto r = recs.Create(*fields, key);
    if (!r.ok()) return Fail(cmd, r.status());
    PrintRecord(f, *r, " created");
    return 0;
  }
  if (name == "get") {
    auto r = recs.Get(f.number, f.revision);
    if (!r.ok()) return Fail(cmd, r.status());
    PrintRecord(f, *r, "");
    return 0;
  }
  if (name == "find") {
    std::vector<RecordCriterion> criteria;
    auto fields = ParseFields(f.fields);
    if (!fields.ok()) return Fail(cmd, fields.status());
    for (const auto& [field, value] : *fields) criteria.push_back({field, value, f.exact});
    auto page = recs.Find(criteria, f.revision, 0, f.limit);
    if (!page.ok()) return Fail(cmd, page.status());
    if (f.json) {
      std::string s = "{\"revision\":" + Num(page->revision) +
                      ",\"truncated\":" + (page->truncated ? "true" : "false") + ",\"records\":[";
      for (size_t i = 0; i < page->records.size(); ++i) {
        s += (i ? "," : "") + RecordJson(page->records[i]);
      }
      std::printf("%s]}\n", s.c_str());
      return 0;
    }
    for (const Record& r : page->records) PrintRecord(f, r, "");
    std::printf("%zu records at revision %llu%s\n", page->records.size(),
                static_cast<unsigned long long>(page->revision),
                page->truncated ? " (more: raise --limit)" : "");
    return 0;
  }
  // lock, update, delete: take the record lock first.
  auto lo = LockOptions(f);
  if (!lo.ok()) return Fail(cmd, lo.status());
  auto guard = RecordLockGuard::Acquire(recs, f.number, *lo);
  if (!guard.ok()) return Fail(cmd, guard.status());
  if (name == "lock") {
    if (!f.json) {
      std::fprintf(stderr, "locked %s in %s, fencing token %llu\n", guard->grant().name.c_str(),
                   f.mode.c_str(), static_cast<unsigned long long>(guard->fencing_token()));
    } else {
      std::printf("{\"lock_name\":%s,\"fencing_token\":%llu}\n",
                  JsonString(guard->grant().name).c_str(),
                  static_cast<unsigned long long>(guard->fencing_token()));
      std::fflush(stdout);
    }
    if (f.command.empty()) return 0;
    const int rc = RunCommand(f.command, guard->grant());
    Status un = guard->Unlock();
    if (!un.ok()) {
      std::fprintf(stderr, "latchkey record lock: the lock was lost while the command ran: %s\n",
                   un.ToString().c_str());
      return rc == 0 ? kExitSessionLost : rc;
    }
    return rc;
  }
  if (name == "update") {
    auto fields = ParseFields(f.fields);
    if (!fields.ok()) return Fail(cmd, fields.status());
    auto r = recs.Update(f.number, *fields);
    if (!r.ok()) return Fail(cmd, r.status());
    PrintRecord(f, *r, " updated");
    return 0;
  }
  if (name == "delete") {
    auto rev = recs.Delete(f.number);
    if (!rev.ok()) return Fail(cmd, rev.status());
    (void)guard->Unlock();  // the delete revoked it already
    if (f.json) {
      std::printf("{\"deleted\":true,\"revision\":%llu}\n", static_cast<unsigned long long>(*rev));
    } else {
      std::printf("%s/%llu deleted at revision %llu\n", f.table.c_str(),
                  static_cast<unsigned long long>(f.number), static_cast<unsigned long long>(*rev));
    }
    return 0;
  }
  return kExitUsage;
}

}  // namespace

std::vector<Subcommand> AddRecordCommands(CLI::App& app) {
  auto* rec = app.add_subcommand("record",
                                 "Numbered records with locks (seed 004): "
                                 "create, get, update, delete, lock, find");
  rec->require_subcommand(1);
  std::vector<Subcommand> out;
  auto add = [&](const std::string& name, const std::string& help, bool number, bool fields,
                 bool lock) {
    auto* cmd = rec->add_subcommand(name, help);
    auto f = std::make_shared<RecFlags>();
    AddClientFlags(cmd, &f->client);
    cmd->add_flag("--json", f->json, "One JSON object on stdout");
    cmd->add_option("table", f->table, "Table name ([A-Za-z0-9_-])")->required();
    if (number) cmd->add_option("number", f->number, "Record number")->required();
    if (fields) cmd->add_option("fields", f->fields, "FIELD=VALUE ...");
    if (lock) {
      cmd->add_option("--if-unchanged-since", f->if_unchanged_since,
                      "Fail (RECORD_CHANGED, exit 75) if the record was written after this "
                      "revision (e.g. the revision you read it at)");
      cmd->add_option("--mode", f->mode, "Lock mode (EX default; writes need PW or EX)")
          ->capture_default_str();
      cmd->add_option("--wait", f->wait, "Give up waiting for the lock after this long");
      cmd->add_flag("--no-wait", f->no_wait, "Fail at once (exit 75) if the lock is held");
    }
    out.push_back({cmd, [name, f] { return Run(name, *f); }});
    return std::make_pair(cmd, f);
  };
  auto [create, cf] =
      add("create", "Create a record with the lowest free number", false, true, false);
  create->add_option("--key", cf->key_fields,
                     "Unique key fields, comma-separated (the table's first create fixes "
                     "it; default: every field)");
  auto [get, gf] = add("get", "Read a record (optionally at a past revision)", true, false, false);
  get->add_option("--revision", gf->revision, "Read as of this revision");
  add("update", "Lock, set FIELD=VALUE..., unlock", true, true, true);
  add("delete", "Lock and delete a record (revokes every lock on it)", true, false, true);
  auto [lock, lf] =
      add("lock", "Lock a record; with -- CMD, run CMD while holding it", true, false, true);
  lock->add_option("command", lf->command, "Command to run under the lock (after --)");
  auto [find, ff] =
      add("find", "Find records whose fields start with FIELD=PREFIX...", false, true, false);
  find->add_flag("--exact", ff->exact, "Match values exactly instead of by prefix");
  find->add_option("--revision", ff->revision, "Find as of this revision");
  find->add_option("--limit", ff->limit, "At most this many records (default 100, max 1000)");
  return out;
}

}  // namespace latchkey::cli
