#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <torch/torch.h>

#include "csrc/codes/codes.h"
#include "csrc/eval/evaluate_codes.h"
#include "csrc/eval/metric_catalog.h"

using namespace hashlab;
using eval::find_metric;

TEST(MetricCatalog, FindsExactKeysAndFamilyMembers) {
  ASSERT_NE(find_metric("map_all"), nullptr);
  EXPECT_EQ(find_metric("map_all")->title, "mAP@all");
  EXPECT_TRUE(find_metric("map_all")->headline);
  EXPECT_EQ(find_metric("map_500")->key, "map_<N>");
  const eval::MetricInfo* g = find_metric("m_recall_k10_K1000");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->key, "m_recall_k<k>_K<K>");
  EXPECT_EQ(eval::family_numbers(*g, "m_recall_k10_K1000"), (std::vector<long long>{10, 1000}));
  EXPECT_EQ(find_metric("recall_at_7")->key, "recall_at_<i>");
  EXPECT_EQ(find_metric("sigah_r100")->kind, eval::MetricKind::curve);
  for (const char* not_metric : {"method", "run_dir", "map_", "map_x", "m_recall_k10_K",
                                 "recall_at_7x", "final"})
    EXPECT_EQ(find_metric(not_metric), nullptr) << not_metric;
  EXPECT_EQ(parse_protocol("euclidean"), Protocol::euclidean);
  EXPECT_FALSE(parse_protocol("Label").has_value());
}

// A family's placeholders filled in by name from a member's key, whatever
// their order in the text: the report labels a family's series this way.
TEST(MetricCatalog, FillsAFamilysPlaceholdersFromAMembersKey) {
  const eval::MetricInfo* g = find_metric("m_recall_k10_K1000");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(eval::member_text(*g, "m_recall_k10_K1000", "K=<K>, k=<k>"), "K=1000, k=10");
  EXPECT_EQ(eval::member_text(*g, "m_recall_k10_K1000", "<n> <k>"), "<n> 10");
  EXPECT_EQ(eval::member_text(*g, "map_all", "k=<k>"), "k=<k>");  // not a member
  const eval::MetricInfo* sigah = find_metric("sigah_r100");
  ASSERT_NE(sigah, nullptr);
  EXPECT_EQ(eval::member_text(*sigah, "sigah_r100", sigah->chart.series), "R-100");
}

// Every curve carries what its chart needs, so the report draws it from the
// catalogue alone: a new curve is one line there.
TEST(MetricCatalog, EveryCurveDeclaresItsChart) {
  for (const auto& m : eval::metric_catalog()) {
    if (m.kind != eval::MetricKind::curve) continue;
    EXPECT_FALSE(m.chart.x.empty()) << m.key;
    EXPECT_FALSE(m.chart.y.empty()) << m.key;
    EXPECT_FALSE(m.chart.series.empty()) << m.key;
    if (m.is_family())  // a series per member: each label names its member
      EXPECT_NE(m.chart.series.find('<'), std::string::npos) << m.key;
  }
}

// Every key an evaluation reports is declared, so the summary, the report
// and the CSV can render it: a metric added in metrics.cpp without its line in
// the catalogue fails here.
TEST(MetricCatalog, DeclaresEveryKeyBothProtocolsReport) {
  torch::manual_seed(0);
  auto feats_q = torch::randn({6, 5}), feats_db = torch::randn({40, 5});
  auto proj = torch::randn({5, 16});
  auto q = codes::Codes::binary({16, codes::pack_signs(feats_q.mm(proj))});
  auto db = codes::Codes::binary({16, codes::pack_signs(feats_db.mm(proj))});
  eval::EvalOptions o;
  o.map_at = {10};
  o.recall_k = 5;
  o.recall_at = {1, 10};
  o.m_recall_k = {1, 5};
  o.m_recall_K = {10, 20};
  o.sigah_gt = 5;
  o.sigah_curves = {5};
  auto label = eval::evaluate_codes(q, db, torch::randint(0, 3, {6}, torch::kLong),
                                    torch::randint(0, 3, {40}, torch::kLong), o);
  auto euclid = eval::evaluate_codes_euclidean(q, db, feats_q, feats_db, o);
  for (const auto* r : {&label, &euclid})
    for (auto it = r->begin(); it != r->end(); ++it)
      EXPECT_NE(find_metric(it.key()), nullptr) << "undeclared result key " << it.key();
  EXPECT_EQ(find_metric("map_10")->protocol, Protocol::label);
  EXPECT_TRUE(euclid.contains("m_recall_k5_K20"));
}
