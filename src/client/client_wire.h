// Internal to the client library (src/client/client*.cc): wire helpers and
// constants shared by the files of latchkey::Client. Not installed.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "client/connection.h"
#include "latchkey.pb.h"
#include "latchkey/client.h"

namespace latchkey {
namespace client_detail {

namespace pb = ::latchkey::v1;
using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;
using client_internal::Connection;
using std::chrono::milliseconds;

constexpr uint32_t kProtocolVersion = 1;
constexpr milliseconds kCloseWait{2000};
constexpr milliseconds kBackoffMin{50};
constexpr milliseconds kBackoffMax{1000};
// Failover: pause between endpoints of one round, and how many NOT_LEADER
// hints are followed in a row before pausing (stale hints can ping-pong).
constexpr milliseconds kEndpointPause{10};
constexpr int kMaxHintHops = 3;
constexpr size_t kMaxLostLocks = 1000;

struct Outcome {
  Status status;  // non-OK: transport failure or the server's error
  pb::Response response;
};
using DoneFn = std::function<void(Outcome)>;

Status StatusFromError(const pb::Error& e);

std::vector<std::string> SplitEndpoints(const std::string& s);

std::string Frame(const pb::Request& req);

milliseconds Remaining(TimePoint deadline);

void SafeInvoke(const DoneFn& done, Outcome o);

enum class State {
  kConnecting,    // Connect() has not finished yet
  kReady,         // connection up, session attached
  kReconnecting,  // no usable connection; requests are queued
  kLost,          // the session is gone for good
  kClosed,        // Close() ran
};

pb::LockMode WireMode(LockMode m);

LockMode ApiMode(pb::LockMode m);

LockHolderInfo ToHolder(const pb::LockHolder& h);

std::vector<Grant> HeldFromAttach(const pb::AttachSessionReply& r);

LockInfo ToLockInfo(const pb::GetLockReply& r, std::string_view asked);

}  // namespace client_detail
// Only src/client/client*.cc include this header.
using namespace client_detail;  // NOLINT(google-build-using-namespace)
}  // namespace latchkey
