// Redis backend: the single-instance lock recipe from the Redis docs, over
// hiredis. Acquire = `SET key token NX PX ttl`, retried after a random
// delay while someone else holds the key (Redis has no wait queue);
// Release = a Lua script that deletes the key only if it still holds this
// client's token (compare-and-delete), sent with EVALSHA.
#include <hiredis/hiredis.h>

#include <chrono>
#include <memory>
#include <random>
#include <thread>
#include <unordered_map>

#include "backend.h"

namespace latchkey::peers {
namespace {

constexpr char kReleaseScript[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end";

// Longest pause between two SET NX attempts on a busy key (uniform in
// [0, kRetryMaxUs)); see docs/design/0010-peer-benchmarks.md.
constexpr int kRetryMaxUs = 500;

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

class RedisLockClient : public LockClient {
 public:
  RedisLockClient(redisContext* ctx, const BackendOptions& o)
      : ctx_(ctx), options_(o), rng_(static_cast<uint32_t>(o.client_index) * 7919u + 1) {}
  ~RedisLockClient() override { redisFree(ctx_); }

  Status Init() {
    Reply r(static_cast<redisReply*>(redisCommand(ctx_, "SCRIPT LOAD %s", kReleaseScript)));
    if (!r || r->type != REDIS_REPLY_STRING) return Failed("SCRIPT LOAD", r.get());
    sha_.assign(r->str, r->len);
    return Status::Ok();
  }

  Status Acquire(const std::string& name) override {
    const std::string token =
        std::to_string(options_.client_index) + ":" + std::to_string(++acquisitions_);
    const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
    std::uniform_int_distribution<int> delay(0, kRetryMaxUs - 1);
    for (;;) {
      Reply r(static_cast<redisReply*>(redisCommand(ctx_, "SET %b %b NX PX %lld", name.data(),
                                                    name.size(), token.data(), token.size(),
                                                    static_cast<long long>(options_.ttl.count()))));
      if (!r) return Failed("SET", nullptr);
      if (r->type == REDIS_REPLY_STATUS) {
        tokens_[name] = token;
        return Status::Ok();
      }
      if (r->type != REDIS_REPLY_NIL) return Failed("SET", r.get());
      if (std::chrono::steady_clock::now() > deadline) {
        return Status(Code::kTimeout, "redis: lock busy until the deadline");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(delay(rng_)));
    }
  }

  Status Release(const std::string& name) override {
    auto it = tokens_.find(name);
    if (it == tokens_.end()) return Status(Code::kNotHeld, "redis: not held by this client");
    Reply r(
        static_cast<redisReply*>(redisCommand(ctx_, "EVALSHA %s 1 %b %b", sha_.c_str(), name.data(),
                                              name.size(), it->second.data(), it->second.size())));
    tokens_.erase(it);
    if (!r || r->type != REDIS_REPLY_INTEGER) return Failed("EVALSHA", r.get());
    if (r->integer != 1) return Status(Code::kNotHeld, "redis: token no longer matches");
    return Status::Ok();
  }

 private:
  Status Failed(const char* what, const redisReply* r) const {
    std::string m = std::string("redis ") + what + ": ";
    if (r == nullptr) {
      m += ctx_->err != 0 ? ctx_->errstr : "no reply";
    } else if (r->type == REDIS_REPLY_ERROR) {
      m.append(r->str, r->len);
    } else {
      m += "unexpected reply type " + std::to_string(r->type);
    }
    return Unavailable(std::move(m));
  }

  redisContext* ctx_;
  BackendOptions options_;
  std::mt19937 rng_;
  std::string sha_;
  uint64_t acquisitions_ = 0;
  std::unordered_map<std::string, std::string> tokens_;  // name -> token held
};

}  // namespace

Result<std::unique_ptr<LockClient>> ConnectRedis(const BackendOptions& options) {
  const auto colon = options.endpoint.rfind(':');
  if (colon == std::string::npos) return InvalidArgument("redis endpoint must be HOST:PORT");
  const std::string host = options.endpoint.substr(0, colon);
  const int port = std::stoi(options.endpoint.substr(colon + 1));
  timeval tv{5, 0};
  redisContext* ctx = redisConnectWithTimeout(host.c_str(), port, tv);
  if (ctx == nullptr) return Unavailable("redis: out of memory");
  if (ctx->err != 0) {
    std::string m = std::string("redis connect: ") + ctx->errstr;
    redisFree(ctx);
    return Unavailable(std::move(m));
  }
  timeval op{static_cast<time_t>(options.timeout.count() / 1000), 0};
  redisSetTimeout(ctx, op);
  auto c = std::make_unique<RedisLockClient>(ctx, options);
  if (Status s = c->Init(); !s.ok()) return s;
  return std::unique_ptr<LockClient>(std::move(c));
}

}  // namespace latchkey::peers
