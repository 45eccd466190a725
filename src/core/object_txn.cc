// Transactions and methods of the object store (see object_store.h).
#include <set>

#include "core/lua_method.h"
#include "core/modes.h"
#include "core/names.h"
#include "core/object_methods.h"
#include "core/object_store.h"

namespace latchkey::core {

namespace lv = log::v1;

namespace {

enum Target : uint32_t {
  kValue = 0,
  kVersion = 1,
  kCreateRevision = 2,
  kModRevision = 3,
  kState = 4,
  kLockMode = 5,
  kLockToken = 6,
};
enum Op : uint32_t { kEq = 0, kNe = 1, kLt = 2, kLe = 3, kGt = 4, kGe = 5 };
enum OpKind : uint32_t { kPut = 0, kDelete = 1, kGet = 2, kReleaseLock = 3 };

template <typename T>
bool Holds(uint32_t op, const T& a, const T& b) {
  switch (op) {
    case kEq: return a == b;
    case kNe: return !(a == b);
    case kLt: return a < b;
    case kLe: return !(b < a);
    case kGt: return b < a;
    default: return !(a < b);  // kGe
  }
}

// Modes in the log are Mode + 1, 0 meaning EX (as in AcquireCmd).
Mode LogMode(uint64_t v) {
  if (v == 0 || v > static_cast<uint64_t>(kModeCount)) return Mode::kEX;
  return static_cast<Mode>(v - 1);
}

Status ValidateOps(const google::protobuf::RepeatedPtrField<lv::TxnOpCmd>& ops, uint64_t session) {
  std::set<std::string_view> written;
  for (const auto& op : ops) {
    switch (op.kind()) {
      case kPut: LATCHKEY_RETURN_IF_ERROR(ValidateObjectValue(op.value())); [[fallthrough]];
      case kDelete:
        LATCHKEY_RETURN_IF_ERROR(ValidateObjectKey(op.key()));
        if (!written.insert(op.key()).second) {
          return InvalidArgument("transaction writes '" + op.key() + "' twice");
        }
        break;
      case kGet: LATCHKEY_RETURN_IF_ERROR(ValidateObjectKey(op.key())); break;
      case kReleaseLock:
        LATCHKEY_RETURN_IF_ERROR(ValidateLockName(op.key()));
        LATCHKEY_RETURN_IF_ERROR(ValidateOwner(op.owner()));
        if (session == 0)
          return InvalidArgument("releasing a lock in a transaction needs a session");
        break;
      default: return InvalidArgument("unknown transaction op " + std::to_string(op.kind()));
    }
  }
  return Status::Ok();
}

}  // namespace

Result<bool> ObjectStore::EvalCompare(const lv::TxnCompareCmd& cmp, uint64_t session,
                                      const LockTable& locks) const {
  if (cmp.op() > kGe)
    return InvalidArgument("unknown compare operator " + std::to_string(cmp.op()));
  if (cmp.target() == kLockMode || cmp.target() == kLockToken) {
    LATCHKEY_RETURN_IF_ERROR(ValidateLockName(cmp.key()));
  } else {
    LATCHKEY_RETURN_IF_ERROR(ValidateObjectKey(cmp.key()));
  }
  const ObjVersion* v = Latest(cmp.key());
  if (v != nullptr && v->state == ObjState::kAbsent) v = nullptr;
  switch (cmp.target()) {
    case kValue: return Holds(cmp.op(), v ? v->value : std::string(), cmp.value());
    case kVersion: return Holds<uint64_t>(cmp.op(), v ? v->version : 0, cmp.number());
    case kCreateRevision:
      return Holds<uint64_t>(cmp.op(), v ? v->create_revision : 0, cmp.number());
    case kModRevision: return Holds<uint64_t>(cmp.op(), v ? v->mod_revision : 0, cmp.number());
    case kState:
      return Holds<uint64_t>(cmp.op(), v ? static_cast<uint64_t>(v->state) : 0, cmp.number());
    case kLockMode: {
      if (session == 0) return InvalidArgument("a lock-mode compare needs a session");
      LATCHKEY_RETURN_IF_ERROR(ValidateOwner(cmp.owner()));
      const HeldGrant* g = locks.FindGrant(OwnerId{session, cmp.owner()}, cmp.key());
      const Mode want = LogMode(cmp.number());
      switch (cmp.op()) {
        case kEq: return g != nullptr && g->mode == want;
        case kNe: return g == nullptr || g->mode != want;
        case kGe: return g != nullptr && Covers(g->mode, want);
        case kLe: return g == nullptr || Covers(want, g->mode);
        default: return InvalidArgument("lock modes are compared with ==, !=, >= (covers) or <=");
      }
    }
    case kLockToken: {
      uint64_t token = 0;
      if (const Resource* r = locks.Find(cmp.key())) {
        for (const auto& [who, g] : r->holders) token = std::max(token, g.fencing_token);
      }
      return Holds<uint64_t>(cmp.op(), token, cmp.number());
    }
    default: break;
  }
  return InvalidArgument("unknown compare target " + std::to_string(cmp.target()));
}

Result<TxnOutcome> ObjectStore::Txn(const lv::TxnCmd& c, LockTable* locks, uint64_t now_ms,
                                    uint64_t* revision) {
  if (c.compares_size() > kMaxTxnCompares || c.then_ops_size() > kMaxTxnOps ||
      c.else_ops_size() > kMaxTxnOps) {
    return InvalidArgument("a transaction takes at most " + std::to_string(kMaxTxnCompares) +
                           " compares and " + std::to_string(kMaxTxnOps) + " ops per branch");
  }
  LATCHKEY_RETURN_IF_ERROR(ValidateOps(c.then_ops(), c.session_id()));
  LATCHKEY_RETURN_IF_ERROR(ValidateOps(c.else_ops(), c.session_id()));
  TxnOutcome out;
  out.succeeded = true;
  for (const auto& cmp : c.compares()) {
    Result<bool> ok = EvalCompare(cmp, c.session_id(), *locks);
    if (!ok.ok()) return ok.status();
    if (!*ok) out.succeeded = false;  // keep validating the rest
  }
  const auto& ops = out.succeeded ? c.then_ops() : c.else_ops();
  // Everything that can fail is checked before anything is written.
  bool writes = false;
  for (const auto& op : ops) {
    if (op.kind() == kPut || op.kind() == kDelete) writes = true;
    if (op.kind() == kReleaseLock &&
        locks->FindGrant(OwnerId{c.session_id(), op.owner()}, op.key()) == nullptr) {
      return Status(Code::kNotHeld, "transaction not applied: lock '" + op.key() +
                                        "' is not held by " +
                                        DescribeOwner(OwnerId{c.session_id(), op.owner()}));
    }
  }
  const uint64_t rev = writes ? ++*revision : 0;
  for (const auto& op : ops) {
    switch (op.kind()) {
      case kPut:
        Write(op.key(), ObjState::kAvailable, op.value(), 0, rev, now_ms, ObjChange::Cause::kPut);
        break;
      case kDelete: {
        const ObjVersion* v = Latest(op.key());
        if (v != nullptr && v->state != ObjState::kAbsent) {
          Write(op.key(), ObjState::kAbsent, {}, 0, rev, now_ms, ObjChange::Cause::kDelete);
        }
        break;
      }
      case kGet: out.gets.push_back(*Get(op.key(), 0, *revision)); break;
      case kReleaseLock: {
        // Checked above; later grants take their own (higher) revisions.
        Status st = locks->Release(OwnerId{c.session_id(), op.owner()}, op.key(), false, revision);
        LATCHKEY_CHECK(st.ok());
        break;
      }
      default: break;
    }
  }
  out.revision = writes ? rev : *revision;
  return out;
}

Result<MethodOutcome> ObjectStore::Execute(std::string_view key, std::string_view method,
                                           const std::vector<std::string>& args, uint64_t now_ms,
                                           uint64_t* revision) {
  LATCHKEY_RETURN_IF_ERROR(ValidateObjectKey(key));
  if (method.size() > kMaxMethodNameBytes || args.size() > static_cast<size_t>(kMaxMethodArgs)) {
    return InvalidArgument("method name longer than " + std::to_string(kMaxMethodNameBytes) +
                           " bytes or more than " + std::to_string(kMaxMethodArgs) + " arguments");
  }
  for (const std::string& a : args) LATCHKEY_RETURN_IF_ERROR(ValidateObjectValue(a));
  MethodFn fn = FindBuiltinMethod(method);
  auto script = scripts_.find(method);
  if (fn == nullptr && script == scripts_.end()) {
    return NotFound("unknown method '" + std::string(method) + "'; built-in methods: " +
                    BuiltinMethodNames() + "; or register a script (latchkey script put)");
  }
  Result<ObjView> cur = Get(key, 0, *revision);
  if (!cur.ok()) return cur.status();
  if (cur->state == ObjState::kReserved) {
    return Status(Code::kFailedPrecondition,
                  "object '" + std::string(key) + "' is reserved by session " +
                      std::to_string(cur->reserved_by) + " and has no value yet; wait for it");
  }
  Result<MethodEffect> eff =
      fn != nullptr ? fn(*cur, args) : RunLuaMethod(method, script->second.source, *cur, args);
  if (!eff.ok()) return eff.status();
  switch (eff->write) {
    case MethodEffect::Write::kNone: break;
    case MethodEffect::Write::kPut:
      LATCHKEY_RETURN_IF_ERROR(ValidateObjectValue(eff->value));
      Write(std::string(key), ObjState::kAvailable, std::move(eff->value), 0, ++*revision, now_ms,
            ObjChange::Cause::kPut);
      break;
    case MethodEffect::Write::kDelete:
      if (cur->state != ObjState::kAbsent) {
        Write(std::string(key), ObjState::kAbsent, {}, 0, ++*revision, now_ms,
              ObjChange::Cause::kDelete);
      }
      break;
  }
  MethodOutcome out;
  out.result = std::move(eff->result);
  out.object = *Get(key, 0, *revision);
  return out;
}

}  // namespace latchkey::core
