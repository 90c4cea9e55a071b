// The bucketed top-k Selector behind the CPU search, driven directly with
// adversarial streams (distances trending down, so the threshold keeps
// falling and compaction runs many times) against a full sort.
#include <algorithm>
#include <random>

#include <gtest/gtest.h>

#include "csrc/search/hamming_kernels.h"

using hashlab::search::detail::Candidate;
using hashlab::search::detail::Selector;

namespace {

std::vector<Candidate> run(Selector& sel, const std::vector<int>& dist) {
  for (size_t i = 0; i < dist.size(); ++i)
    if (dist[i] < sel.threshold()) sel.push(dist[i], static_cast<int64_t>(i));
  return sel.finish();
}

TEST(HammingSelector, MatchesFullSortUnderFallingThreshold) {
  std::mt19937 rng(5);
  const int nbits = 64;
  for (int64_t k : {1, 3, 50, 700}) {
    for (int trial = 0; trial < 5; ++trial) {
      std::vector<int> dist(20000);
      for (size_t i = 0; i < dist.size(); ++i) {
        const int hi = std::max<int>(1, nbits - static_cast<int>(i * nbits / dist.size()));
        dist[i] = std::uniform_int_distribution<int>(0, hi)(rng) % (nbits + 1);
      }
      std::vector<std::pair<int, int64_t>> ref;
      for (size_t i = 0; i < dist.size(); ++i) ref.emplace_back(dist[i], i);
      std::sort(ref.begin(), ref.end());
      Selector sel;
      sel.reset(k, nbits + 1, nbits, static_cast<int64_t>(dist.size()));
      const auto got = run(sel, dist);
      ASSERT_EQ(static_cast<int64_t>(got.size()), k);
      for (int64_t j = 0; j < k; ++j) {
        ASSERT_EQ(got[j].distance, ref[j].first) << "k " << k << " rank " << j;
        ASSERT_EQ(got[j].index, ref[j].second) << "k " << k << " rank " << j;
      }
    }
  }
}

// Each distance level from nbits down to 0 arrives k times: every code is
// accepted (strictly better than the threshold), 65k pushes, so compaction
// runs even for small k.
TEST(HammingSelector, StaircaseForcesCompaction) {
  const int nbits = 64;
  for (int64_t k : {1, 5, 9}) {
    std::vector<int> dist;
    for (int d = nbits; d >= 0; --d)
      for (int64_t r = 0; r < k * 2; ++r) dist.push_back(d);
    Selector sel;
    sel.reset(k, nbits + 1, nbits, static_cast<int64_t>(dist.size()));
    const auto got = run(sel, dist);
    ASSERT_EQ(static_cast<int64_t>(got.size()), k);
    // The k codes at distance 0 are the last 2k entries' first k indices.
    const int64_t first_zero = static_cast<int64_t>(dist.size()) - 2 * k;
    for (int64_t j = 0; j < k; ++j) {
      EXPECT_EQ(got[j].distance, 0);
      EXPECT_EQ(got[j].index, first_zero + j);
    }
  }
}

TEST(HammingSelector, RadiusModeKeepsEverythingWithinAndDropsPadding) {
  Selector sel;
  sel.reset(Selector::kUnbounded, /*threshold=*/3, /*nbits=*/8, /*n_valid=*/6);
  const std::vector<int> dist = {5, 2, 0, 2, 3, 1, 0, 0};  // indices 6, 7 are padding
  const auto got = run(sel, dist);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].index, 2);
  EXPECT_EQ(got[1].index, 5);
  EXPECT_EQ(got[2].index, 1);
  EXPECT_EQ(got[3].index, 3);
}

}  // namespace
