// StateStore: owned, migrating state on top of LockCache (see
// include/latchkey/state_store.h).
#include "latchkey/state_store.h"

namespace latchkey {

namespace {

constexpr char kPresent = '\x01';

bool IsSegmentChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == ':' || c == '/' || c == '@' || c == '+';
}

std::optional<std::string> Decode(const std::string& block) {
  if (block.empty() || block[0] != kPresent) return std::nullopt;
  return block.substr(1);
}

std::string Encode(const std::optional<std::string>& state) {
  return state ? std::string(1, kPresent) + *state : std::string();
}

// Holds a key's lock locally in EX for one operation.
class KeyGuard {
 public:
  KeyGuard(LockCache& cache, std::string name) : cache_(cache), name_(std::move(name)) {}
  Status Take(std::chrono::milliseconds timeout) {
    Status st = cache_.Lock(name_, LockMode::kEX, timeout);
    held_ = st.ok();
    return st;
  }
  ~KeyGuard() {
    if (held_) cache_.Unlock(name_, LockMode::kEX);
  }

 private:
  LockCache& cache_;
  std::string name_;
  bool held_ = false;
};

}  // namespace

StateStore::StateStore(Client& client, StateStoreOptions options)
    : client_(client), options_(std::move(options)) {
  if (options_.buckets == 0) options_.buckets = 1;
  LockCacheOptions co;
  co.policy = options_.policy;
  cache_ = std::make_unique<LockCache>(client_, co);
}

StateStore::~StateStore() = default;

uint32_t StateStore::BucketOf(std::string_view key) const {
  uint32_t h = 2166136261u;
  for (unsigned char c : key) {
    h ^= c;
    h *= 16777619u;
  }
  return h % options_.buckets;
}

std::string StateStore::LockName(std::string_view key) const {
  std::string seg;
  bool plain = !key.empty();
  for (char c : key) plain = plain && IsSegmentChar(c);
  if (plain) {
    seg = std::string(key);
  } else {
    static const char* kHex = "0123456789abcdef";
    seg = "=";
    for (unsigned char c : key) {
      seg += kHex[c >> 4];
      seg += kHex[c & 15];
    }
  }
  return options_.prefix + "." + std::to_string(BucketOf(key)) + "." + seg;
}

Result<std::optional<std::string>> StateStore::Read(std::string_view key) {
  const std::string name = LockName(key);
  KeyGuard g(*cache_, name);
  LATCHKEY_RETURN_IF_ERROR(g.Take(options_.timeout));
  Result<std::string> block = cache_->Value(name);
  if (!block.ok()) return block.status();
  return Decode(*block);
}

Status StateStore::Write(std::string_view key, std::string_view state) {
  return Update(key, [&](const std::optional<std::string>&) { return std::string(state); })
      .status();
}

Status StateStore::Remove(std::string_view key) {
  return Update(key, [](const std::optional<std::string>&) { return std::nullopt; }).status();
}

Status StateStore::WriteLocal(std::string_view key, std::string_view state) {
  const std::string name = LockName(key);
  KeyGuard g(*cache_, name);
  LATCHKEY_RETURN_IF_ERROR(g.Take(options_.timeout));
  return cache_->WriteValueLocal(name, Encode(std::string(state)));
}

Result<std::optional<std::string>> StateStore::Update(std::string_view key, const UpdateFn& fn) {
  const std::string name = LockName(key);
  KeyGuard g(*cache_, name);
  LATCHKEY_RETURN_IF_ERROR(g.Take(options_.timeout));
  Result<std::string> block = cache_->Value(name);
  if (!block.ok()) return block.status();
  std::optional<std::string> next = fn(Decode(*block));
  LATCHKEY_RETURN_IF_ERROR(cache_->WriteValue(name, Encode(next)));
  return next;
}

Result<StateOwner> StateStore::Owner(std::string_view key) {
  StateOwner o;
  o.bucket = BucketOf(key);
  o.lock_name = LockName(key);
  Result<LockInfo> info = client_.GetLock(o.lock_name);
  if (!info.ok()) return info.status();
  o.owned = info->held;
  if (info->held) {
    o.session_id = info->holder.session_id;
    o.client_name = info->holder.client_name;
    o.fencing_token = info->holder.fencing_token;
  }
  o.present = Decode(info->value).has_value();
  return o;
}

}  // namespace latchkey
