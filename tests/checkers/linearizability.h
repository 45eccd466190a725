// Linearizability checker for a register (read / write / cas), a
// Wing-Gong-Lowe search with memoisation of (linearized set, state) as in
// Lowe's "Testing for linearizability" (2017) and Porcupine
// (github.com/anishathalye/porcupine). Written here (design record 0011).
//
// Input: the operations of one key (ops whose op is read, write or cas):
// - write: value = the value written.
// - cas: expect = expected value, value = new value; outcome ok = swapped.
//   A cas that found another value is recorded as fail (it did not take
//   effect) and ignored, like every failed operation.
// - read: outcome ok, value = the value read. Reads that did not complete
//   ok are ignored (they change nothing).
// - Writes and cas with outcome info (unknown) may take effect at any time
//   after their invocation, or never.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "checkers/checkers.h"
#include "checkers/history.h"

namespace latchkey::checkers {

struct LinearizabilityOptions {
  std::string initial_value{};    // the register before the history
  size_t max_steps = 20'000'000;  // search budget; beyond it the result is "unknown"
  // The op names of the three kinds (the object store's are get / put / cas).
  std::string read_op = "read", write_op = "write", cas_op = "cas";
};

// ok() when a linearization exists. When the budget runs out the result has
// one violation line starting "unknown:" (the caller decides how to treat it).
CheckResult CheckRegisterLinearizable(const std::vector<Operation>& ops, const std::string& key,
                                      const LinearizabilityOptions& options = {});

}  // namespace latchkey::checkers
