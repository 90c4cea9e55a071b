// What the report's reader (report_reader.cpp) and renderer
// (report_render.cpp, report_page.cpp) share: typed reads of a record's
// fields and the thinning of a curve. Internal to the report; callers include
// app/report.h.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace hashlab::report::detail {

// Typed reads of a record's fields. Records come from a file anyone may have
// edited: a field of another type is "missing", never an exception.
inline std::optional<double> number_at(const nlohmann::json& j, const std::string& key) {
  if (!j.is_object()) return std::nullopt;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

inline std::string string_at(const nlohmann::json& j, const std::string& key,
                             const std::string& def = "") {
  if (!j.is_object()) return def;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : def;
}

inline int64_t integer_at(const nlohmann::json& j, const std::string& key, int64_t def = 0) {
  if (!j.is_object()) return def;
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : def;
}

// Thins a curve to at most `max` points, evenly, keeping the last.
inline std::vector<std::pair<double, double>> thin(std::vector<std::pair<double, double>> pts,
                                                   int max) {
  if (max <= 0 || static_cast<int64_t>(pts.size()) <= max) return pts;
  std::vector<std::pair<double, double>> out;
  const double stride = double(pts.size() - 1) / double(max - 1);
  for (int i = 0; i < max; ++i) out.push_back(pts[static_cast<size_t>(std::llround(i * stride))]);
  return out;
}

}  // namespace hashlab::report::detail
