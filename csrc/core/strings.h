// Small string helpers shared by commands and writers.
#pragma once

#include <string_view>

namespace hashlab {

// Whether `s` ends with `suffix` (file names by extension).
inline bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace hashlab
