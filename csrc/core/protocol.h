// What relevance means in an evaluation: shared labels (the label protocol)
// or the true Euclidean neighbours in the raw features (the Euclidean
// protocol). Read from data.protocol; the eval layer's metric catalogue says
// which protocol reports each metric.
#pragma once

#include <optional>
#include <string>

namespace hashlab {

enum class Protocol { label, euclidean };

// "label" / "euclidean": the spelling in configs and results.
inline const char* protocol_name(Protocol p) {
  return p == Protocol::label ? "label" : "euclidean";
}
// The protocol a config value names; nullopt if it names neither.
inline std::optional<Protocol> parse_protocol(const std::string& s) {
  if (s == "label") return Protocol::label;
  if (s == "euclidean") return Protocol::euclidean;
  return std::nullopt;
}

}  // namespace hashlab
