// Image lists in the HashNet / DeepHash format, one image per line:
//   <path> <label>                 single label (non-negative integer)
//   <path> <b_0> <b_1> ... <b_C-1> multi-hot, each b_j 0 or 1
// Every non-blank line must have the same number of fields. CRLF line ends
// and blank lines are accepted. Paths are relative to `root` (absolute paths
// must lie inside it too); after lexical normalisation and symlink resolution
// (std::filesystem::weakly_canonical) a path that leaves root is an error,
// so a list cannot make the loader open /etc/passwd or ../../secret.
// The image files themselves are not opened here (they are decoded lazily by
// the loader).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "datasets/readers/array.h"
#include "datasets/readers/bytes.h"

namespace hashlab::data {

struct ImageList {
  std::vector<std::string> paths;  // resolved, inside root
  Array labels;                    // i64 [N] single-label, or u8 [N, C] multi-hot
  bool multi_label = false;
  int64_t num_classes = 0;         // max label + 1, or C
};

// `max_label` bounds single labels (label must be < max_label).
ImageList parse_image_list(const uint8_t* data, size_t size, const std::string& name,
                           const std::string& root, int64_t max_label = int64_t{1} << 24,
                           uint64_t max_bytes = kDefaultMaxBytes);
ImageList read_image_list(const std::string& path, const std::string& root,
                          int64_t max_label = int64_t{1} << 24,
                          uint64_t max_bytes = kDefaultMaxBytes);

}  // namespace hashlab::data
