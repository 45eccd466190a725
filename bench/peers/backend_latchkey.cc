// Latchkey backend: the client library (include/latchkey/client.h). One
// Client = one connection and one session; Acquire waits in the server's
// FIFO queue, Release is one request. Every grant and release is a Raft
// commit (durable before the reply). PEER_BENCH_LATCHKEY_IO_READS=1 turns
// ClientOptions::read_on_calling_thread off (for A/B runs).
#include <cstdlib>
#include <cstring>
#include <memory>

#include "backend.h"
#include "latchkey/client.h"

namespace latchkey::peers {
namespace {

class LatchkeyLockClient : public LockClient {
 public:
  LatchkeyLockClient(std::unique_ptr<Client> client, std::chrono::milliseconds timeout)
      : client_(std::move(client)) {
    acquire_.wait_timeout = timeout;
  }

  Status Acquire(const std::string& name) override {
    auto g = client_->Acquire(name, acquire_);
    return g.ok() ? Status::Ok() : g.status();
  }

  Status Release(const std::string& name) override { return client_->Release(name); }

  bool LogAppends(uint64_t* appends, uint64_t* micros) override {
    auto st = client_->GetStatus();
    if (!st.ok()) return false;
    *appends = st->log_appends;
    *micros = st->log_append_micros;
    return true;
  }

 private:
  std::unique_ptr<Client> client_;
  AcquireOptions acquire_;
};

}  // namespace

Result<std::unique_ptr<LockClient>> ConnectLatchkey(const BackendOptions& options) {
  ClientOptions o;
  o.endpoint = options.endpoint;
  o.client_name = "peer-bench-" + std::to_string(options.client_index);
  o.session_ttl = options.ttl;
  const char* io_reads = std::getenv("PEER_BENCH_LATCHKEY_IO_READS");
  if (io_reads != nullptr && std::strcmp(io_reads, "1") == 0) o.read_on_calling_thread = false;
  auto c = Client::Connect(o);
  if (!c.ok()) return c.status();
  return std::unique_ptr<LockClient>(
      std::make_unique<LatchkeyLockClient>(std::move(c.value()), options.timeout));
}

}  // namespace latchkey::peers
