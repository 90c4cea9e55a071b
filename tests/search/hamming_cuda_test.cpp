// The CUDA twin against the CPU reference, exactly (distances and indices),
// FAISS-style: random code lengths that are and are not multiples of 8/32/64,
// heavy ties, k from 1 to 5000. Skipped where no GPU is visible (or the build
// has no CUDA search).
#include <random>

#include <gtest/gtest.h>

#include "tests/util/codes_util.h"

#include "csrc/search/hamming.h"


namespace hs = hashlab::search;

namespace {



using hashlab::testing::random_codes;

const int kBitLengths[] = {8, 12, 32, 64, 96, 100, 128, 200, 256};

TEST(HammingCuda, TopKEqualsCpu_CUDA) {
  HL_REQUIRE_GPU();
  uint64_t seed = 11;
  for (int nbits : kBitLengths)
    for (int distinct : {0, 40}) {
      auto db = random_codes(6007, nbits, seed++, distinct);
      auto q = random_codes(53, nbits, seed++, distinct);
      for (int64_t k : {1, 10, 100, 1000, 5000}) {
        SCOPED_TRACE(::testing::Message() << "nbits " << nbits << " distinct " << distinct << " k " << k);
        auto cpu = hs::hamming_topk(q, db, nbits, k);
        auto gpu = hs::hamming_topk(q.cuda(), db.cuda(), nbits, k);
        ASSERT_TRUE(gpu.distances.is_cuda());
        ASSERT_TRUE(torch::equal(gpu.distances.cpu(), cpu.distances));
        ASSERT_TRUE(torch::equal(gpu.indices.cpu(), cpu.indices));
      }
    }
}

TEST(HammingCuda, TopKLargeDatabaseManyChunks_CUDA) {
  HL_REQUIRE_GPU();
  // > 8192 codes per chunk, so ties at the k-th distance straddle chunks.
  auto db = random_codes(100003, 64, 3, 500);
  auto q = random_codes(17, 64, 4);
  for (int64_t k : {1, 100, 5000, 100003}) {
    auto cpu = hs::hamming_topk(q, db, 64, k);
    auto gpu = hs::hamming_topk(q.cuda(), db.cuda(), 64, k);
    ASSERT_TRUE(torch::equal(gpu.distances.cpu(), cpu.distances)) << k;
    ASSERT_TRUE(torch::equal(gpu.indices.cpu(), cpu.indices)) << k;
  }
}

TEST(HammingCuda, RadiusRankAllDistancesEqualCpu_CUDA) {
  HL_REQUIRE_GPU();
  uint64_t seed = 101;
  for (int nbits : kBitLengths) {
    SCOPED_TRACE(::testing::Message() << "nbits " << nbits);
    auto db = random_codes(3001, nbits, seed++, 60);
    auto q = random_codes(29, nbits, seed++);
    EXPECT_TRUE(torch::equal(hs::hamming_distances(q.cuda(), db.cuda(), nbits).cpu(),
                             hs::hamming_distances(q, db, nbits)));
    for (int r : {0, nbits / 4, nbits / 2, nbits}) {
      auto cpu = hs::hamming_radius(q, db, nbits, r);
      auto gpu = hs::hamming_radius(q.cuda(), db.cuda(), nbits, r);
      ASSERT_TRUE(torch::equal(gpu.offsets.cpu(), cpu.offsets)) << r;
      ASSERT_TRUE(torch::equal(gpu.indices.cpu(), cpu.indices)) << r;
      ASSERT_TRUE(torch::equal(gpu.distances.cpu(), cpu.distances)) << r;
      // The result bound holds on both twins: exactly the count passes,
      // one fewer is refused.
      const int64_t n = cpu.indices.size(0);
      if (n > 0) {
        EXPECT_NO_THROW(hs::hamming_radius(q.cuda(), db.cuda(), nbits, r, 0, n)) << r;
        EXPECT_THROW(hs::hamming_radius(q.cuda(), db.cuda(), nbits, r, 0, n - 1),
                     hs::RadiusLimitExceeded) << r;
        EXPECT_THROW(hs::hamming_radius(q, db, nbits, r, 0, n - 1), hs::RadiusLimitExceeded) << r;
      }
    }
    auto cpu = hs::hamming_rank_all(q, db, nbits);
    auto gpu = hs::hamming_rank_all(q.cuda(), db.cuda(), nbits);
    ASSERT_TRUE(torch::equal(gpu.counts.cpu(), cpu.counts));
    ASSERT_TRUE(torch::equal(gpu.indices.cpu(), cpu.indices));
  }
}

TEST(HammingCuda, LongCodes_CUDA) {
  HL_REQUIRE_GPU();
  for (int nbits : {1, 31, 33, 1000, 4096}) {
    auto db = random_codes(2000, nbits, nbits, 100);
    auto q = random_codes(9, nbits, nbits + 7);
    auto cpu = hs::hamming_topk(q, db, nbits, 100);
    auto gpu = hs::hamming_topk(q.cuda(), db.cuda(), nbits, 100);
    ASSERT_TRUE(torch::equal(gpu.distances.cpu(), cpu.distances)) << nbits;
    ASSERT_TRUE(torch::equal(gpu.indices.cpu(), cpu.indices)) << nbits;
  }
}

}  // namespace
