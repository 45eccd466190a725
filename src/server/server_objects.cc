// Object store requests (loop thread): reads on the leader after a read
// barrier, writes through the log, wait_for as a server-side pending wait,
// sliding TTL clocks and retention off the log (server_objects.h, 0008).
#include "server/server_objects.h"

#include <algorithm>

#include "common/log.h"
#include "server/server.h"

namespace latchkey::server {

namespace lv = log::v1;

// ---- SlidingClocks / retention -------------------------------------------------

void SlidingClocks::Set(const std::string& key, uint64_t ttl_ms, uint64_t ttl_revision,
                        uint64_t now_ms) {
  Erase(key);
  Clock c{ttl_ms, ttl_revision, now_ms + ttl_ms};
  clocks_.emplace(key, c);
  by_time_.insert({c.deadline_ms, key});
}

void SlidingClocks::Touch(const std::string& key, uint64_t now_ms) {
  auto it = clocks_.find(key);
  if (it == clocks_.end()) return;
  by_time_.erase({it->second.deadline_ms, key});
  it->second.deadline_ms = now_ms + it->second.ttl_ms;
  by_time_.insert({it->second.deadline_ms, key});
}

void SlidingClocks::Erase(const std::string& key) {
  auto it = clocks_.find(key);
  if (it == clocks_.end()) return;
  by_time_.erase({it->second.deadline_ms, key});
  clocks_.erase(it);
}

void SlidingClocks::Clear() {
  clocks_.clear();
  by_time_.clear();
}

std::vector<std::pair<std::string, uint64_t>> SlidingClocks::Due(uint64_t now_ms) const {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (const auto& [deadline, key] : by_time_) {
    if (deadline > now_ms) break;
    out.emplace_back(key, clocks_.find(key)->second.ttl_revision);
  }
  return out;
}

uint64_t RetentionTarget(uint64_t revision, uint64_t now_mono_ms, uint64_t retain_revisions,
                         uint64_t retain_ms,
                         const std::deque<std::pair<uint64_t, uint64_t>>& samples) {
  if (retain_revisions == 0 && retain_ms == 0) return 0;
  uint64_t target = revision;
  if (retain_revisions != 0) {
    target = std::min(target, revision > retain_revisions ? revision - retain_revisions : 0);
  }
  if (retain_ms != 0) {
    uint64_t by_age = 0;  // no sample old enough yet: keep everything
    for (const auto& [mono, rev] : samples) {
      if (mono + retain_ms > now_mono_ms) break;
      by_age = rev;
    }
    target = std::min(target, by_age);
  }
  return target;
}

// ---- Helpers -------------------------------------------------------------------

namespace {

void FillObject(const core::ObjView& v, v1::Object* out) {
  out->set_key(v.key);
  out->set_state(static_cast<v1::ObjectState>(v.state));
  out->set_value(v.value);
  out->set_create_revision(v.create_revision);
  out->set_mod_revision(v.mod_revision);
  out->set_version(v.version);
  out->set_reserved_by(v.reserved_by);
  out->set_ttl_ms(v.ttl.ttl_ms);
  out->set_ttl_sliding(v.ttl.sliding);
  if (!v.ttl.sliding) out->set_expires_at_ms(v.ttl.deadline_ms);
}

void ToLogTxn(const v1::Txn& t, lv::TxnCmd* c) {
  c->set_session_id(t.session_id());
  for (const auto& cmp : t.compares()) {
    auto* o = c->add_compares();
    o->set_target(static_cast<uint32_t>(cmp.target()));
    o->set_op(static_cast<uint32_t>(cmp.op()));
    o->set_key(cmp.key());
    o->set_value(cmp.value());
    o->set_number(cmp.number());  // lock modes: wire and log share Mode + 1
    o->set_owner(cmp.owner());
  }
  auto ops = [](const auto& from, auto* to) {
    for (const auto& op : from) {
      auto* o = to->Add();
      o->set_kind(static_cast<uint32_t>(op.kind()));
      o->set_key(op.key());
      o->set_value(op.value());
      o->set_owner(op.owner());
    }
  };
  ops(t.then_ops(), c->mutable_then_ops());
  ops(t.else_ops(), c->mutable_else_ops());
}

}  // namespace

void Server::SendObject(const core::ObjView& v, v1::Object* out) {
  FillObject(v, out);
  if (is_leader_ && v.state != core::ObjState::kAbsent) {
    objects_srv_.sliding.Touch(v.key, clock_->MonoMs());  // sent to a client: no-op if no clock
  }
}

void Server::AfterReadBarrier(ConnState& cs, const Request& req,
                              void (Server::*read)(ConnState&, const Request&)) {
  const uint64_t conn_id = cs.conn->id();
  auto copy = std::make_shared<Request>(req);
  // As for GetLock (0005): the barrier applies after every entry committed
  // before the read arrived and commits only while this node leads.
  raft_->ReadBarrier([this, conn_id, copy, read](Status st) {
    auto it = conns_.find(conn_id);
    if (it == conns_.end()) return;
    if (st.code() == Code::kNotLeader) return ReplyNotLeader(conn_id, copy->id(), "a read");
    if (!st.ok()) return ReplyError(conn_id, copy->id(), st);
    (this->*read)(it->second, *copy);
  });
}

// ---- Reads ---------------------------------------------------------------------

void Server::OnGetObject(ConnState& cs, const Request& req) {
  AfterReadBarrier(cs, req, &Server::ReadObject);
}

void Server::ReadObject(ConnState& cs, const Request& req) {
  const auto& g = req.get_object();
  Result<core::ObjView> v = sm_.objects().Get(g.key(), g.revision(), sm_.revision());
  if (!v.ok()) return ReplyError(cs.conn->id(), req.id(), v.status());
  if (options_.test_only_bug == "stale-object-read" && g.revision() == 0 &&
      v->mod_revision > 1) {  // planted bug, tests only: the version before the latest
    auto older = sm_.objects().Get(g.key(), v->mod_revision - 1, sm_.revision());
    if (older.ok()) v = std::move(older);
  }
  v1::Response resp;
  resp.set_id(req.id());
  auto* out = resp.mutable_get_object();
  SendObject(*v, out->mutable_object());
  out->set_revision(g.revision() != 0 ? g.revision() : sm_.revision());
  out->set_compact_revision(sm_.objects().compact_revision());
  Reply(cs.conn->id(), resp);
}

void Server::OnObjectHistory(ConnState& cs, const Request& req) {
  AfterReadBarrier(cs, req, &Server::ReadHistory);
}

void Server::ReadHistory(ConnState& cs, const Request& req) {
  const auto& h = req.object_history();
  Result<core::ObjPage> page = sm_.objects().History(h.key(), h.from_revision(), h.limit());
  if (!page.ok()) return ReplyError(cs.conn->id(), req.id(), page.status());
  v1::Response resp;
  resp.set_id(req.id());
  auto* out = resp.mutable_object_history();
  for (const core::ObjView& v : page->items) FillObject(v, out->add_versions());
  out->set_compact_revision(sm_.objects().compact_revision());
  out->set_truncated(page->truncated);
  Reply(cs.conn->id(), resp);
}

void Server::OnFindObjects(ConnState& cs, const Request& req) {
  AfterReadBarrier(cs, req, &Server::ReadFind);
}

void Server::ReadFind(ConnState& cs, const Request& req) {
  const auto& f = req.find_objects();
  Result<core::ObjPage> page =
      sm_.objects().Find(f.prefix(), f.start_after(), f.revision(), sm_.revision(), f.limit());
  if (!page.ok()) return ReplyError(cs.conn->id(), req.id(), page.status());
  v1::Response resp;
  resp.set_id(req.id());
  auto* out = resp.mutable_find_objects();
  for (const core::ObjView& v : page->items) SendObject(v, out->add_objects());
  out->set_revision(f.revision() != 0 ? f.revision() : sm_.revision());
  out->set_truncated(page->truncated);
  Reply(cs.conn->id(), resp);
}

// wait_for: answered at once unless the object is reserved; otherwise a
// waiter answered by the change that ends the reservation (update, remove,
// expiry, the reserver's session ending) or by its timeout.
void Server::OnWaitObject(ConnState& cs, const Request& req) {
  AfterReadBarrier(cs, req, &Server::ReadWait);
}

void Server::ReadWait(ConnState& cs, const Request& req) {
  const auto& w = req.wait_object();
  Result<core::ObjView> v = sm_.objects().Get(w.key(), 0, sm_.revision());
  if (!v.ok()) return ReplyError(cs.conn->id(), req.id(), v.status());
  if (v->state != core::ObjState::kReserved) return AnswerWait(cs.conn->id(), req.id(), w.key());
  if (objects_srv_.waiters.size() >= options_.max_object_waiters) {
    return ReplyError(cs.conn->id(), req.id(),
                      Status(Code::kResourceExhausted, "too many wait_for requests are blocked"));
  }
  ObjectWaiter ow;
  ow.conn_id = cs.conn->id();
  ow.request_id = req.id();
  ow.deadline_mono_ms =
      w.timeout_ms() == 0 ? 0 : clock_->MonoMs() + std::min<uint64_t>(w.timeout_ms(), 1ull << 40);
  objects_srv_.waiters.emplace(w.key(), ow);
}

void Server::AnswerWait(uint64_t conn_id, uint64_t request_id, const std::string& key) {
  v1::Response resp;
  resp.set_id(request_id);
  auto* out = resp.mutable_wait_object();
  Result<core::ObjView> v = sm_.objects().Get(key, 0, sm_.revision());
  if (v.ok()) SendObject(*v, out->mutable_object());
  out->set_revision(sm_.revision());
  out->set_compact_revision(sm_.objects().compact_revision());
  Reply(conn_id, resp);
}

// ---- Writes --------------------------------------------------------------------

void Server::OnPutObject(ConnState& cs, const Request& req) {
  const auto& p = req.put_object();
  if (Status s = core::ValidateObjectKey(p.key()); !s.ok()) {
    return ReplyError(cs.conn->id(), req.id(), s);
  }
  if (Status s = core::ValidateObjectValue(p.value()); !s.ok()) {
    return ReplyError(cs.conn->id(), req.id(), s);
  }
  lv::Command cmd;
  cmd.mutable_obj_put()->set_key(p.key());
  cmd.mutable_obj_put()->set_value(p.value());
  ProposeAndReply(std::move(cmd), cs.conn->id(), req.id(),
                  [](const core::CommandResult& res, v1::Response* r) {
                    r->mutable_put_object()->set_revision(res.revision);
                    if (!res.objects.empty()) {
                      r->mutable_put_object()->set_version(res.objects[0].version);
                    }
                  });
}

void Server::OnReserveObject(ConnState& cs, const Request& req) {
  const auto& p = req.reserve_object();
  if (Status s = core::ValidateObjectKey(p.key()); !s.ok()) {
    return ReplyError(cs.conn->id(), req.id(), s);
  }
  if (!TouchSession(cs.conn->id(), req.id(), p.session_id())) return;
  lv::Command cmd;
  cmd.mutable_obj_reserve()->set_session_id(p.session_id());
  cmd.mutable_obj_reserve()->set_key(p.key());
  ProposeAndReply(std::move(cmd), cs.conn->id(), req.id(),
                  [this](const core::CommandResult& res, v1::Response* r) {
                    auto* out = r->mutable_reserve_object();
                    if (!res.objects.empty()) SendObject(res.objects[0], out->mutable_object());
                    out->set_revision(res.revision);
                    out->set_compact_revision(sm_.objects().compact_revision());
                  });
}

void Server::OnRemoveObject(ConnState& cs, const Request& req) {
  const auto& p = req.remove_object();
  if (Status s = core::ValidateObjectKey(p.key()); !s.ok()) {
    return ReplyError(cs.conn->id(), req.id(), s);
  }
  lv::Command cmd;
  cmd.mutable_obj_delete()->set_key(p.key());
  ProposeAndReply(std::move(cmd), cs.conn->id(), req.id(),
                  [](const core::CommandResult& res, v1::Response* r) {
                    r->mutable_remove_object()->set_revision(res.revision);
                    r->mutable_remove_object()->set_existed(res.succeeded);
                  });
}

void Server::OnSetObjectTtl(ConnState& cs, const Request& req) {
  const auto& p = req.set_object_ttl();
  if (Status s = core::ValidateObjectKey(p.key()); !s.ok()) {
    return ReplyError(cs.conn->id(), req.id(), s);
  }
  const uint64_t ttl = p.use_default() ? options_.object_default_ttl_ms : p.ttl_ms();
  if (ttl > options_.max_object_ttl_ms) {
    return ReplyError(
        cs.conn->id(), req.id(),
        InvalidArgument("object ttl " + std::to_string(ttl) + "ms exceeds the limit of " +
                        std::to_string(options_.max_object_ttl_ms) + "ms"));
  }
  lv::Command cmd;
  cmd.mutable_obj_set_ttl()->set_key(p.key());
  cmd.mutable_obj_set_ttl()->set_ttl_ms(ttl);
  cmd.mutable_obj_set_ttl()->set_sliding(p.sliding());
  ProposeAndReply(std::move(cmd), cs.conn->id(), req.id(),
                  [ttl](const core::CommandResult&, v1::Response* r) {
                    r->mutable_set_object_ttl()->set_ttl_ms(ttl);
                  });
}

void Server::OnTxn(ConnState& cs, const Request& req) {
  const auto& t = req.txn();
  if (t.compares_size() > core::kMaxTxnCompares || t.then_ops_size() > core::kMaxTxnOps ||
      t.else_ops_size() > core::kMaxTxnOps) {
    return ReplyError(cs.conn->id(), req.id(),
                      InvalidArgument("a transaction takes at most 64 compares and 128 ops per "
                                      "branch"));
  }
  if (t.session_id() != 0 && !TouchSession(cs.conn->id(), req.id(), t.session_id())) return;
  lv::Command cmd;
  ToLogTxn(t, cmd.mutable_txn());
  ProposeAndReply(std::move(cmd), cs.conn->id(), req.id(),
                  [this](const core::CommandResult& res, v1::Response* r) {
                    auto* out = r->mutable_txn();
                    out->set_succeeded(res.succeeded);
                    out->set_revision(res.revision);
                    for (const core::ObjView& v : res.objects) SendObject(v, out->add_gets());
                  });
}

void Server::OnExecMethod(ConnState& cs, const Request& req) {
  const auto& e = req.exec_method();
  if (Status s = core::ValidateObjectKey(e.key()); !s.ok()) {
    return ReplyError(cs.conn->id(), req.id(), s);
  }
  if (e.session_id() != 0 && !TouchSession(cs.conn->id(), req.id(), e.session_id())) return;
  lv::Command cmd;
  auto* c = cmd.mutable_obj_method();
  c->set_session_id(e.session_id());
  c->set_key(e.key());
  c->set_method(e.method());
  for (const std::string& a : e.args()) c->add_args(a);
  ProposeAndReply(std::move(cmd), cs.conn->id(), req.id(),
                  [this](const core::CommandResult& res, v1::Response* r) {
                    auto* out = r->mutable_exec_method();
                    out->set_result(res.method_result);
                    out->set_revision(res.revision);
                    if (!res.objects.empty()) SendObject(res.objects[0], out->mutable_object());
                  });
}

void Server::OnCompactObjects(ConnState& cs, const Request& req) {
  const uint64_t rev = req.compact_objects().revision();
  lv::Command cmd;
  cmd.mutable_obj_compact()->set_revision(rev == 0 ? sm_.revision() : rev);
  ProposeAndReply(std::move(cmd), cs.conn->id(), req.id(),
                  [](const core::CommandResult& res, v1::Response* r) {
                    r->mutable_compact_objects()->set_compact_revision(res.revision);
                  });
}

// ---- Apply-side and housekeeping -------------------------------------------------

void Server::HandleObjectChanges(const std::vector<core::ObjChange>& changes) {
  const uint64_t now = clock_->MonoMs();
  for (const core::ObjChange& ch : changes) {
    if (ch.state == core::ObjState::kAbsent) {
      objects_srv_.sliding.Erase(ch.key);
      objects_srv_.expiring.erase(ch.key);
    } else if (is_leader_) {
      if (ch.cause == core::ObjChange::Cause::kTtlSet) {
        objects_srv_.expiring.erase(ch.key);
        Result<core::ObjView> v = sm_.objects().Get(ch.key, 0, sm_.revision());
        if (v.ok() && v->ttl.sliding) {
          objects_srv_.sliding.Set(ch.key, v->ttl.ttl_ms, v->ttl.revision, now);
        } else {
          objects_srv_.sliding.Erase(ch.key);
        }
      } else {
        objects_srv_.sliding.Touch(ch.key, now);  // a write restarts the clock too
      }
    }
    if (ch.state == core::ObjState::kReserved) continue;
    auto [lo, hi] = objects_srv_.waiters.equal_range(ch.key);
    std::vector<ObjectWaiter> done;
    for (auto it = lo; it != hi; ++it) done.push_back(it->second);
    objects_srv_.waiters.erase(lo, hi);
    for (const ObjectWaiter& w : done) AnswerWait(w.conn_id, w.request_id, ch.key);
  }
}

void Server::ObjectsOnLeadership(bool is_leader) {
  objects_srv_.sliding.Clear();
  objects_srv_.expiring.clear();
  objects_srv_.samples.clear();
  objects_srv_.compacting = false;
  if (is_leader) {
    // Full TTL for every sliding clock: this node cannot know the last read.
    const uint64_t now = clock_->MonoMs();
    for (const auto& [key, ttl] : sm_.objects().SlidingTtls()) {
      objects_srv_.sliding.Set(key, ttl.first, ttl.second, now);
    }
  } else {
    FailObjectWaiters(Status(Code::kNotLeader, "this node is no longer the leader"));
  }
}

void Server::FailObjectWaiters(const Status& status) {
  for (const auto& [key, w] : objects_srv_.waiters) ReplyError(w.conn_id, w.request_id, status);
  objects_srv_.waiters.clear();
}

void Server::ProposeObjectExpiry(const std::string& key, uint64_t ttl_revision) {
  if (!objects_srv_.expiring.insert(key).second) return;
  lv::Command cmd;
  cmd.mutable_obj_expire()->set_key(key);
  cmd.mutable_obj_expire()->set_ttl_revision(ttl_revision);
  proposer_->Add(std::move(cmd), [this, key](const Status&, const core::CommandResult* res) {
    if (res == nullptr || !res->status.ok()) {
      objects_srv_.expiring.erase(key);
      // A stale clock (the TTL changed meanwhile) must not fire again.
      if (res != nullptr) objects_srv_.sliding.Erase(key);
    }
  });
}

void Server::ObjectTick() {
  const uint64_t mono = clock_->MonoMs();
  for (const auto& [key, rev] : objects_srv_.sliding.Due(mono)) ProposeObjectExpiry(key, rev);
  for (const auto& [key, rev] : sm_.objects().ExpiredAbsolute(clock_->WallMs())) {
    ProposeObjectExpiry(key, rev);
  }
  // wait_for timeouts and waiters whose connection went away.
  for (auto it = objects_srv_.waiters.begin(); it != objects_srv_.waiters.end();) {
    const ObjectWaiter& w = it->second;
    if (!conns_.count(w.conn_id)) {
      it = objects_srv_.waiters.erase(it);
    } else if (w.deadline_mono_ms != 0 && w.deadline_mono_ms <= mono) {
      ReplyError(w.conn_id, w.request_id,
                 Status(Code::kTimeout, "object '" + it->first + "' is still reserved"));
      it = objects_srv_.waiters.erase(it);
    } else {
      ++it;
    }
  }
  // Retention: sample (time, revision), compact at most once a second.
  auto& samples = objects_srv_.samples;
  if (samples.empty() || samples.back().second != sm_.revision()) {
    if (samples.empty() || mono >= samples.back().first + 100) {
      samples.emplace_back(mono, sm_.revision());
    }
  }
  while (samples.size() > 2 && samples[1].first + options_.object_retain_ms <= mono) {
    samples.pop_front();  // samples[1] is old enough to stand for the front
  }
  if (objects_srv_.compacting || mono < objects_srv_.last_compact_mono_ms + 1000) return;
  const uint64_t target = RetentionTarget(sm_.revision(), mono, options_.object_retain_revisions,
                                          options_.object_retain_ms, samples);
  if (target <= sm_.objects().compact_revision()) return;
  objects_srv_.compacting = true;
  objects_srv_.last_compact_mono_ms = mono;
  lv::Command cmd;
  cmd.mutable_obj_compact()->set_revision(target);
  proposer_->Add(std::move(cmd), [this](const Status&, const core::CommandResult*) {
    objects_srv_.compacting = false;
  });
}

}  // namespace latchkey::server
