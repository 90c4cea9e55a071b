// Product quantization against brute force: decode + Euclidean distances,
// std::sort rankings, and the scalar scan as the reference of the SIMD scan.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "csrc/core/error.h"
#include "csrc/search/pq.h"

namespace hashlab::search {
namespace {

codes::PQCodes random_codebooks(int M, int K, int dsub, uint64_t seed) {
  torch::manual_seed(seed);
  codes::PQCodes pq;
  pq.M = M;
  pq.K = K;
  pq.dsub = dsub;
  pq.codebooks = torch::randn({M, K, dsub});
  return pq;
}

torch::Tensor random_ids(int64_t n, int M, int K) {
  return torch::randint(0, K, {n, M}, torch::kInt).to(torch::kUInt8);
}

// (distance, index) order of one row, by std::sort.
std::vector<int64_t> sorted_order(const torch::Tensor& row) {
  auto a = row.accessor<float, 1>();
  std::vector<int64_t> o(row.size(0));
  std::iota(o.begin(), o.end(), 0);
  std::sort(o.begin(), o.end(), [&](int64_t x, int64_t y) {
    return a[x] != a[y] ? a[x] < a[y] : x < y;
  });
  return o;
}

void expect_topk_matches_sort(const PQTopK& got, const torch::Tensor& dist, int64_t k) {
  ASSERT_EQ(got.indices.sizes(), (std::vector<int64_t>{dist.size(0), k}));
  for (int64_t i = 0; i < dist.size(0); ++i) {
    auto o = sorted_order(dist[i]);
    for (int64_t t = 0; t < k; ++t) {
      ASSERT_EQ(got.indices[i][t].item<int64_t>(), o[t]) << "query " << i << " rank " << t;
      ASSERT_EQ(got.distances[i][t].item<float>(), dist[i][o[t]].item<float>());
    }
  }
}

TEST(PQ, EncodePicksNearestCodewordAndDecodeConcatenates) {
  auto pq = random_codebooks(4, 37, 3, 1);
  auto X = torch::randn({200, 12});
  auto ids = pq_encode(pq, X);
  ASSERT_EQ(ids.sizes(), (std::vector<int64_t>{200, 4}));
  for (int64_t i = 0; i < 200; ++i)
    for (int m = 0; m < 4; ++m) {
      auto sub = X[i].slice(0, 3 * m, 3 * m + 3);
      auto d = (pq.codebooks[m] - sub).pow(2).sum(1);
      const float best = d.min().item<float>();
      EXPECT_LE(d[ids[i][m].item<uint8_t>()].item<float>(), best + 1e-5f);
    }
  auto dec = pq_decode(pq, ids);
  for (int m = 0; m < 4; ++m)
    EXPECT_TRUE(torch::equal(dec.slice(1, 3 * m, 3 * m + 3),
                             pq.codebooks[m].index_select(0, ids.select(1, m).to(torch::kLong))));
}

TEST(PQ, AdcAndSdcDistancesEqualDecodedEuclidean) {
  auto pq = random_codebooks(5, 20, 4, 2);
  auto q = torch::randn({7, 20});
  auto qids = random_ids(7, 5, 20), db = random_ids(90, 5, 20);
  auto dec_db = pq_decode(pq, db), dec_q = pq_decode(pq, qids);
  auto adc = pq_distances_adc(pq, q, db);
  auto sdc = pq_distances_sdc(pq, qids, db);
  for (int64_t i = 0; i < 7; ++i)
    for (int64_t j = 0; j < 90; ++j) {
      const float ref_adc = (q[i] - dec_db[j]).pow(2).sum().item<float>();
      const float ref_sdc = (dec_q[i] - dec_db[j]).pow(2).sum().item<float>();
      EXPECT_NEAR(adc[i][j].item<float>(), ref_adc, 1e-4f * (1 + ref_adc));
      EXPECT_NEAR(sdc[i][j].item<float>(), ref_sdc, 1e-4f * (1 + ref_sdc));
    }
  auto tables = pq_sdc_tables(pq);
  EXPECT_TRUE(torch::allclose(tables, tables.transpose(1, 2)));
  EXPECT_EQ(tables.diagonal(0, 1, 2).abs().max().item<float>(), 0.0f);
}

struct SearchCase {
  int M, K, dsub;
  int64_t nq, n, k;
};

class PQSearch : public ::testing::TestWithParam<SearchCase> {};

TEST_P(PQSearch, TopKEqualsSortedBruteForceOnBothKernels) {
  const auto c = GetParam();
  auto pq = random_codebooks(c.M, c.K, c.dsub, uint64_t(c.M * 1000 + c.K));
  // Clustered queries near database points give tight k-th distances (the
  // bound prunes a lot); plain Gaussian queries give loose ones.
  auto db = random_ids(c.n, c.M, c.K);
  auto near = pq_decode(pq, db.slice(0, 0, c.nq / 2)) + 0.05 * torch::randn({c.nq / 2, c.M * c.dsub});
  auto q = torch::cat({near, torch::randn({c.nq - c.nq / 2, c.M * c.dsub})});
  auto tables = pq_adc_tables(pq, q);
  auto dist = pq_distances_adc(pq, q, db);
  PQScanDatabase scan(db, c.K);
  expect_topk_matches_sort(pq_search_tables(tables, scan, c.k, 2, /*use_simd=*/false), dist, c.k);
  expect_topk_matches_sort(pq_search_tables(tables, scan, c.k, 2, /*use_simd=*/true), dist, c.k);
  expect_topk_matches_sort(pq_search_adc(pq, q, db, c.k, 1), dist, c.k);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, PQSearch,
    ::testing::Values(SearchCase{16, 256, 2, 12, 20000, 10},   // the benchmark's shape, smaller
                      SearchCase{8, 100, 3, 9, 5001, 50},       // K < 256, n not a multiple of 64
                      SearchCase{3, 16, 2, 5, 130, 130},        // k = n
                      SearchCase{2, 2, 1, 6, 3000, 40},         // 4 distinct codes: heavy ties
                      SearchCase{70, 256, 1, 4, 700, 5}));      // M > 64: large bound tables

TEST(PQSearch, SdcTopKAndRankAll) {
  auto pq = random_codebooks(4, 8, 2, 3);  // few codes: many exactly tied distances
  auto qids = random_ids(10, 4, 8), db = random_ids(777, 4, 8);
  auto dist = pq_distances_sdc(pq, qids, db);
  expect_topk_matches_sort(pq_search_sdc(pq, qids, db, 33, 2), dist, 33);
  auto ranked = pq_rank_all(pq_sdc_query_tables(pq_sdc_tables(pq), qids), db, 2);
  ASSERT_EQ(ranked.sizes(), (std::vector<int64_t>{10, 777}));
  for (int64_t i = 0; i < 10; ++i) {
    auto o = sorted_order(dist[i]);
    for (int64_t j = 0; j < 777; ++j) ASSERT_EQ(ranked[i][j].item<int64_t>(), o[j]);
  }
}

TEST(PQ, TrainCodesTrainingDataWithItsOwnIds) {
  torch::manual_seed(4);
  auto X = torch::randn({600, 16});
  auto pq = pq_train(X, 4, 32, 10, 7);
  EXPECT_EQ(pq.codebooks.sizes(), (std::vector<int64_t>{4, 32, 4}));
  auto ids = pq_encode(pq, X);
  // Same assignments up to float ties between equally near codewords.
  EXPECT_GE(ids.eq(pq.ids).to(torch::kFloat).mean().item<float>(), 0.99f);
  // Quantization beats a random codebook by far.
  auto err = (pq_decode(pq, ids) - X).pow(2).sum(1).mean().item<float>();
  auto rnd = random_codebooks(4, 32, 4, 5);
  auto err_rnd = (pq_decode(rnd, pq_encode(rnd, X)) - X).pow(2).sum(1).mean().item<float>();
  EXPECT_LT(err, 0.7f * err_rnd);
  // Seeded: training twice gives the same codebooks.
  EXPECT_TRUE(torch::equal(pq_train(X, 4, 32, 10, 7).codebooks, pq.codebooks));
}

TEST(PQ, RejectsBadInput) {
  auto X = torch::randn({100, 10});
  EXPECT_THROW(pq_train(X, 3, 16), hashlab::Error);    // 10 % 3 != 0
  EXPECT_THROW(pq_train(X, 2, 300), hashlab::Error);   // K > 256
  EXPECT_THROW(pq_train(X, 2, 101), hashlab::Error);   // K > N
  auto pq = random_codebooks(2, 4, 5, 6);
  EXPECT_THROW(PQScanDatabase(torch::full({3, 2}, 7, torch::kUInt8), 4), hashlab::Error);
  EXPECT_THROW(pq_search_adc(pq, torch::randn({2, 10}), random_ids(5, 2, 4), 6), c10::Error);
}

}  // namespace
}  // namespace hashlab::search
