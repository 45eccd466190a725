// latchkey::ListSync (include/latchkey/sync_info.h): one ListSync request
// through the Client's connection.
#include "latchkey/sync_info.h"

#include "client/call_proto.h"
#include "latchkey.pb.h"

namespace latchkey {

namespace pb = ::latchkey::v1;

namespace {

SyncPartyInfo FromWire(const pb::SyncParty& p) {
  SyncPartyInfo out;
  out.session_id = p.session_id();
  out.owner = p.owner();
  out.client_name = p.client_name();
  out.permits = p.permits();
  out.fencing_token = p.fencing_token();
  out.since_ms = p.since_ms();
  return out;
}

SyncKind KindFromWire(pb::SyncKind k) {
  switch (k) {
    case pb::SYNC_LATCH: return SyncKind::kLatch;
    case pb::SYNC_BARRIER: return SyncKind::kBarrier;
    default: return SyncKind::kSemaphore;
  }
}

}  // namespace

std::string_view SyncKindName(SyncKind kind) {
  switch (kind) {
    case SyncKind::kSemaphore: return "semaphore";
    case SyncKind::kLatch: return "latch";
    case SyncKind::kBarrier: return "barrier";
  }
  return "unknown";
}

Result<SyncListing> ListSync(Client& client, const ListSyncOptions& options) {
  pb::Request req;
  auto* l = req.mutable_list_sync();
  l->set_prefix(options.prefix);
  l->set_limit(options.limit);
  l->set_serializable(options.consistency == ReadConsistency::kSerializable);
  Result<pb::Response> resp = client_internal::CallProto(client, req);
  if (!resp.ok()) return resp.status();
  if (!resp->has_list_sync()) return Internal("undecodable ListSync response");
  const pb::ListSyncReply& r = resp->list_sync();
  SyncListing out;
  out.truncated = r.truncated();
  out.server_time_ms = r.server_time_ms();
  for (const pb::SyncObjectInfo& o : r.objects()) {
    SyncObjectInfo info;
    info.name = o.name();
    info.kind = KindFromWire(o.kind());
    info.limit = o.limit();
    info.used = o.used();
    info.initial = o.initial();
    info.count = o.count();
    info.parties = o.parties();
    info.generation = o.generation();
    for (const auto& h : o.holders()) info.holders.push_back(FromWire(h));
    for (const auto& w : o.waiters()) info.waiters.push_back(FromWire(w));
    out.objects.push_back(std::move(info));
  }
  return out;
}

}  // namespace latchkey
