// libFuzzer target: parse_npy on arbitrary bytes.
#include "csrc/core/error.h"
#include "datasets/readers/npy.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hashlab::data;
  try {
    fuzz::check_array(parse_npy(data, size, "fuzz.npy", fuzz::kFuzzMaxBytes));
  } catch (const hashlab::Error&) {
  }
  return 0;
}
