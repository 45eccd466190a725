// Pub/sub client side (include/latchkey/pubsub.h, synchronized_object.h).
#include "latchkey/pubsub.h"

#include <mutex>

#include "client/call_proto.h"
#include "client/push_stream.h"
#include "latchkey.pb.h"
#include "latchkey/synchronized_object.h"

namespace latchkey {

namespace pb = ::latchkey::v1;
using client_internal::PushStream;

Result<uint64_t> Publish(Client& client, std::string_view namespace_name,
                         std::string_view payload) {
  pb::Request req;
  req.mutable_publish()->set_namespace_name(std::string(namespace_name));
  req.mutable_publish()->set_message(std::string(payload));
  Result<pb::Response> resp = client_internal::CallProto(client, req);
  if (!resp.ok()) return resp.status();
  return resp->publish().revision();
}

struct Subscription::Impl {
  std::mutex mu;
  std::unique_ptr<PushStream> stream;
};

Subscription::Subscription() : impl_(new Impl) {}
Subscription::~Subscription() = default;

Result<std::unique_ptr<Subscription>> Subscription::Open(SubscribeOptions options) {
  pb::Request req;
  req.mutable_subscribe()->set_namespace_name(options.namespace_name);
  pb::Response reply;
  auto s =
      PushStream::Open(options.endpoint, options.auth_token, options.connect_timeout, req, &reply);
  if (!s.ok()) return s.status();
  std::unique_ptr<Subscription> sub(new Subscription());
  sub->impl_->stream = std::move(s).value();
  sub->start_revision_ = reply.subscribe().revision();
  return sub;
}

Result<Message> Subscription::Next(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    auto push = impl_->stream->Next(std::max(left, std::chrono::milliseconds(0)));
    if (!push.ok()) return push.status();
    if (!push->has_pubsub_message()) continue;
    const auto& m = push->pubsub_message();
    return Message{m.namespace_name(), m.message(), m.revision()};
  }
}

void Subscription::DropConnectionForTesting() {
  impl_->stream->Abort();
}

// ---- SynchronizedObject --------------------------------------------------------------

SynchronizedObject::SynchronizedObject(Client& client, std::string endpoint,
                                       std::string namespace_name)
    : client_(client), endpoint_(std::move(endpoint)), namespace_(std::move(namespace_name)) {}

SynchronizedObject::~SynchronizedObject() {
  Stop();
}

Status SynchronizedObject::Start() {
  if (thread_.joinable()) return Status(Code::kFailedPrecondition, "already started");
  SubscribeOptions o;
  o.endpoint = endpoint_;
  o.auth_token = client_.auth_token();
  o.namespace_name = namespace_;
  auto sub = Subscription::Open(o);
  if (!sub.ok()) return sub.status();
  sub_ = std::move(sub).value();
  stopping_ = false;
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void SynchronizedObject::Stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

Status SynchronizedObject::send(std::string_view command) {
  Result<uint64_t> r = Publish(client_, namespace_, command);
  return r.ok() ? Status::Ok() : r.status();
}

void SynchronizedObject::DropConnectionForTesting() {
  std::lock_guard lk(mu_);
  if (sub_) sub_->DropConnectionForTesting();
}

void SynchronizedObject::Run() {
  while (!stopping_) {
    auto m = sub_->Next(std::chrono::milliseconds(100));
    if (m.ok()) {
      receive(m->payload);
      continue;
    }
    if (m.status().code() == Code::kTimeout) continue;
    // Lost: subscribe again (retrying until stopped), then resynchronize.
    SubscribeOptions o;
    o.endpoint = endpoint_;
    o.auth_token = client_.auth_token();
    o.namespace_name = namespace_;
    while (!stopping_) {
      auto sub = Subscription::Open(o);
      if (sub.ok()) {
        {
          std::lock_guard lk(mu_);
          sub_ = std::move(sub).value();
        }
        resynchronize();
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // retry pause
    }
  }
}

}  // namespace latchkey
