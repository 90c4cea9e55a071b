// hamming_topk / hamming_radius / hamming_rank_all / hamming_distances against
// a brute-force bit-by-bit reference, on random codes with heavy ties, for
// every CPU kernel this machine can run.
#include <algorithm>
#include <random>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "tests/util/codes_util.h"

#include "csrc/core/error.h"
#include "csrc/search/hamming.h"

namespace hs = hashlab::search;

namespace {

using hashlab::testing::random_codes;
using hashlab::testing::ref_distance;
using hashlab::testing::ref_ranking;

class HammingKernels : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { hs::set_cpu_kernel(GetParam()); }
  void TearDown() override { hs::set_cpu_kernel("auto"); }
};

TEST_P(HammingKernels, TopKRadiusRankAllDistancesMatchBruteForce) {
  ASSERT_STREQ(hs::cpu_kernel_name(), GetParam().c_str());
  const std::vector<int> bit_lengths = {8, 12, 64, 96, 128, 200, 256};
  uint64_t seed = 1;
  for (int nbits : bit_lengths) {
    // 301 database codes: not a multiple of the 8-code block.
    for (int distinct : {0, 12}) {
      SCOPED_TRACE(::testing::Message() << "nbits " << nbits << " distinct " << distinct);
      torch::manual_seed(seed);
      auto db = random_codes(301, nbits, seed++, distinct);
      auto q = random_codes(37, nbits, seed++, distinct);
      const auto ref = ref_ranking(q, db, nbits);

      auto dist_t = hs::hamming_distances(q, db, nbits, 2);
      ASSERT_EQ(dist_t.sizes(), (std::vector<int64_t>{37, 301}));
      auto dist = dist_t.accessor<int32_t, 2>();
      for (int64_t i = 0; i < q.size(0); ++i)
        for (auto [d, j] : ref[i]) ASSERT_EQ(dist[i][j], d);

      for (int64_t k : {int64_t{1}, int64_t{7}, int64_t{100}, db.size(0)}) {
        for (int threads : {1, 2}) {
          auto r = hs::hamming_topk(q, db, nbits, k, threads);
          ASSERT_EQ(r.distances.sizes(), (std::vector<int64_t>{37, k}));
          ASSERT_EQ(r.indices.scalar_type(), torch::kInt64);
          auto rd = r.distances.accessor<int32_t, 2>();
          auto ri = r.indices.accessor<int64_t, 2>();
          for (int64_t i = 0; i < q.size(0); ++i)
            for (int64_t j = 0; j < k; ++j) {
              ASSERT_EQ(rd[i][j], ref[i][j].first) << "k " << k << " q " << i;
              ASSERT_EQ(ri[i][j], ref[i][j].second) << "k " << k << " q " << i;
            }
        }
      }

      for (int radius : {0, nbits / 4, nbits / 2, nbits}) {
        auto r = hs::hamming_radius(q, db, nbits, radius, 2);
        auto off = r.offsets.accessor<int64_t, 1>();
        auto rd = r.distances.accessor<int32_t, 1>();
        auto ri = r.indices.accessor<int64_t, 1>();
        ASSERT_EQ(off[0], 0);
        for (int64_t i = 0; i < q.size(0); ++i) {
          std::vector<std::pair<int, int64_t>> want;
          for (auto p : ref[i])
            if (p.first <= radius) want.push_back(p);
          const int64_t b = off[i], e = off[i + 1];
          ASSERT_EQ(e - b, static_cast<int64_t>(want.size())) << "radius " << radius;
          for (int64_t j = b; j < e; ++j) {
            ASSERT_EQ(rd[j], want[j - b].first);
            ASSERT_EQ(ri[j], want[j - b].second);
          }
        }
      }

      auto all = hs::hamming_rank_all(q, db, nbits, 2);
      ASSERT_EQ(all.indices.scalar_type(), torch::kInt32);
      ASSERT_EQ(all.counts.sizes(), (std::vector<int64_t>{37, nbits + 1}));
      auto ac = all.counts.accessor<int64_t, 2>();
      auto ai = all.indices.accessor<int32_t, 2>();
      for (int64_t i = 0; i < q.size(0); ++i) {
        std::vector<int64_t> counts(nbits + 1, 0);
        for (auto [d, j] : ref[i]) ++counts[d];
        for (int d = 0; d <= nbits; ++d) ASSERT_EQ(ac[i][d], counts[d]);
        for (int64_t j = 0; j < db.size(0); ++j) ASSERT_EQ(ai[i][j], ref[i][j].second);
      }
    }
  }
}

// Large enough that the database is split into parts across threads and
// walked in several cache chunks, with k spanning chunk boundaries.
TEST_P(HammingKernels, TopKSplitsDatabaseAcrossThreadsExactly) {
  for (int nbits : {64, 130}) {
    torch::manual_seed(nbits);
    auto db = random_codes(40000, nbits, 7, 300);  // heavy ties
    auto q = random_codes(3, nbits, 8);
    const auto ref = ref_ranking(q, db, nbits);
    for (int64_t k : {int64_t{1}, int64_t{1000}, int64_t{40000}}) {
      auto r = hs::hamming_topk(q, db, nbits, k, 2);
      auto d = r.distances.accessor<int32_t, 2>();
      auto ix = r.indices.accessor<int64_t, 2>();
      for (int64_t i = 0; i < q.size(0); ++i)
        for (int64_t j = 0; j < k; ++j) {
          ASSERT_EQ(d[i][j], ref[i][j].first) << "nbits " << nbits << " k " << k;
          ASSERT_EQ(ix[i][j], ref[i][j].second) << "nbits " << nbits << " k " << k;
        }
    }
  }
}

// Big enough (n / k >= 1100, k >= 64) that a top-k scan starts from
// thresholds sampled from every 64th block. Query 0 is planted as an exact
// copy in 50 of the sampled blocks only: its sample then says "distance 0"
// while the database has fewer than k codes there, so it must be scanned
// again from the full threshold. The reference is the distance matrix
// (checked against brute force above) sorted by (distance, index).
TEST_P(HammingKernels, TopKFromSampledThresholdsIsExactEvenWhenTheSampleMisleads) {
  for (int nbits : {64, 130, 256}) {
    auto db = random_codes(200003, nbits, nbits, nbits == 130 ? 2000 : 0);
    for (int64_t nq : {3, 130}) {
      auto q = random_codes(nq, nbits, nbits + nq);
      for (int j = 0; j < 50; ++j) db[j * 64 * 8 + 3].copy_(q[0]);
      auto dist = hs::hamming_distances(q, db, nbits, 2);
      for (int threads : {1, 2}) {
        SCOPED_TRACE(::testing::Message() << "nbits " << nbits << " nq " << nq << " threads " << threads);
        auto r = hs::hamming_topk(q, db, nbits, 100, threads);
        auto rd = r.distances.accessor<int32_t, 2>();
        auto ri = r.indices.accessor<int64_t, 2>();
        auto da = dist.accessor<int32_t, 2>();
        for (int64_t i = 0; i < nq; ++i) {
          std::vector<std::pair<int, int64_t>> want;
          for (int64_t j = 0; j < db.size(0); ++j) want.emplace_back(da[i][j], j);
          std::partial_sort(want.begin(), want.begin() + 100, want.end());
          for (int64_t j = 0; j < 100; ++j) {
            ASSERT_EQ(rd[i][j], want[j].first) << "q " << i << " rank " << j;
            ASSERT_EQ(ri[i][j], want[j].second) << "q " << i << " rank " << j;
          }
        }
        ASSERT_EQ(rd[0][49], 0);
        ASSERT_GT(rd[0][50], 0);
      }
    }
  }
}

TEST_P(HammingKernels, LongCodesUpTo4096Bits) {
  for (int nbits : {1, 63, 65, 1000, 4096}) {
    auto db = random_codes(50, nbits, nbits);
    auto q = random_codes(4, nbits, nbits + 1);
    auto dist = hs::hamming_distances(q, db, nbits);
    auto r = hs::hamming_topk(q, db, nbits, 50);
    for (int64_t i = 0; i < 4; ++i) {
      for (int64_t j = 0; j < 50; ++j) ASSERT_EQ(dist[i][j].item<int>(), ref_distance(q, i, db, j, nbits));
      for (int64_t j = 1; j < 50; ++j) {
        const auto prev = std::make_tuple(r.distances[i][j - 1].item<int>(), r.indices[i][j - 1].item<int64_t>());
        const auto cur = std::make_tuple(r.distances[i][j].item<int>(), r.indices[i][j].item<int64_t>());
        ASSERT_LT(prev, cur);
      }
    }
  }
}

std::vector<std::string> kernels_here() { return hs::available_cpu_kernels(); }

INSTANTIATE_TEST_SUITE_P(AllCpuKernels, HammingKernels, ::testing::ValuesIn(kernels_here()),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(Hamming, PaddingBitsInLastByteAreIgnored) {
  auto db = random_codes(20, 12, 3);
  auto q = random_codes(2, 12, 4);
  auto dirty = db.clone();
  dirty.select(1, 1).bitwise_or_(0xF0);  // bits 12..15: past nbits
  EXPECT_TRUE(torch::equal(hs::hamming_distances(q, db, 12), hs::hamming_distances(q, dirty, 12)));
}

TEST(Hamming, RejectsBadInputs) {
  auto db = random_codes(10, 64, 1);
  auto q = random_codes(2, 64, 2);
  EXPECT_THROW(hs::hamming_topk(q, db, 64, 11), c10::Error);  // k > n_db
  EXPECT_THROW(hs::hamming_topk(q, db, 64, 0), c10::Error);
  EXPECT_THROW(hs::hamming_topk(q, db, 72, 1), c10::Error);  // 9 bytes needed
  EXPECT_THROW(hs::hamming_topk(q.to(torch::kInt32), db, 64, 1), c10::Error);
  EXPECT_THROW(hs::hamming_radius(q, db, 64, -1), c10::Error);
  EXPECT_THROW(hs::set_cpu_kernel("sse9"), hashlab::Error);
}

TEST(Hamming, EmptyQueryBatch) {
  auto db = random_codes(10, 32, 1);
  auto q = random_codes(0, 32, 2);
  auto r = hs::hamming_topk(q, db, 32, 3);
  EXPECT_EQ(r.indices.sizes(), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(hs::hamming_radius(q, db, 32, 5).offsets.sizes(), (std::vector<int64_t>{1}));
}

}  // namespace
