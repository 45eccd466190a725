// etcd backend: etcd's own lock service (v3lockpb.Lock, the server side of
// clientv3/concurrency.Mutex) over gRPC. Each client grants itself one lease
// (etcdserverpb.Lease/LeaseGrant); Lock(name, lease) creates a key under the
// name's prefix and returns once every older key is gone (FIFO by creation
// revision); Unlock(key) deletes it. The lease is revoked when the client
// goes away. A cluster endpoint list spreads clients over the members
// (client i talks to member i mod N), as clientv3 pins one endpoint.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "backend.h"
#include "etcd_lock.grpc.pb.h"
#include "etcd_v3lock.grpc.pb.h"

namespace latchkey::peers {
namespace {

Status FromGrpc(const char* what, const grpc::Status& s) {
  const Code code =
      s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ? Code::kTimeout : Code::kUnavailable;
  return Status(code, std::string("etcd ") + what + ": " + s.error_message());
}

class EtcdLockClient : public LockClient {
 public:
  EtcdLockClient(std::shared_ptr<grpc::Channel> channel, const BackendOptions& o)
      : options_(o),
        lease_stub_(etcdserverpb::Lease::NewStub(channel)),
        lock_stub_(v3lockpb::Lock::NewStub(channel)) {}

  ~EtcdLockClient() override {
    if (lease_ == 0) return;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    etcdserverpb::LeaseRevokeRequest req;
    req.set_id(lease_);
    etcdserverpb::LeaseRevokeResponse resp;
    (void)lease_stub_->LeaseRevoke(&ctx, req, &resp);
  }

  Status Init() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ctx.set_wait_for_ready(true);
    etcdserverpb::LeaseGrantRequest req;
    req.set_ttl(std::max<int64_t>(1, options_.ttl.count() / 1000));
    etcdserverpb::LeaseGrantResponse resp;
    grpc::Status s = lease_stub_->LeaseGrant(&ctx, req, &resp);
    if (!s.ok()) return FromGrpc("LeaseGrant", s);
    if (!resp.error().empty()) return Unavailable("etcd LeaseGrant: " + resp.error());
    lease_ = resp.id();
    return Status::Ok();
  }

  Status Acquire(const std::string& name) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + options_.timeout);
    v3lockpb::LockRequest req;
    req.set_name(name);
    req.set_lease(lease_);
    v3lockpb::LockResponse resp;
    grpc::Status s = lock_stub_->Lock(&ctx, req, &resp);
    if (!s.ok()) return FromGrpc("Lock", s);
    keys_[name] = resp.key();
    return Status::Ok();
  }

  Status Release(const std::string& name) override {
    auto it = keys_.find(name);
    if (it == keys_.end()) return Status(Code::kNotHeld, "etcd: not held by this client");
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + options_.timeout);
    v3lockpb::UnlockRequest req;
    req.set_key(it->second);
    keys_.erase(it);
    v3lockpb::UnlockResponse resp;
    grpc::Status s = lock_stub_->Unlock(&ctx, req, &resp);
    return s.ok() ? Status::Ok() : FromGrpc("Unlock", s);
  }

 private:
  BackendOptions options_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_stub_;
  std::unique_ptr<v3lockpb::Lock::Stub> lock_stub_;
  int64_t lease_ = 0;
  std::unordered_map<std::string, std::string> keys_;  // name -> own key
};

}  // namespace

Result<std::unique_ptr<LockClient>> ConnectEtcd(const BackendOptions& options) {
  std::vector<std::string> endpoints;
  std::stringstream ss(options.endpoint);
  for (std::string e; std::getline(ss, e, ',');) endpoints.push_back(e);
  if (endpoints.empty()) return InvalidArgument("etcd endpoint must be HOST:PORT[,...]");
  const std::string& target =
      endpoints[static_cast<size_t>(options.client_index) % endpoints.size()];
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // one TCP connection per client
  auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  auto c = std::make_unique<EtcdLockClient>(channel, options);
  if (Status s = c->Init(); !s.ok()) return s;
  return std::unique_ptr<LockClient>(std::move(c));
}

}  // namespace latchkey::peers
