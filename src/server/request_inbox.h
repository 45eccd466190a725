// Hands requests parsed on the io threads to the Raft loop thread in batches.
//
// Posting each request on its own wakes the loop for nearly every request
// under load (the loop drains the queue faster than one io thread fills it),
// and each wake costs an eventfd write, an epoll_wait and a read. The inbox
// instead gathers the requests of one io pass over the ready connections:
// the first request into an empty inbox asks the caller to flush after the
// pass (Connection::Defer), and the flush posts them all at once.
//
// Deferring costs one more io-loop turn, which buys nothing when a single
// request arrives per pass (one busy client). So the inbox adapts: after
// kSinglesToStop deferred flushes in a row carried one request, it asks for
// immediate flushes, and it probes with a deferred flush every kProbeEvery
// requests to notice when concurrent requests come back.
//
// Thread-safe; order is kept: items come out in the order Add saw them.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "latchkey.pb.h"

namespace latchkey::server {

class RequestInbox {
 public:
  using Item = std::pair<uint64_t, std::shared_ptr<v1::Request>>;  // connection id, request

  static constexpr int kSinglesToStop = 4;
  static constexpr int kProbeEvery = 16;

  enum class Next {
    kNothing,    // a flush is already due
    kFlushNow,   // call Take() and post the batch now
    kFlushLater  // call Take() once the io thread's current pass is done
  };

  Next Add(Item item);
  // Everything gathered so far, oldest first. `end_of_pass`: this is the
  // flush a kFlushLater asked for, so its size tells how many requests one
  // pass brings (other flushes, such as before a close, do not count).
  std::vector<Item> Take(bool end_of_pass);

  bool batching() const;

 private:
  mutable std::mutex mu_;
  std::vector<Item> items_;
  bool batching_ = false;   // defer flushes to the end of the pass
  bool flush_due_ = false;  // a kFlushNow/kFlushLater was returned, no Take since
  int singles_ = 0;         // deferred flushes in a row that carried one request
  int since_probe_ = 0;     // immediate flushes since the last probe
};

}  // namespace latchkey::server
