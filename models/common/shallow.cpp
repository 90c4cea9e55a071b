#include "models/common/shallow.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "csrc/core/error.h"

namespace hashlab::models {
namespace {

void check_input(const torch::Tensor& x, int64_t bits) {
  TORCH_CHECK(x.dim() == 2, "baselines expect features [N, D], got ", x.sizes());
  if (x.size(0) < 2) fail("baselines need at least 2 training examples, got {}", x.size(0));
  if (bits < 1) fail("bits must be >= 1, got {}", bits);
}

at::Generator seeded(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

}  // namespace

torch::Tensor LinearHash::project(const torch::Tensor& x) const {
  return torch::matmul(x.to(W.dtype()) - mean, W);
}

torch::Tensor pca_directions(const torch::Tensor& xc, int64_t k) {
  auto x = xc.to(torch::kFloat64);
  if (k > x.size(1))
    fail("PCA: asked for {} directions but the data has only {} dimensions", k, x.size(1));
  auto cov = torch::matmul(x.t(), x) / static_cast<double>(x.size(0) - 1);
  auto [evals, evecs] = torch::linalg_eigh(cov, "L");
  // eigh sorts ascending: take the last k columns, largest first.
  auto idx = torch::arange(x.size(1) - 1, x.size(1) - 1 - k, -1, torch::kLong);
  auto v = evecs.index_select(1, idx);
  // Fix signs: the largest-magnitude entry of each column is positive.
  auto amax = v.abs().argmax(0);
  auto sgn = torch::sign(v.gather(0, amax.unsqueeze(0))).squeeze(0);
  sgn = torch::where(sgn == 0, torch::ones_like(sgn), sgn);
  return v * sgn.unsqueeze(0);
}

LinearHash fit_lsh(const torch::Tensor& x, int64_t bits, uint64_t seed) {
  check_input(x, bits);
  LinearHash h;
  h.mean = x.to(torch::kFloat32).mean(0);
  auto gen = seeded(seed);
  h.W = at::randn({x.size(1), bits}, gen, torch::TensorOptions().dtype(torch::kFloat32));
  return h;
}

LinearHash fit_pcah(const torch::Tensor& x, int64_t bits) {
  check_input(x, bits);
  LinearHash h;
  auto xf = x.to(torch::kFloat32);
  h.mean = xf.mean(0);
  h.W = pca_directions(xf - h.mean, bits).to(torch::kFloat32);
  return h;
}

LinearHash fit_itq(const torch::Tensor& x, int64_t bits, int64_t iterations, uint64_t seed) {
  check_input(x, bits);
  auto xf = x.to(torch::kFloat32);
  LinearHash h;
  h.mean = xf.mean(0);
  auto w_pca = pca_directions(xf - h.mean, bits);              // [D, B] f64
  auto v = torch::matmul((xf - h.mean).to(torch::kFloat64), w_pca);  // [N, B]
  auto gen = seeded(seed);
  auto r0 = at::randn({bits, bits}, gen, torch::TensorOptions().dtype(torch::kFloat64));
  auto R = std::get<0>(torch::linalg_qr(r0));
  for (int64_t it = 0; it < iterations; ++it) {
    auto z = torch::matmul(v, R);
    auto b = torch::where(z >= 0, torch::ones_like(z), -torch::ones_like(z));
    // min ||B - V R||_F over orthogonal R: svd(B^T V) = U S Vh  ->  R = Vh^T U^T.
    auto c = torch::matmul(b.t(), v);
    auto [U, S, Vh] = torch::linalg_svd(c, false);
    R = torch::matmul(Vh.t(), U.t());
  }
  h.W = torch::matmul(w_pca, R).to(torch::kFloat32);
  return h;
}

torch::Tensor SpectralHash::project(const torch::Tensor& x) const {
  auto y = torch::matmul(x.to(W.dtype()) - mean, W) - lo;  // [N, P]
  // Each row of omegas has exactly one non-zero entry (one dimension per
  // eigenfunction), so y Omega^T = omega_j (y_{d_j} - a_{d_j}), and
  // sin(pi/2 + t) = cos(t).
  return torch::cos(torch::matmul(y, omegas.t()));
}

SpectralHash fit_sh(const torch::Tensor& x, int64_t bits) {
  check_input(x, bits);
  auto xf = x.to(torch::kFloat32);
  SpectralHash h;
  h.mean = xf.mean(0);
  const int64_t P = std::min<int64_t>(bits, x.size(1));
  h.W = pca_directions(xf - h.mean, P).to(torch::kFloat32);
  auto y = torch::matmul(xf - h.mean, h.W).to(torch::kFloat64);  // [N, P]
  const double eps = 1e-6;  // keeps points strictly inside the box
  auto lo = std::get<0>(y.min(0)) - eps;
  auto hi = std::get<0>(y.max(0)) + eps;
  auto range = (hi - lo).contiguous();
  std::vector<double> R(range.data_ptr<double>(), range.data_ptr<double>() + P);
  double rmax = *std::max_element(R.begin(), R.end());
  // Candidate modes: for dimension d, k = 1 .. ceil((bits + 1) R_d / R_max) - 1,
  // eigenvalue (k pi / R_d)^2. Keep the `bits` smallest; ties by (d, k) order.
  struct Mode {
    double eig;
    int64_t d;
    int64_t k;
  };
  std::vector<Mode> modes;
  for (int64_t d = 0; d < P; ++d) {
    int64_t max_mode = static_cast<int64_t>(std::ceil((bits + 1) * R[d] / rmax));
    for (int64_t k = 1; k < max_mode; ++k) {
      double w = k * M_PI / R[d];
      modes.push_back({w * w, d, k});
    }
  }
  std::stable_sort(modes.begin(), modes.end(),
                   [](const Mode& a, const Mode& b) { return a.eig < b.eig; });
  if (static_cast<int64_t>(modes.size()) < bits)
    fail("spectral hashing: only {} eigenfunctions available for {} bits", modes.size(), bits);
  auto omegas = torch::zeros({bits, P}, torch::kFloat64);
  auto acc = omegas.accessor<double, 2>();
  for (int64_t j = 0; j < bits; ++j) acc[j][modes[j].d] = modes[j].k * M_PI / R[modes[j].d];
  h.lo = lo.to(torch::kFloat32);
  h.omegas = omegas.to(torch::kFloat32);
  return h;
}

}  // namespace hashlab::models
