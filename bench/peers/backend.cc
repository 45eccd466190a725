#include "backend.h"

namespace latchkey::peers {

Result<std::unique_ptr<LockClient>> Connect(const std::string& system,
                                            const BackendOptions& options) {
  if (system == "latchkey") return ConnectLatchkey(options);
  if (system == "redis") return ConnectRedis(options);
  if (system == "zookeeper") return ConnectZooKeeper(options);
  if (system == "etcd") return ConnectEtcd(options);
  return InvalidArgument("unknown system '" + system + "' (latchkey, redis, zookeeper, etcd)");
}

}  // namespace latchkey::peers
