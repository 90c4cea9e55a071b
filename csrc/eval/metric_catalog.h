// One declaration per metric of an evaluation result (the JSON that
// evaluate_codes / evaluate_codes_euclidean return, `hashlab eval` prints and
// metrics.jsonl records): its key, title, kind and whether it is a headline
// figure. The eval summary line, the report's tables, charts and CSV are
// rendered from here; a new metric is one line below (and the code that
// computes it in metrics.cpp).
//
// Keys are exact ("map_all") or a family with numbers in them
// ("map_<N>", "recall_at_<i>", "m_recall_k<k>_K<K>", "sigah_r<n>"), written
// with the placeholders in `key` and matched by find_metric().
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "csrc/core/protocol.h"

namespace hashlab::eval {

enum class MetricKind {
  scalar,    // a number
  curve,     // {"N": value, ...} (P@N, R@N, a SiGAH recall curve)
  pr_curve,  // {"radius": [...], "precision": [...], "recall": [...]}
  info,      // a count, a setting or a timing shown after the metrics
};

struct MetricInfo {
  std::string key;    // exact, or a family with <placeholders>
  std::string title;  // for tables and charts
  MetricKind kind = MetricKind::scalar;
  bool headline = false;  // a column of the comparison tables and the summary line
  std::optional<Protocol> protocol;  // the protocol that reports it (none: both)
};

// Every metric, in reading order (headline figures first within each protocol).
const std::vector<MetricInfo>& metric_catalog();
// The declaration of result key `key` (an exact key or a family member);
// null when it is not a metric (e.g. "method", "run_dir").
const MetricInfo* find_metric(const std::string& key);
// The numbers a family member carries ("m_recall_k10_K1000" -> {10, 1000});
// empty for an exact key or another family.
std::vector<long long> family_numbers(const MetricInfo& m, const std::string& key);

}  // namespace hashlab::eval
