// The top-level evaluate_* functions (Hamming ranking from csrc/search, query
// blocking) against the metric classes fed with a ranking the test builds
// itself from plainly computed popcount distances.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "csrc/eval/evaluate_pq.h"
#include "csrc/eval/metrics.h"
#include "csrc/search/pq.h"

namespace hashlab::eval {
namespace {

torch::Tensor random_codes(int64_t n, int nbits) {
  auto codes = torch::randint(0, 256, {n, (nbits + 7) / 8}, torch::kInt).to(torch::kUInt8);
  if (nbits % 8) {  // bits past nbits must be zero
    codes.select(1, codes.size(1) - 1).bitwise_and_(int((1 << (nbits % 8)) - 1));
  }
  return codes;
}

// Ranking by (popcount distance, index), computed byte by byte.
RankingBlock plain_ranking(const torch::Tensor& q, const torch::Tensor& db, int nbits) {
  const int64_t nq = q.size(0), n = db.size(0), bytes = q.size(1);
  auto idx = torch::empty({nq, n}, torch::kLong);
  auto counts = torch::zeros({nq, nbits + 1}, torch::kLong);
  auto qa = q.accessor<uint8_t, 2>();
  auto da = db.accessor<uint8_t, 2>();
  for (int64_t i = 0; i < nq; ++i) {
    std::vector<int> dist(n);
    for (int64_t j = 0; j < n; ++j) {
      int d = 0;
      for (int64_t t = 0; t < bytes; ++t) d += __builtin_popcount(unsigned(qa[i][t] ^ da[j][t]));
      dist[j] = d;
      counts[i][d] += 1;
    }
    std::vector<int64_t> o(n);
    std::iota(o.begin(), o.end(), 0);
    std::stable_sort(o.begin(), o.end(), [&](int64_t a, int64_t b) { return dist[a] < dist[b]; });
    for (int64_t j = 0; j < n; ++j) idx[i][j] = o[j];
  }
  return {idx, counts};
}

void expect_same_json(const nlohmann::json& got, const nlohmann::json& want,
                      const std::string& where = "") {
  ASSERT_EQ(got.type(), want.type()) << where;
  if (want.is_object()) {
    for (auto it = want.begin(); it != want.end(); ++it) {
      ASSERT_TRUE(got.contains(it.key())) << where << "." << it.key();
      expect_same_json(got[it.key()], *it, where + "." + it.key());
    }
  } else if (want.is_array()) {
    ASSERT_EQ(got.size(), want.size()) << where;
    for (size_t i = 0; i < want.size(); ++i)
      expect_same_json(got[i], want[i], where + "[" + std::to_string(i) + "]");
  } else if (want.is_number_float()) {
    EXPECT_NEAR(got.get<double>(), want.get<double>(), 1e-12) << where;
  } else {
    EXPECT_EQ(got, want) << where;
  }
}

class EvaluateHamming : public ::testing::TestWithParam<int> {};

TEST_P(EvaluateHamming, MatchesMetricsOnPlainRanking) {
  const int nbits = GetParam();
  torch::manual_seed(nbits);
  const int64_t nq = 23, n = 301;
  auto q = random_codes(nq, nbits), db = random_codes(n, nbits);
  auto ql = torch::randint(0, 4, {nq}, torch::kLong), dl = torch::randint(0, 4, {n}, torch::kLong);
  EvalOptions o;
  o.map_at = {10, 1000};
  o.radius = {0, 2, 3};
  o.pn = {5, 50};
  o.block_bytes = 5 * n * 7;  // blocks of 7 queries: exercises the blocking
  auto got = evaluate_hamming(q, db, nbits, ql, dl, o);

  LabelMetrics want(o, n, nbits);
  want.add(plain_ranking(q, db, nbits), Relevance::from_labels(ql, dl).block(0, nq));
  auto want_json = want.result();
  want_json["bits"] = nbits;
  expect_same_json(got, want_json);
  for (const char* key : {"bits", "map_all", "map_all_tie_aware", "map_10", "map_1000", "p_h2",
                          "r_h2", "p_at_n", "r_at_n", "pr_curve", "num_queries", "num_database"})
    EXPECT_TRUE(got.contains(key)) << key;
}

INSTANTIATE_TEST_SUITE_P(Bits, EvaluateHamming, ::testing::Values(3, 8, 13, 64, 72));

TEST(EvaluateHamming, MultiLabelAndMismatchedInputs) {
  torch::manual_seed(5);
  const int nbits = 16;
  auto q = random_codes(11, nbits), db = random_codes(90, nbits);
  auto ql = torch::randint(0, 2, {11, 5}, torch::kInt).to(torch::kUInt8);
  auto dl = torch::randint(0, 2, {90, 5}, torch::kInt).to(torch::kUInt8);
  EvalOptions o;
  auto got = evaluate_hamming(q, db, nbits, ql, dl, o);
  LabelMetrics want(o, 90, nbits);
  want.add(plain_ranking(q, db, nbits), Relevance::from_labels(ql, dl).block(0, 11));
  expect_same_json(got, want.result());
  EXPECT_THROW(evaluate_hamming(q, db, nbits, ql.slice(0, 0, 5), dl, o), hashlab::Error);
  EXPECT_THROW(evaluate_hamming(q, db, nbits, ql, dl.select(1, 0), o), hashlab::Error);
}

TEST(EvaluateEuclidean, MatchesMetricsOnPlainRanking) {
  torch::manual_seed(9);
  const int nbits = 12;
  const int64_t nq = 13, n = 400;
  auto qf = torch::randn({nq, 6}), dbf = torch::randn({n, 6});
  auto q = random_codes(nq, nbits), db = random_codes(n, nbits);
  EvalOptions o;
  o.recall_k = 20;
  o.sigah_gt = 50;
  o.m_recall_max = 100;
  o.block_bytes = 5 * n * 4;
  auto got = evaluate_euclidean(q, db, nbits, qf, dbf, o);
  EuclideanMetrics want(o, n, euclidean_knn(qf, dbf, 1000 > n ? n : 1000));
  want.add(0, plain_ranking(q, db, nbits));
  auto want_json = want.result();
  want_json["bits"] = nbits;
  expect_same_json(got, want_json);
  EXPECT_GT(got["m_recall"].get<double>(), 0.0);
}

// Expects `stmt` to throw an error whose message contains `needle`.
#define EXPECT_THROW_WHAT(stmt, needle)                                              \
  try {                                                                              \
    stmt;                                                                            \
    ADD_FAILURE() << "expected an error containing '" << (needle) << "'";            \
  } catch (const std::exception& e) {                                                \
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();    \
  }

TEST(EvaluateEuclidean, GivenTrueNeighborsReplaceTheComputedOnes) {
  torch::manual_seed(10);
  const int nbits = 12;
  const int64_t nq = 9, n = 300;
  auto qf = torch::randn({nq, 5}), dbf = torch::randn({n, 5});
  auto q = random_codes(nq, nbits), db = random_codes(n, nbits);
  EvalOptions o;
  o.recall_k = 20;
  o.sigah_gt = 40;
  o.sigah_curves = {1, 10};
  o.m_recall_max = 100;
  auto computed = evaluate_euclidean(q, db, nbits, qf, dbf, o);
  auto gt = euclidean_knn(qf, dbf, 40);
  // A benchmark's file: no features needed, the same metrics.
  expect_same_json(evaluate_euclidean(q, db, nbits, torch::Tensor(), torch::Tensor(), o, gt),
                   computed);
  // Other neighbours, other metrics: the given ones are used.
  auto other = evaluate_euclidean(q, db, nbits, {}, {}, o, gt.roll(1, 0));
  EXPECT_NE(other["sigah_map"].get<double>(), computed["sigah_map"].get<double>());
  // An option needing more neighbours than given names itself.
  o.sigah_gt = 41;
  EXPECT_THROW_WHAT(evaluate_euclidean(q, db, nbits, {}, {}, o, gt), "eval.sigah_gt = 41");
  o.sigah_gt = 40;
  EXPECT_THROW_WHAT(evaluate_euclidean(q, db, nbits, {}, {}, o, gt.slice(0, 0, 5)), "9 queries");
  EXPECT_THROW_WHAT(evaluate_euclidean(q, db, nbits, {}, {}, o, gt + 300), "database has 300");
}

}  // namespace
}  // namespace hashlab::eval

namespace hashlab::eval {
namespace {

TEST(EvaluatePQ, MatchesMetricsOnSortedPQDistances) {
  torch::manual_seed(21);
  codes::PQCodes pq;
  pq.M = 3;
  pq.K = 6;  // few codes: many tied distances, broken by index
  pq.dsub = 2;
  pq.codebooks = torch::randn({3, 6, 2});
  const int64_t nq = 15, n = 250;
  auto qids = torch::randint(0, 6, {nq, 3}, torch::kInt).to(torch::kUInt8);
  auto db = torch::randint(0, 6, {n, 3}, torch::kInt).to(torch::kUInt8);
  auto qf = torch::randn({nq, 6});
  auto ql = torch::randint(0, 3, {nq}, torch::kLong), dl = torch::randint(0, 3, {n}, torch::kLong);
  EvalOptions o;
  o.map_at = {20};
  o.pn = {10, 100};
  o.block_bytes = 13 * n * 4;
  for (const PQDistance mode : {PQDistance::sdc, PQDistance::adc}) {
    auto got = evaluate_pq(pq, mode == PQDistance::sdc ? qids : qf, db, ql, dl, mode, o);
    // Reference ranking: the plain per-pair sums of decoded distances, std::stable_sort.
    auto dist = mode == PQDistance::sdc ? search::pq_distances_sdc(pq, qids, db)
                              : search::pq_distances_adc(pq, qf, db);
    auto idx = torch::empty({nq, n}, torch::kLong);
    for (int64_t i = 0; i < nq; ++i) {
      std::vector<int64_t> o2(n);
      std::iota(o2.begin(), o2.end(), 0);
      auto row = dist[i].contiguous();
      auto a = row.accessor<float, 1>();
      std::stable_sort(o2.begin(), o2.end(), [&](int64_t x, int64_t y) { return a[x] < a[y]; });
      for (int64_t j = 0; j < n; ++j) idx[i][j] = o2[j];
    }
    LabelMetrics want(o, n, -1);
    want.add({idx, {}}, Relevance::from_labels(ql, dl).block(0, nq));
    expect_same_json(got, want.result());
    EXPECT_EQ(got["pq_mode"], pq_distance_name(mode));
    EXPECT_EQ(got["bits"].get<int>(), 9);
    EXPECT_FALSE(got.contains("map_all_tie_aware"));
  }
}

}  // namespace
}  // namespace hashlab::eval
