// Part of the replication adapter (includes raft.h): only raft_node*.cc
// include this header.
//
// TransferSendGuard works around a use-after-free in libraft 0.15's
// leadership transfer (canonical/raft#396, fixed upstream by #398, after
// 0.15). libraft sends the TimeoutNow message with the raft_io_send embedded
// in the caller's struct raft_transfer, but ends the transfer (calls its
// callback, which frees it) after an election timeout or when the leader
// steps down, without waiting for that send. If the message is still queued
// in the uv io (a peer connection being (re)established, or a socket whose
// send buffer is full behind a partition), the io later calls the send's
// callback through the freed request: `req->cb` is whatever the allocator
// left there. Seen as a general protection fault in libraft's send-completion
// callback (`jmp *0x8(%r12)`) on the leader about 1 s after a transfer to a
// node just reconnected after a partition had timed out (nemesis seed 7305,
// 5 nodes; docs/testing.md).
//
// The guard gives the io a request of its own (heap-allocated, freed by its
// own callback) for every TimeoutNow, and forwards the completion to libraft
// only while the transfer it belongs to is alive. The adapter calls Detach()
// from the transfer's callback, before it frees the transfer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <vector>

extern "C" {
#include <raft.h>
}

namespace latchkey::replication {

class TransferSendGuard {
 public:
  // How to hand a request to the io (io->send with the message bound).
  using SendFn = std::function<int(struct raft_io_send* req, raft_io_send_cb cb)>;

  TransferSendGuard() = default;
  TransferSendGuard(const TransferSendGuard&) = delete;
  TransferSendGuard& operator=(const TransferSendGuard&) = delete;

  // Sends libraft's request `req` (with completion `cb`), which belongs to
  // `transfer`, through a request of the guard's own. Returns send's result;
  // on failure nothing stays behind (the io calls no callback then).
  int Send(struct raft_transfer* transfer, struct raft_io_send* req, raft_io_send_cb cb,
           const SendFn& send) {
    auto* s = new Shim;
    s->send.data = s;
    s->guard = this;
    s->transfer = transfer;
    s->req = req;
    s->cb = cb;
    live_.push_back(s);
    const int rv = send(&s->send, &Shim::Done);
    if (rv != 0) {
      Forget(s);
      delete s;
    }
    return rv;
  }

  // The transfer is about to be freed: completions of its sends still in the
  // io are dropped instead of reaching libraft.
  void Detach(const struct raft_transfer* transfer) {
    for (Shim* s : live_) {
      if (s->transfer == transfer) s->transfer = nullptr;
    }
  }

  size_t in_flight() const { return live_.size(); }

 private:
  struct Shim {
    struct raft_io_send send {};
    TransferSendGuard* guard = nullptr;
    const struct raft_transfer* transfer = nullptr;  // null once detached
    struct raft_io_send* req = nullptr;              // libraft's, inside *transfer
    raft_io_send_cb cb = nullptr;

    static void Done(struct raft_io_send* send, int status) {
      auto* s = static_cast<Shim*>(send->data);
      s->guard->Forget(s);
      const bool attached = s->transfer != nullptr;
      struct raft_io_send* req = s->req;
      raft_io_send_cb cb = s->cb;
      delete s;
      if (attached && cb != nullptr) cb(req, status);
    }
  };

  void Forget(Shim* s) { live_.erase(std::remove(live_.begin(), live_.end(), s), live_.end()); }

  std::vector<Shim*> live_;
};

}  // namespace latchkey::replication
