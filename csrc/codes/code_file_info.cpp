#include "csrc/codes/code_file_info.h"

namespace hashlab::codes {

nlohmann::json to_json(const CodeFileInfo& i) {
  nlohmann::json j = {{"kind", i.kind == CodeKind::binary ? "binary" : "pq"},
                      {"version", i.version}, {"nbits", i.nbits}, {"count", i.count},
                      {"payload_bytes", i.payload_bytes}, {"crc32", i.crc32}};
  if (i.kind == CodeKind::pq) j["M"] = i.M, j["K"] = i.K, j["dsub"] = i.dsub;
  return j;
}

}  // namespace hashlab::codes
