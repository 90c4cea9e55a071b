#include "csrc/eval/bit_stats.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "csrc/codes/codes.h"
#include "csrc/core/error.h"

namespace hashlab::eval {

BitStats bit_stats(const codes::BinaryCodes& codes, const BitStatsOptions& opts) {
  const int B = codes.nbits;
  HL_CHECK(B >= 1, "bit statistics: nbits must be >= 1, got {}", B);
  HL_CHECK(codes.codes.defined() && codes.codes.dim() == 2 &&
               codes.codes.scalar_type() == torch::kUInt8 &&
               codes.codes.size(1) == codes::code_bytes(B),
           "bit statistics: codes must be uint8 [N, {}] for {} bits, got {}", codes::code_bytes(B),
           B,
           codes.codes.defined() ? c10::str(codes.codes.scalar_type(), " ", codes.codes.sizes())
                                 : std::string("no tensor"));
  HL_CHECK(opts.max_corr_bits > 0, "bit statistics: max_corr_bits must be >= 1, got {}",
           opts.max_corr_bits);
  const int64_t n = codes.codes.size(0);
  HL_CHECK(n >= 2, "bit statistics: {} codes, at least 2 are needed", n);

  BitStats s;
  s.nbits = B;
  s.count = n;
  // Bounded work and size for long codes and large databases: at most 2^25
  // unpacked values, and the correlation (a Bc x Bc matrix) of the first bits.
  const int Bc = std::min(B, opts.max_corr_bits);
  s.corr_bits = Bc;
  int64_t max_rows = std::max<int64_t>(2, (int64_t{1} << 25) / B);
  if (opts.max_rows > 0) max_rows = std::min(max_rows, opts.max_rows);
  torch::Tensor packed = codes.codes;
  s.sampled = n;
  if (n > max_rows) {
    const int64_t stride = (n + max_rows - 1) / max_rows;
    packed = packed.index_select(0, torch::arange(0, n, stride));
    s.sampled = packed.size(0);
  }
  torch::NoGradGuard ng;
  torch::Tensor x = codes::unpack_bits(packed, B).to(torch::kFloat64);  // ±1 [m, B]
  torch::Tensor mean = x.mean(0);
  torch::Tensor ones = ((mean + 1) / 2).contiguous();
  torch::Tensor var = (1 - mean * mean).contiguous();  // of a ±1 variable
  torch::Tensor xc = x.narrow(1, 0, Bc) - mean.narrow(0, 0, Bc);
  torch::Tensor cov = xc.t().mm(xc) / double(s.sampled);
  torch::Tensor vc = var.narrow(0, 0, Bc);
  torch::Tensor inv = torch::where(vc > 1e-12, vc.rsqrt(), torch::zeros_like(vc));
  torch::Tensor corr = (cov * inv.unsqueeze(0) * inv.unsqueeze(1)).clamp(-1, 1).contiguous();

  const double* po = ones.data_ptr<double>();
  const double* pc = corr.data_ptr<double>();
  const double* pv = var.data_ptr<double>();
  s.ones.assign(po, po + B);
  s.corr.resize(static_cast<size_t>(Bc) * Bc);
  double sum_abs = 0;
  for (int i = 0; i < B; ++i) {
    if (pv[i] <= 1e-12) ++s.constant_bits;
    if (i >= Bc) continue;
    for (int j = 0; j < Bc; ++j) {
      const double v = (i == j) ? (pv[i] > 1e-12 ? 1.0 : 0.0) : pc[i * Bc + j];
      s.corr[static_cast<size_t>(i) * Bc + j] = v;
      if (i < j) {
        sum_abs += std::fabs(v);
        if (std::fabs(v) > s.max_abs_corr) s.max_abs_corr = std::fabs(v), s.max_pair = {i, j};
      }
    }
  }
  const double pairs = Bc > 1 ? double(Bc) * (Bc - 1) / 2 : 1;
  s.mean_abs_corr = sum_abs / pairs;
  return s;
}

}  // namespace hashlab::eval
