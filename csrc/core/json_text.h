// JSON text for output. Every record, result and page hashlab writes can hold
// strings from the user (a run directory, a config name, a metric key), which
// need not be UTF-8; nlohmann's plain dump() throws type_error 316 on them,
// after the work is done. json_text() writes each invalid byte as U+FFFD
// instead, so the output is always valid JSON and writing it never fails.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace hashlab {

inline std::string json_text(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

}  // namespace hashlab
