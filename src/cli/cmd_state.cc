// `latchkey state owner KEY` and `latchkey state bucket B`: owned-state
// introspection (issue 4, docs/design/0007-cached-locks.md). A StateStore
// key K lives in bucket FNV-1a-32(K) mod N and is guarded by the EX lock
// "<prefix>.<bucket>.<K>"; its owner is the session holding that lock, its
// state the lock's value block. These commands only read: they never take
// the lock, so they never move the state.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/lock_display.h"
#include "latchkey/client.h"
#include "latchkey/state_store.h"

namespace latchkey::cli {
namespace {

struct StateFlags {
  ClientFlags client;
  std::string key;
  uint32_t bucket = 0;
  uint32_t buckets = 64;
  std::string prefix = "state";
  bool json = false;
};

// The key of a lock name "<prefix>.<bucket>.<segment>" ("=" + hex when the
// key is not a plain name segment).
std::string KeyOf(const std::string& lock, size_t prefix_len) {
  std::string seg = lock.substr(prefix_len);
  if (seg.empty() || seg[0] != '=') return seg;
  std::string key;
  auto nib = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (size_t i = 1; i + 1 < seg.size(); i += 2) {
    key += static_cast<char>(nib(seg[i]) * 16 + nib(seg[i + 1]));
  }
  return key;
}

// State of one key's lock: owner (if any), whether a migration is pending
// (the owner was called back or someone waits), whether a state is stored.
struct KeyView {
  std::string key;
  std::string lock;
  uint32_t bucket = 0;
  bool owned = false;
  LockHolderInfo owner;
  size_t waiters = 0;
  bool present = false;
  uint64_t value_token = 0;
};

KeyView ViewOf(std::string key, uint32_t bucket, const LockInfo& info) {
  KeyView v;
  v.key = std::move(key);
  v.lock = info.name;
  v.bucket = bucket;
  v.owned = info.held;
  if (info.held) v.owner = info.holder;
  v.waiters = info.waiters;
  v.present = !info.value.empty();  // "" = absent, else "\x01" + state
  v.value_token = info.value_token;
  return v;
}

std::string Json(const KeyView& v) {
  std::string out = "{\"key\":" + JsonString(v.key) + ",\"bucket\":" + std::to_string(v.bucket) +
                    ",\"lock\":" + JsonString(v.lock) +
                    ",\"owned\":" + (v.owned ? "true" : "false");
  if (v.owned) {
    out += ",\"owner_session_id\":" + std::to_string(v.owner.session_id) +
           ",\"owner_client_name\":" + JsonString(v.owner.client_name) +
           ",\"fencing_token\":" + std::to_string(v.owner.fencing_token) +
           ",\"called_back\":" + (v.owner.called_back ? "true" : "false");
  }
  out += ",\"waiters\":" + std::to_string(v.waiters) +
         ",\"present\":" + (v.present ? "true" : "false") +
         ",\"value_token\":" + std::to_string(v.value_token) + "}";
  return out;
}

std::string Text(const KeyView& v) {
  std::string s =
      "key '" + v.key + "' bucket " + std::to_string(v.bucket) + " lock '" + v.lock + "': ";
  if (v.owned) {
    s += "owned by " + DescribeOwner(v.owner.session_id, v.owner.owner, v.owner.client_name) +
         " (token " + std::to_string(v.owner.fencing_token) + ")";
    if (v.owner.called_back || v.waiters > 0) {
      s += ", moving: " + std::to_string(v.waiters) + " waiting";
    }
  } else {
    s += "no owner";
  }
  s += v.present ? ", state stored (revision " + std::to_string(v.value_token) + ")"
                 : ", no state stored";
  return s;
}

std::unique_ptr<Client> ConnectOrReport(const StateFlags& f) {
  ClientOptions o;
  o.endpoint = f.client.endpoint;
  o.auth_token = f.client.AuthToken();
  o.client_name = "latchkey state";
  auto client = Client::Connect(o);
  if (!client.ok()) {
    ReportConnectFailure("latchkey state", f.client.endpoint, client.status());
    return nullptr;
  }
  return std::move(client.value());
}

int RunOwner(const StateFlags& f) {
  if (f.buckets == 0) {
    std::fprintf(stderr, "latchkey state owner: --buckets must be at least 1\n");
    return kExitUsage;
  }
  auto client = ConnectOrReport(f);
  if (!client) return kExitUnavailable;
  StateStoreOptions so;
  so.buckets = f.buckets;
  so.prefix = f.prefix;
  StateStore store(*client, so);
  const std::string lock = store.LockName(f.key);
  auto info = client->GetLock(lock);
  if (!info.ok()) {
    std::fprintf(stderr, "latchkey state owner: %s\n", info.status().ToString().c_str());
    return kExitUnavailable;
  }
  const KeyView v = ViewOf(f.key, store.BucketOf(f.key), *info);
  std::printf("%s\n", (f.json ? Json(v) : Text(v)).c_str());
  return 0;
}

int RunBucket(const StateFlags& f) {
  auto client = ConnectOrReport(f);
  if (!client) return kExitUnavailable;
  const std::string prefix = f.prefix + "." + std::to_string(f.bucket);
  auto locks = client->ListLocks(prefix);
  if (!locks.ok()) {
    std::fprintf(stderr, "latchkey state bucket: %s\n", locks.status().ToString().c_str());
    return kExitUnavailable;
  }
  std::string json = "{\"bucket\":" + std::to_string(f.bucket) + ",\"keys\":[";
  size_t n = 0;
  for (const LockInfo& l : *locks) {
    if (l.name.size() <= prefix.size() + 1) continue;  // the bucket itself
    const KeyView v = ViewOf(KeyOf(l.name, prefix.size() + 1), f.bucket, l);
    if (f.json) {
      json += (n ? "," : "") + Json(v);
    } else {
      std::printf("%s\n", Text(v).c_str());
    }
    ++n;
  }
  if (f.json) {
    std::printf("%s]}\n", json.c_str());
  } else if (n == 0) {
    std::printf("bucket %u has no keys\n", f.bucket);
  }
  return 0;
}

}  // namespace

Subcommand AddStateCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "state",
      "Owned state (StateStore): which bucket a key hashes to and which session owns it. "
      "Read-only: never moves a key.");
  cmd->require_subcommand(1);
  auto f = std::make_shared<StateFlags>();
  auto* owner = cmd->add_subcommand(
      "owner",
      "Show KEY's bucket, its lock name, the session that owns it (holds the lock) and whether "
      "a state is stored. Exit 0; 69 when the server is unreachable.");
  owner->add_option("key", f->key, "The StateStore key")->required();
  owner->add_option("--buckets", f->buckets, "Number of buckets the StateStore uses")
      ->capture_default_str();
  owner->add_option("--bucket-prefix", f->prefix, "Lock name prefix the StateStore uses")
      ->capture_default_str();
  owner->add_flag("--json", f->json,
                  "Print one JSON object {key, bucket, lock, owned, owner_session_id, "
                  "owner_client_name, fencing_token, called_back, waiters, present, "
                  "value_token}");
  AddClientFlags(owner, &f->client);
  auto* bucket = cmd->add_subcommand(
      "bucket",
      "List the keys of bucket B that some session owns or waits for, with their owners (keys "
      "with a stored state and no owner are not listed: use `state owner KEY`).");
  bucket->add_option("bucket", f->bucket, "Bucket number")->required();
  bucket->add_option("--bucket-prefix", f->prefix, "Lock name prefix the StateStore uses")
      ->capture_default_str();
  bucket->add_flag("--json", f->json, "Print {bucket, keys:[...]} with the fields of `owner`");
  AddClientFlags(bucket, &f->client);
  return {cmd, [f, owner]() { return owner->parsed() ? RunOwner(*f) : RunBucket(*f); }};
}

}  // namespace latchkey::cli
