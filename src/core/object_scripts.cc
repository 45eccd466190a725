// The registry of Lua user methods (design 0012): stored in the state
// machine and its snapshots; ObjectStore::Execute falls back to it when no
// built-in method has the name.
#include "core/lua_method.h"
#include "core/object_methods.h"
#include "core/object_store.h"

namespace latchkey::core {

namespace lv = log::v1;

namespace {

Status ValidateScriptName(std::string_view name) {
  if (name.empty() || name.size() > kMaxMethodNameBytes) {
    return InvalidArgument("script name must be 1.." + std::to_string(kMaxMethodNameBytes) +
                           " bytes");
  }
  for (char ch : name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
    if (!ok) {
      return InvalidArgument("script name '" + std::string(name) +
                             "' may contain only letters, digits, '_', '.' and '-'");
    }
  }
  if (FindBuiltinMethod(name) != nullptr) {
    return InvalidArgument("'" + std::string(name) + "' is a built-in method; pick another name");
  }
  return Status::Ok();
}

}  // namespace

Status ObjectStore::PutScript(std::string_view name, std::string source, uint64_t revision) {
  LATCHKEY_RETURN_IF_ERROR(ValidateScriptName(name));
  if (source.empty()) {
    auto it = scripts_.find(name);
    if (it == scripts_.end()) return NotFound("no script named '" + std::string(name) + "'");
    scripts_.erase(it);
    return Status::Ok();
  }
  LATCHKEY_RETURN_IF_ERROR(CompileLuaScript(name, source));
  Script& s = scripts_[std::string(name)];
  s.source = std::move(source);
  s.revision = revision;
  return Status::Ok();
}

void ObjectStore::ScriptsToProto(lv::Snapshot* snap) const {
  for (const auto& [name, s] : scripts_) {
    auto* p = snap->add_scripts();
    p->set_name(name);
    p->set_source(s.source);
    p->set_revision(s.revision);
  }
}

Status ObjectStore::ScriptsFromProto(const lv::Snapshot& snap) {
  scripts_.clear();
  for (const auto& p : snap.scripts()) {
    // Sources were compiled when registered; only the shape is checked here.
    if (!ValidateScriptName(p.name()).ok() || p.source().empty() ||
        p.source().size() > kMaxScriptBytes || scripts_.count(p.name()) != 0 ||
        (!scripts_.empty() && !(scripts_.rbegin()->first < p.name()))) {
      return Status(Code::kInternal,
                    "snapshot script '" + p.name().substr(0, 64) + "' is invalid or out of order");
    }
    scripts_[p.name()] = Script{p.source(), p.revision()};
  }
  return Status::Ok();
}

}  // namespace latchkey::core
