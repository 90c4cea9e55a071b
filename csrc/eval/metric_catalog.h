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
//
// A curve (kind curve) carries its chart: the report draws every curve the
// catalogue declares from that alone, so a new curve, or a new family of
// curves such as SiGAH's R-n, is its line below and no edit to the report.
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

// How the report draws a curve ({"N": value, ...}): an exact key is one
// chart, one series per run (a comparison page overlays the runs); a family
// one chart per run, one series per member.
struct CurveChart {
  std::string title;   // the chart's title; "" for the metric's title
  std::string x;       // the x axis: what the curve's keys ("N") count
  bool x_log = false;  // a logarithmic x axis
  std::string y;       // the y axis
  std::string series;  // the label of a run's series; of a member's, with the
                       // family's placeholders ("R-<n>": "R-100" for sigah_r100)
};

struct MetricInfo {
  std::string key;    // exact, or a family with <placeholders>
  std::string title;  // for tables and charts
  MetricKind kind = MetricKind::scalar;
  bool headline = false;  // a column of the comparison tables and the summary line
  std::optional<Protocol> protocol;  // the protocol that reports it (none: both)
  CurveChart chart = {};  // kind curve only

  bool is_family() const { return key.find('<') != std::string::npos; }
};

// Every metric, in reading order (headline figures first within each protocol).
const std::vector<MetricInfo>& metric_catalog();
// The declaration of result key `key` (an exact key or a family member);
// null when it is not a metric (e.g. "method", "run_dir").
const MetricInfo* find_metric(const std::string& key);
// The numbers a family member carries ("m_recall_k10_K1000" -> {10, 1000});
// empty for an exact key or another family.
std::vector<long long> family_numbers(const MetricInfo& m, const std::string& key);
// `text` with each placeholder of family `m` replaced by the number member
// `key` carries there (m "m_recall_k<k>_K<K>", key "m_recall_k10_K1000",
// text "K=<K>, k=<k>" -> "K=1000, k=10"); a placeholder the family does not
// have, or every one when `key` is not a member, stays as written.
std::string member_text(const MetricInfo& m, const std::string& key, const std::string& text);

}  // namespace hashlab::eval
