#include "server/request_inbox.h"

namespace latchkey::server {

RequestInbox::Next RequestInbox::Add(Item item) {
  std::lock_guard<std::mutex> lock(mu_);
  items_.push_back(std::move(item));
  if (flush_due_) return Next::kNothing;
  flush_due_ = true;
  if (batching_) return Next::kFlushLater;
  if (++since_probe_ >= kProbeEvery) {
    since_probe_ = 0;
    return Next::kFlushLater;
  }
  return Next::kFlushNow;
}

std::vector<RequestInbox::Item> RequestInbox::Take(bool end_of_pass) {
  std::vector<Item> out;
  std::lock_guard<std::mutex> lock(mu_);
  out.swap(items_);
  flush_due_ = false;
  if (end_of_pass && !out.empty()) {
    if (out.size() > 1) {
      batching_ = true;
      singles_ = 0;
    } else if (batching_ && ++singles_ >= kSinglesToStop) {
      batching_ = false;
      singles_ = 0;
    }
  }
  return out;
}

bool RequestInbox::batching() const {
  std::lock_guard<std::mutex> lock(mu_);
  return batching_;
}

}  // namespace latchkey::server
