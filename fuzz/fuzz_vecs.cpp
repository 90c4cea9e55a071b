// libFuzzer target: parse_vecs (fvecs, bvecs, ivecs) on arbitrary bytes.
#include "csrc/core/error.h"
#include "datasets/readers/vecs.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hashlab::data;
  for (VecsKind k : {VecsKind::fvecs, VecsKind::bvecs, VecsKind::ivecs}) {
    try {
      fuzz::check_array(parse_vecs(data, size, "fuzz.vecs", k, fuzz::kFuzzMaxBytes));
    } catch (const hashlab::Error&) {
    }
  }
  return 0;
}
