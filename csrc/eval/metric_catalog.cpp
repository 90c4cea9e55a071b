#include "csrc/eval/metric_catalog.h"

#include <cctype>
#include <utility>

namespace hashlab::eval {

const std::vector<MetricInfo>& metric_catalog() {
  using K = MetricKind;
  constexpr auto L = Protocol::label;
  constexpr auto E = Protocol::euclidean;
  static const std::vector<MetricInfo> all = {
      // ---- label protocol (csrc/eval/metrics.h, LabelAccumulator)
      {"map_all", "mAP@all", K::scalar, true, L},
      {"map_all_tie_aware", "mAP@all (tie-aware)", K::scalar, false, L},
      {"map_1000", "mAP@1000", K::scalar, true, L},
      {"map_<N>", "mAP@<N>", K::scalar, false, L},
      {"p_h2", "P@H<=2", K::scalar, true, L},
      {"r_h2", "R@H<=2", K::scalar, false, L},
      {"p_at_n", "Precision@N", K::curve, false, L,
       {"", "N (items retrieved)", true, "precision", "P@N"}},
      {"r_at_n", "Recall@N", K::curve, false, L,
       {"", "N (items retrieved)", true, "recall", "R@N"}},
      {"pr_curve", "Precision-recall over Hamming radii", K::pr_curve, false, L},
      // ---- Euclidean protocol (EuclideanAccumulator)
      {"m_recall", "m-Recall", K::scalar, true, E},
      {"m_recall_k<k>_K<K>", "m-Recall k=<k> K=<K>", K::scalar, false, E},
      {"recall_at_<i>", "Recall@<i>", K::scalar, false, E},
      {"sigah_map", "SiGAH mAP", K::scalar, true, E},
      {"sigah_pre100", "Pre@100", K::scalar, true, E},
      {"sigah_r<n>", "SiGAH recall of the true top-<n>", K::curve, false, E,
       {"SiGAH recall curves: true top-n found among the first T", "T (items retrieved)", true,
        "recall", "R-<n>"}},
      // ---- what every result carries after the metrics
      {"recall_k", "true neighbours per query", K::info, false, E},
      {"m_recall_max", "m-Recall horizon", K::info, false, E},
      {"sigah_gt", "SiGAH ground truth per query", K::info, false, E},
      {"train_seconds", "train s", K::info, true, {}},
      {"session_seconds", "this session s", K::info, false, {}},
      {"encode_seconds", "encode s", K::info, false, {}},
      {"eval_seconds", "eval s", K::info, false, {}},
      {"step", "step", K::info, false, {}},
      {"num_queries", "queries", K::info, false, {}},
      {"num_database", "database", K::info, false, {}},
      {"bits", "bits", K::info, false, {}},
      {"pq_mode", "PQ distance", K::info, false, L},
  };
  return all;
}

namespace {
// Matches `key` against `pattern` ("a_<x>_b<y>": each placeholder one or more
// digits); the numbers, or nullopt.
std::optional<std::vector<long long>> match(const std::string& pattern, const std::string& key) {
  std::vector<long long> nums;
  size_t p = 0, k = 0;
  while (p < pattern.size()) {
    if (pattern[p] == '<') {
      const size_t close = pattern.find('>', p);
      if (close == std::string::npos) return std::nullopt;
      p = close + 1;
      const size_t start = k;
      while (k < key.size() && std::isdigit(static_cast<unsigned char>(key[k]))) ++k;
      if (k == start || k - start > 18) return std::nullopt;
      nums.push_back(std::stoll(key.substr(start, k - start)));
    } else {
      if (k >= key.size() || key[k] != pattern[p]) return std::nullopt;
      ++p;
      ++k;
    }
  }
  if (k != key.size()) return std::nullopt;
  return nums;
}
}  // namespace

const MetricInfo* find_metric(const std::string& key) {
  for (const auto& m : metric_catalog())
    if (m.key == key) return &m;
  for (const auto& m : metric_catalog())
    if (m.is_family() && match(m.key, key)) return &m;
  return nullptr;
}

std::vector<long long> family_numbers(const MetricInfo& m, const std::string& key) {
  auto nums = match(m.key, key);
  return nums ? *nums : std::vector<long long>{};
}

std::string member_text(const MetricInfo& m, const std::string& key, const std::string& text) {
  const auto nums = match(m.key, key);
  if (!nums) return text;
  // The placeholders of m.key in order, with the number of each.
  std::vector<std::pair<std::string, long long>> named;
  for (size_t p = m.key.find('<'); p != std::string::npos; p = m.key.find('<', p + 1)) {
    const size_t close = m.key.find('>', p);
    if (close == std::string::npos || named.size() >= nums->size()) break;
    named.emplace_back(m.key.substr(p, close - p + 1), (*nums)[named.size()]);
  }
  std::string out;
  for (size_t i = 0; i < text.size();) {
    bool filled = false;
    for (const auto& [name, number] : named)
      if (text.compare(i, name.size(), name) == 0) {
        out += std::to_string(number);
        i += name.size();
        filled = true;
        break;
      }
    if (!filled) out += text[i++];
  }
  return out;
}

}  // namespace hashlab::eval
