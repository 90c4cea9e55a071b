// Bit statistics of binary codes: how balanced each bit is and how
// correlated the bits are. A code spends its bits well when each bit is set
// for about half the items and the bits are pairwise uncorrelated (each
// carries information the others do not); a constant bit carries none.
//
// Bits are read as ±1 variables (+1 where set, csrc/codes/codes.h):
//   ones_j       = fraction of codes with bit j set = (mean_j + 1) / 2
//   corr_ij      = Pearson correlation of bits i and j over the codes
// The run report (app/report_reader.cpp) draws them for the database codes.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "csrc/codes/code_file.h"

namespace hashlab::eval {

struct BitStatsOptions {
  // At most this many codes, sampled evenly (every stride-th from the first),
  // whatever the count; <= 0: no limit but the bound on work (at most 2^25
  // unpacked bits, so at least 2 codes).
  int64_t max_rows = 200000;
  // The correlation matrix covers the first max_corr_bits bits: its size and
  // work grow with the square of the code length.
  int max_corr_bits = 256;
};

struct BitStats {
  int nbits = 0;
  int64_t count = 0;    // codes given
  int64_t sampled = 0;  // codes the statistics are computed on (count when not sampled)
  int corr_bits = 0;    // the correlation covers bits 0..corr_bits-1
  std::vector<double> ones;  // [nbits] fraction of the sampled codes with bit j set
  // [corr_bits x corr_bits], row-major: corr_ij for i != j; 1 on the diagonal,
  // except for a constant bit, whose row, column and diagonal are 0 (a bit
  // without variance correlates with nothing).
  std::vector<double> corr;
  int constant_bits = 0;  // of all nbits: the same value in every sampled code
  // Over the pairs i < j of the correlated bits (0 with fewer than two):
  double mean_abs_corr = 0;
  double max_abs_corr = 0;
  std::pair<int, int> max_pair{0, 0};  // the first pair (row-major) reaching max_abs_corr

  double corr_at(int i, int j) const { return corr[static_cast<size_t>(i) * corr_bits + j]; }
};

// Needs at least two codes (one has no variance to speak of).
BitStats bit_stats(const codes::BinaryCodes& codes, const BitStatsOptions& opts = {});

}  // namespace hashlab::eval
