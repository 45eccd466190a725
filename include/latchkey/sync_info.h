// Introspection of semaphores, latches and barriers: the counterpart of
// Client::ListLocks for the synchronization objects (docs/protocol.md
// "ListSync"). Free functions over a connected Client.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "latchkey/client.h"
#include "latchkey/status.h"

namespace latchkey {

enum class SyncKind { kSemaphore, kLatch, kBarrier };

// "semaphore", "latch", "barrier".
std::string_view SyncKindName(SyncKind kind);

// A holder of semaphore permits, or a waiter on any of the three kinds.
struct SyncPartyInfo {
  uint64_t session_id = 0;
  std::string owner;
  std::string client_name;
  uint32_t permits = 0;        // held (holder) or asked for (semaphore waiter)
  uint64_t fencing_token = 0;  // semaphore holders only
  uint64_t since_ms = 0;       // server time granted / queued; 0 = unknown
};

struct SyncObjectInfo {
  std::string name;
  SyncKind kind = SyncKind::kSemaphore;
  uint32_t limit = 0;                  // semaphore: permits in all
  uint32_t used = 0;                   // semaphore: permits held
  uint64_t initial = 0;                // latch: its starting count
  uint64_t count = 0;                  // latch: count left (0 = open)
  uint32_t parties = 0;                // barrier: parties per generation
  uint64_t generation = 0;             // barrier: generations tripped so far
  std::vector<SyncPartyInfo> holders;  // semaphore holders
  std::vector<SyncPartyInfo> waiters;  // queue / arrival order
};

struct SyncListing {
  std::vector<SyncObjectInfo> objects;  // in (name, kind) order
  bool truncated = false;               // more matched than `limit`
  uint64_t server_time_ms = 0;          // to compute ages
};

struct ListSyncOptions {
  std::string prefix{};  // "" = all; "a" lists "a" and "a.*", not "ab"
  uint32_t limit = 0;    // 0 = the server's default (1000)
  ReadConsistency consistency = ReadConsistency::kLinearizable;
};

// Every semaphore, latch and barrier at or below options.prefix.
Result<SyncListing> ListSync(Client& client, const ListSyncOptions& options = {});

}  // namespace latchkey
