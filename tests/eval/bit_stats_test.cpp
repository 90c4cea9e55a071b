#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "csrc/codes/code_file.h"
#include "csrc/codes/codes.h"
#include "csrc/core/error.h"
#include "csrc/eval/bit_stats.h"

using namespace hashlab;

namespace {
// Codes from rows of 0/1 bits (bit j of row i = rows[i][j]).
codes::BinaryCodes from_bits(const std::vector<std::vector<int>>& rows) {
  const int64_t n = static_cast<int64_t>(rows.size()), B = static_cast<int64_t>(rows[0].size());
  torch::Tensor real = torch::empty({n, B});
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < B; ++j) real[i][j] = rows[i][j] ? 1.0f : -1.0f;
  return {static_cast<int>(B), codes::pack_signs(real)};
}
}  // namespace

// Every number is exact for these codes: balanced bits of mean 0 make the
// covariance an integer over 4, and the variances 1.
TEST(BitStats, BalanceAndCorrelationOfKnownBits) {
  // bit 0 and 1 equal (+1), bit 2 their complement (-1), bit 3 constant,
  // bit 4 independent of the others (0).
  const auto c = from_bits({{1, 1, 0, 1, 1},  //
                            {1, 1, 0, 1, 0},
                            {0, 0, 1, 1, 1},
                            {0, 0, 1, 1, 0}});
  const eval::BitStats s = eval::bit_stats(c);
  EXPECT_EQ(s.nbits, 5);
  EXPECT_EQ(s.count, 4);
  EXPECT_EQ(s.sampled, 4);
  EXPECT_EQ(s.corr_bits, 5);
  EXPECT_EQ(s.ones, (std::vector<double>{0.5, 0.5, 0.5, 1.0, 0.5}));
  EXPECT_EQ(s.corr_at(0, 1), 1.0);
  EXPECT_EQ(s.corr_at(1, 0), 1.0);
  EXPECT_EQ(s.corr_at(0, 2), -1.0);
  EXPECT_EQ(s.corr_at(1, 2), -1.0);
  for (int j : {0, 1, 2}) EXPECT_EQ(s.corr_at(j, 4), 0.0) << j;
  for (int j : {0, 1, 2, 4}) EXPECT_EQ(s.corr_at(j, j), 1.0) << j;
  for (int j = 0; j < 5; ++j) {  // the constant bit correlates with nothing, itself included
    EXPECT_EQ(s.corr_at(3, j), 0.0) << j;
    EXPECT_EQ(s.corr_at(j, 3), 0.0) << j;
  }
  EXPECT_EQ(s.constant_bits, 1);
  // |corr| over the 10 pairs: three of 1, seven of 0.
  EXPECT_DOUBLE_EQ(s.mean_abs_corr, 0.3);
  EXPECT_EQ(s.max_abs_corr, 1.0);
  EXPECT_EQ(s.max_pair, (std::pair<int, int>{0, 1}));
}

TEST(BitStats, UnbalancedBitsAndTheirFractions) {
  const auto c = from_bits({{1, 0, 0}, {0, 0, 0}, {0, 0, 1}, {0, 0, 1}});
  const eval::BitStats s = eval::bit_stats(c);
  EXPECT_EQ(s.ones, (std::vector<double>{0.25, 0.0, 0.5}));
  EXPECT_EQ(s.constant_bits, 1);
  // Bit 0 (set once) against bit 2 (set twice, never with bit 0), as ±1
  // variables: cov = -1/2, variances 3/4 and 1, so corr = -1/sqrt(3).
  EXPECT_NEAR(s.corr_at(0, 2), -1.0 / std::sqrt(3.0), 1e-12);
  EXPECT_EQ(s.max_pair, (std::pair<int, int>{0, 2}));
}

// Beyond max_rows the codes are sampled evenly (every stride-th from the
// first), and the correlation covers the first max_corr_bits bits only.
TEST(BitStats, SamplesCodesAndBoundsTheCorrelation) {
  std::vector<std::vector<int>> rows;
  for (int i = 0; i < 10; ++i) rows.push_back({i % 3 == 0, i % 2, 1, i % 2});
  eval::BitStatsOptions o;
  o.max_rows = 4;  // stride ceil(10 / 4) = 3: rows 0, 3, 6, 9
  o.max_corr_bits = 2;
  const eval::BitStats s = eval::bit_stats(from_bits(rows), o);
  EXPECT_EQ(s.count, 10);
  EXPECT_EQ(s.sampled, 4);
  EXPECT_EQ(s.ones[0], 1.0);  // set in every sampled row (4 of all 10)
  EXPECT_EQ(s.ones[1], 0.5);  // rows 3 and 9
  EXPECT_EQ(s.ones.size(), 4u);
  EXPECT_EQ(s.corr_bits, 2);
  EXPECT_EQ(s.corr.size(), 4u);
  EXPECT_EQ(s.constant_bits, 2);  // bit 0 (in the sample) and bit 2
  EXPECT_EQ(s.corr_at(0, 0), 0.0);
  EXPECT_EQ(s.corr_at(1, 1), 1.0);
  EXPECT_EQ(s.mean_abs_corr, 0.0);  // the only pair holds a constant bit
}

TEST(BitStats, BadInputIsNamed) {
  try {
    eval::bit_stats(from_bits({{1, 0}}));
    FAIL() << "one code accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1 codes"), std::string::npos) << e.what();
  }
  codes::BinaryCodes wrong{9, torch::zeros({3, 1}, torch::kUInt8)};  // 9 bits need 2 bytes
  try {
    eval::bit_stats(wrong);
    FAIL() << "a short code accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("uint8 [N, 2] for 9 bits"), std::string::npos) << e.what();
  }
}
