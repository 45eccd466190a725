// Names the nemesis workload uses on the object store (shared by the
// workers, the watchers and the harness).
#pragma once

namespace latchkey::nemesis {

inline constexpr const char* kObjPrefix = "nemesis/obj/";
inline constexpr int kObjKeys = 3;  // keys kObjPrefix + "0" .. "2"

}  // namespace latchkey::nemesis
