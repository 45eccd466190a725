// Builders for log entries in core tests.
#pragma once

#include <string>

#include "core/state_machine.h"

namespace latchkey::core::testing {

class EntryBuilder {
 public:
  explicit EntryBuilder(uint64_t time_ms) : e_(MakeEntry(time_ms)) {}
  EntryBuilder& Open(uint64_t ttl_ms, std::string name = "") {
    auto* c = e_.add_commands()->mutable_open_session();
    c->set_ttl_ms(ttl_ms);
    c->set_client_name(std::move(name));
    return *this;
  }
  EntryBuilder& Close(uint64_t sid) {
    e_.add_commands()->mutable_close_session()->set_session_id(sid);
    return *this;
  }
  EntryBuilder& Expire(uint64_t sid) {
    e_.add_commands()->mutable_expire_session()->set_session_id(sid);
    return *this;
  }
  EntryBuilder& Acquire(uint64_t sid, std::string owner, std::string name, bool try_only = false,
                        uint64_t ttl = 0) {
    auto* c = e_.add_commands()->mutable_acquire();
    c->set_session_id(sid);
    c->set_owner(std::move(owner));
    c->set_name(std::move(name));
    c->set_try_only(try_only);
    c->set_lock_ttl_ms(ttl);
    return *this;
  }
  EntryBuilder& Release(uint64_t sid, std::string owner, std::string name) {
    auto* c = e_.add_commands()->mutable_release();
    c->set_session_id(sid);
    c->set_owner(std::move(owner));
    c->set_name(std::move(name));
    return *this;
  }
  EntryBuilder& Cancel(uint64_t sid, std::string owner, std::string name) {
    auto* c = e_.add_commands()->mutable_cancel_wait();
    c->set_session_id(sid);
    c->set_owner(std::move(owner));
    c->set_name(std::move(name));
    return *this;
  }
  EntryBuilder& ExpireLock(std::string name, uint64_t token) {
    auto* c = e_.add_commands()->mutable_expire_lock();
    c->set_name(std::move(name));
    c->set_fencing_token(token);
    return *this;
  }
  // Makes the last command, an acquire, write `value` as the lock value on grant.
  EntryBuilder& WithValue(std::string value) {
    auto* c = e_.mutable_commands(e_.commands_size() - 1)->mutable_acquire();
    c->set_set_value(true);
    c->set_value(std::move(value));
    return *this;
  }
  const log::v1::LogEntry& entry() const { return e_; }

 private:
  log::v1::LogEntry e_;
};

}  // namespace latchkey::core::testing
