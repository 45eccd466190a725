// Object store commands of the state machine (object_store.h, design 0008).
#include "core/state_machine.h"

namespace latchkey::core {

namespace lv = log::v1;

namespace {

template <typename T>
bool Take(const Result<T>& res, CommandResult* r) {
  if (!res.ok()) {
    r->status = res.status();
    return false;
  }
  return true;
}

}  // namespace

CommandResult StateMachine::ApplyObjectCommand(const lv::Command& cmd) {
  CommandResult r;
  switch (cmd.op_case()) {
    case lv::Command::kObjReserve: {
      const auto& c = cmd.obj_reserve();
      if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
      Result<ObjView> v = objects_.Reserve(c.session_id(), c.key(), time_ms_, &revision_);
      if (!v.ok()) {
        r.status = v.status();
        return r;
      }
      r.revision = v->mod_revision;
      r.objects.push_back(std::move(*v));
      return r;
    }
    case lv::Command::kObjPut: {
      Result<ObjView> v =
          objects_.Put(cmd.obj_put().key(), cmd.obj_put().value(), time_ms_, &revision_);
      if (!v.ok()) {
        r.status = v.status();
        return r;
      }
      r.revision = v->mod_revision;
      r.objects.push_back(std::move(*v));
      return r;
    }
    case lv::Command::kObjDelete: {
      Result<bool> existed = objects_.Delete(cmd.obj_delete().key(), time_ms_, &revision_);
      if (!existed.ok()) {
        r.status = existed.status();
        return r;
      }
      r.succeeded = *existed;
      r.revision = revision_;
      return r;
    }
    case lv::Command::kObjSetTtl: {
      const auto& c = cmd.obj_set_ttl();
      r.status = objects_.SetTtl(c.key(), c.ttl_ms(), c.sliding(), time_ms_, &revision_);
      r.revision = revision_;
      return r;
    }
    case lv::Command::kObjExpire:
      r.status = objects_.Expire(cmd.obj_expire().key(), cmd.obj_expire().ttl_revision(), time_ms_,
                                 &revision_);
      return r;
    case lv::Command::kObjCompact:
      r.status = objects_.Compact(cmd.obj_compact().revision(), revision_);
      r.revision = objects_.compact_revision();
      if (r.status.ok()) records_.Compact(objects_.compact_revision());  // one compaction point
      return r;
    case lv::Command::kTxn: {
      const auto& c = cmd.txn();
      if (c.session_id() != 0) {
        if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
      }
      locks_.set_time(time_ms_);
      Result<TxnOutcome> out = objects_.Txn(c, &locks_, time_ms_, &revision_);
      if (!Take(out, &r)) return r;
      r.succeeded = out->succeeded;
      r.revision = out->revision;
      r.objects = std::move(out->gets);
      return r;
    }
    case lv::Command::kObjMethod: {
      const auto& c = cmd.obj_method();
      if (c.session_id() != 0) {
        if (r.status = CheckSession(c.session_id()); !r.status.ok()) return r;
      }
      std::vector<std::string> args(c.args().begin(), c.args().end());
      Result<MethodOutcome> out = objects_.Execute(c.key(), c.method(), args, time_ms_, &revision_);
      if (!Take(out, &r)) return r;
      r.method_result = std::move(out->result);
      r.revision = revision_;
      r.objects.push_back(std::move(out->object));
      return r;
    }
    case lv::Command::kPublish: {
      const auto& c = cmd.publish();
      if (r.status = ValidateNamespace(c.namespace_name()); !r.status.ok()) return r;
      if (r.status = ValidateObjectValue(c.message()); !r.status.ok()) return r;
      r.revision = ++revision_;
      published_.push_back(Published{c.namespace_name(), c.message(), r.revision});
      return r;
    }
    case lv::Command::kScriptPut: {
      const auto& c = cmd.script_put();
      r.status = objects_.PutScript(c.name(), c.source(), revision_ + 1);
      if (r.status.ok()) ++revision_;
      r.revision = revision_;
      return r;
    }
    default: break;
  }
  r.status = InvalidArgument("not an object store command");
  return r;
}

Status ValidateNamespace(std::string_view ns) {
  if (ns.empty() || ns.size() > kMaxNamespaceBytes) {
    return InvalidArgument("namespace must be 1.." + std::to_string(kMaxNamespaceBytes) + " bytes");
  }
  for (unsigned char ch : ns) {
    if (ch < 0x20 || ch == 0x7f) return InvalidArgument("namespace contains a control character");
  }
  return Status::Ok();
}

}  // namespace latchkey::core
