// libFuzzer target: parse_image_list on arbitrary text. Every accepted path
// must lie inside the root (the property the reader promises).
#include <cstdlib>
#include <filesystem>
#include <string>

#include "csrc/core/error.h"
#include "datasets/readers/image_list.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hashlab::data;
  static const std::string root = [] {
    const char* r = std::getenv("HASHLAB_FUZZ_ROOT");
    return std::string(r ? r : "/tmp/hashlab_fuzz_root");
  }();
  static const std::string canon = std::filesystem::weakly_canonical(root).string();
  try {
    ImageList l = parse_image_list(data, size, "fuzz.txt", root, int64_t{1} << 24,
                                   fuzz::kFuzzMaxBytes);
    fuzz::check_array(l.labels);
    if (static_cast<int64_t>(l.paths.size()) != l.labels.shape[0]) std::abort();
    for (const auto& p : l.paths)
      if (p.compare(0, canon.size(), canon) != 0 ||
          (p.size() > canon.size() && p[canon.size()] != '/')) {
        std::fprintf(stderr, "path escaped the root: %s\n", p.c_str());
        std::abort();
      }
  } catch (const hashlab::Error&) {
  }
  return 0;
}
