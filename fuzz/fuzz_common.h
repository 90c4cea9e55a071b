// Shared checks for the libFuzzer targets: a reader either throws
// hashlab::Error or returns an Array whose bytes match its shape and dtype.
// Anything else (a crash, a sanitizer report, another exception type, a
// mismatched Array) is a finding.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstdio>

#include "datasets/readers/array.h"

namespace hashlab::data::fuzz {

// Small cap so that a header claiming huge sizes or a gzip bomb is rejected
// quickly instead of exhausting the fuzzer's memory.
inline constexpr uint64_t kFuzzMaxBytes = uint64_t{64} << 20;

inline void check_array(const Array& a) {
  uint64_t n = 1;
  for (int64_t d : a.shape) {
    if (d < 0) { std::fprintf(stderr, "negative dimension\n"); std::abort(); }
    n *= static_cast<uint64_t>(d);
  }
  if (n * dtype_size(a.dtype) != a.bytes.size()) {
    std::fprintf(stderr, "Array has %zu bytes for %llu elements of %s\n", a.bytes.size(),
                 static_cast<unsigned long long>(n), dtype_name(a.dtype));
    std::abort();
  }
}

}  // namespace hashlab::data::fuzz
