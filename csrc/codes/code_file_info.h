// A code file's header (code_file.h's CodeFileInfo) as JSON: kind ("binary"
// | "pq"), version, nbits, count, payload_bytes, crc32, and M, K, dsub for PQ.
// What `hashlab codes info` prints and Python's code_file_info returns.
#pragma once

#include <nlohmann/json.hpp>

#include "csrc/codes/code_file.h"

namespace hashlab::codes {

nlohmann::json to_json(const CodeFileInfo& info);

}  // namespace hashlab::codes
