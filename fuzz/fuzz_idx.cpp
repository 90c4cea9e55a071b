// libFuzzer target: parse_idx on arbitrary bytes (gzip included).
#include "csrc/core/error.h"
#include "datasets/readers/idx.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hashlab::data;
  try {
    fuzz::check_array(parse_idx(data, size, "fuzz.idx", fuzz::kFuzzMaxBytes));
  } catch (const hashlab::Error&) {
  }
  return 0;
}
