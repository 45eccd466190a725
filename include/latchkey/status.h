// Public error type of the Latchkey client library: latchkey::Status and
// latchkey::Result<T> (expected failures as values), and latchkey::Error, the
// exception thrown only by the std-Lockable methods that cannot return one.
#pragma once

#include <stdexcept>

#include "common/status.h"

namespace latchkey {

class Error : public std::runtime_error {
 public:
  explicit Error(Status status)
      : std::runtime_error(status.ToString()), status_(std::move(status)) {}
  const Status& status() const noexcept { return status_; }

 private:
  Status status_;
};

}  // namespace latchkey
