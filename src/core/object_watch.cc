// Watch support of the object store (design 0012): the history a watch
// replays before it follows the live change stream.
#include <algorithm>

#include "core/object_store.h"

namespace latchkey::core {

Result<std::vector<ObjView>> ObjectStore::Changes(std::string_view key, bool prefix,
                                                  uint64_t from_rev) const {
  if (!prefix || !key.empty()) LATCHKEY_RETURN_IF_ERROR(ValidateObjectKey(key));
  if (compact_revision_ != 0 && from_rev <= compact_revision_) {
    return Status(Code::kCompacted,
                  "cannot watch from revision " + std::to_string(from_rev) +
                      ": history up to revision " + std::to_string(compact_revision_) +
                      " was compacted; read the current state and watch from revision " +
                      std::to_string(compact_revision_ + 1) + " or later");
  }
  std::vector<ObjView> out;
  auto add = [&](const std::string& k, const ObjKey& obj) {
    // Versions ascend by mod_revision: binary search the first one >= from.
    auto it =
        std::lower_bound(obj.versions.begin(), obj.versions.end(), from_rev,
                         [](const ObjVersion& v, uint64_t rev) { return v.mod_revision < rev; });
    for (; it != obj.versions.end(); ++it) out.push_back(ToView(k, *it));
  };
  if (!prefix) {
    auto it = keys_.find(key);
    if (it != keys_.end()) add(it->first, it->second);
    return out;
  }
  for (auto it = keys_.lower_bound(key); it != keys_.end(); ++it) {
    if (it->first.compare(0, key.size(), key) != 0) break;
    add(it->first, it->second);
  }
  std::stable_sort(out.begin(), out.end(), [](const ObjView& a, const ObjView& b) {
    return a.mod_revision < b.mod_revision;  // keys already ascend within a revision
  });
  return out;
}

Result<ObjView> ObjectStore::VersionAt(std::string_view key, uint64_t rev) const {
  auto it = keys_.find(key);
  if (it != keys_.end()) {
    const auto& vs = it->second.versions;
    auto v = std::lower_bound(vs.begin(), vs.end(), rev,
                              [](const ObjVersion& x, uint64_t r) { return x.mod_revision < r; });
    if (v != vs.end() && v->mod_revision == rev) return ToView(key, *v);
  }
  return NotFound("no version of '" + std::string(key) + "' at revision " + std::to_string(rev));
}

}  // namespace latchkey::core
