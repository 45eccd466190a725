// Internal to the client library: sends one protobuf Request through a
// Client's session connection (Client::CallEncoded) and decodes the reply.
// Shared by the helpers that live outside client*.cc (objects, records,
// pub/sub, sync listing). Not installed.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "latchkey.pb.h"
#include "latchkey/client.h"

namespace latchkey::client_internal {

inline Result<::latchkey::v1::Response> CallProto(
    Client& client, const ::latchkey::v1::Request& req,
    std::optional<std::chrono::milliseconds> within = std::nullopt) {
  std::string bytes;
  req.SerializeToString(&bytes);
  Result<std::string> out = client.CallEncoded(bytes, within);
  if (!out.ok()) return out.status();
  ::latchkey::v1::Response resp;
  if (!resp.ParseFromString(*out)) return Internal("undecodable response");
  return resp;
}

}  // namespace latchkey::client_internal
