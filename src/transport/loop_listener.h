// A Listener whose connections live on a Reactor's thread (the server's Raft
// loop): accept, read, frame decoding, every handler callback and every
// write run there, so a request is read, handled and answered without
// handing it to another thread (design 0022). Same Connection semantics as
// the asio Listener: Send and Close may be called from any thread (off the
// loop they are posted to it), frames of one connection arrive in order,
// OnClose runs exactly once.
//
// On the loop, Send only queues: every connection written to during one
// loop iteration is flushed once, before the loop waits again (so the
// replies of one applied batch leave in one send per connection). A
// callback never runs inside Send or Close; closes finish from the loop.
//
// ListenerOptions::io_threads, io_sched_batch and direct_writes do not
// apply: there are no io threads.
#pragma once

#include <memory>

#include "common/reactor.h"
#include "common/status.h"
#include "transport/listener.h"

namespace latchkey::transport {

// Binds and starts accepting on `reactor` (posts there and waits; must not
// be called from the reactor's thread). REQUIRES: handler and reactor
// outlive the listener, and the reactor runs until the listener is stopped.
Result<std::unique_ptr<Listener>> StartLoopListener(ListenerOptions options,
                                                    ConnectionHandler* handler, Reactor* reactor);

}  // namespace latchkey::transport
