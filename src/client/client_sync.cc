// latchkey::Client: counting semaphores, count-down latches, barriers.
#include "client/client_impl.h"
#include "latchkey/client.h"

namespace latchkey {

Result<uint64_t> Client::AcquireSemaphore(std::string_view name, uint32_t permits, uint32_t limit,
                                          const WaitOptions& options) {
  pb::Request req;
  auto* a = req.mutable_semaphore_acquire();
  a->set_session_id(session_id());
  a->set_owner(options.owner);
  a->set_name(std::string(name));
  a->set_permits(permits);
  a->set_limit(limit);
  a->set_try_only(options.try_only);
  a->set_wait_timeout_ms(static_cast<uint64_t>(options.wait_timeout.count()));
  Outcome o = impl_->Call(std::move(req), WaitDeadline(options.try_only, options.wait_timeout));
  if (!o.status.ok()) return o.status;
  return o.response.semaphore_acquire().fencing_token();
}

Status Client::ReleaseSemaphore(std::string_view name, std::string_view owner) {
  pb::Request req;
  auto* r = req.mutable_semaphore_release();
  r->set_session_id(session_id());
  r->set_owner(std::string(owner));
  r->set_name(std::string(name));
  return impl_->Call(std::move(req), impl_->DefaultDeadline()).status;
}

Status Client::LatchAwait(std::string_view name, uint64_t initial, const WaitOptions& options) {
  pb::Request req;
  auto* a = req.mutable_latch_await();
  a->set_session_id(session_id());
  a->set_owner(options.owner);
  a->set_name(std::string(name));
  a->set_initial(initial);
  a->set_wait_timeout_ms(static_cast<uint64_t>(options.wait_timeout.count()));
  return impl_->Call(std::move(req), WaitDeadline(false, options.wait_timeout)).status;
}

Result<uint64_t> Client::LatchCountDown(std::string_view name, uint64_t by, uint64_t initial) {
  pb::Request req;
  auto* a = req.mutable_latch_count_down();
  a->set_name(std::string(name));
  a->set_by(by);
  a->set_initial(initial);
  Outcome o = impl_->Call(std::move(req), impl_->DefaultDeadline());
  if (!o.status.ok()) return o.status;
  return o.response.latch_count_down().remaining();
}

Result<uint64_t> Client::BarrierAwait(std::string_view name, uint32_t parties,
                                      const WaitOptions& options) {
  pb::Request req;
  auto* a = req.mutable_barrier_await();
  a->set_session_id(session_id());
  a->set_owner(options.owner);
  a->set_name(std::string(name));
  a->set_parties(parties);
  a->set_wait_timeout_ms(static_cast<uint64_t>(options.wait_timeout.count()));
  Outcome o = impl_->Call(std::move(req), WaitDeadline(false, options.wait_timeout));
  if (!o.status.ok()) return o.status;
  return o.response.barrier_await().generation();
}

}  // namespace latchkey
