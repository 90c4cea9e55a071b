// libFuzzer target: parse_cifar (both kinds) on arbitrary bytes.
#include "csrc/core/error.h"
#include "datasets/readers/cifar.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hashlab::data;
  for (CifarKind k : {CifarKind::cifar10, CifarKind::cifar100}) {
    try {
      CifarData c = parse_cifar(data, size, "fuzz.bin", k, fuzz::kFuzzMaxBytes);
      fuzz::check_array(c.images);
      fuzz::check_array(c.labels);
      if (k == CifarKind::cifar100) fuzz::check_array(c.coarse_labels);
      if (c.labels.shape[0] != c.images.shape[0]) std::abort();
    } catch (const hashlab::Error&) {
    }
  }
  return 0;
}
