#include "models/auto_jacobin/tangents.h"

#include "csrc/core/device.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

namespace hashlab::models {

namespace {

struct Resolved {
  int64_t N, D, d, k, l;
};

Resolved resolve(const torch::Tensor& X, const TangentOptions& o) {
  TORCH_CHECK(X.dim() == 2 && X.is_floating_point(), "local_tangents: X must be float [N, D], got ",
              X.sizes(), " ", X.scalar_type());
  Resolved r;
  r.N = X.size(0);
  r.D = X.size(1);
  r.d = o.d;
  r.k = o.neighbours > 0 ? o.neighbours : r.D + r.d;
  TORCH_CHECK(r.d >= 1 && r.d <= r.D, "local_tangents: d must be in [1, D = ", r.D, "], got ", r.d);
  TORCH_CHECK(r.k >= 2 && r.k <= r.N, "local_tangents: ", r.k,
              " neighbours (the point itself included; D + d = ", r.D + r.d,
              " unless set) must be at least 2 and at most the N = ", r.N, " points");
  TORCH_CHECK(o.energy > 0 && o.energy <= 1, "local_tangents: energy must be in (0, 1], got ",
              o.energy);
  TORCH_CHECK(o.iters >= 0 && o.oversample >= 0 && o.block >= 1,
              "local_tangents: iters, oversample >= 0 and block >= 1, got ", o.iters, ", ",
              o.oversample, ", ", o.block);
  r.l = std::min({r.d + o.oversample, r.k, r.D});
  return r;
}

// Writes the kept directions of one block: `dirs` [b, D, >= d] sorted by
// `eig` [b, >= d] descending, `total` [b] the exact energies.
void keep(const torch::Tensor& dirs, const torch::Tensor& eig, const torch::Tensor& total,
          int64_t d, double energy, torch::Tensor T_block, torch::Tensor kept_block,
          torch::Tensor captured_block) {
  auto top = eig.narrow(1, 0, d).clamp_min(0);
  auto share = top.cumsum(1) / total.clamp_min(1e-30).unsqueeze(1);  // [b, d]
  // The fewest directions reaching the share (the share only grows: one more
  // than the number below it), or d when none does; none for a point whose
  // neighbours all coincide.
  auto count = ((share < energy - 1e-12).sum(1) + 1).clamp_max(d);
  count = torch::where(total > 0, count, torch::zeros_like(count));
  auto cols = torch::arange(d, torch::kLong).unsqueeze(0);  // [1, d]
  auto mask = (cols < count.unsqueeze(1)).to(dirs.scalar_type()).unsqueeze(1);  // [b, 1, d]
  T_block.copy_(dirs.narrow(2, 0, d) * mask);
  kept_block.copy_(count);
  captured_block.copy_((top * mask.squeeze(1)).sum(1));
}

torch::Tensor centred_neighbourhoods(const torch::Tensor& X, const torch::Tensor& idx) {
  const int64_t b = idx.size(0), k = idx.size(1), D = X.size(1);
  auto C = X.index_select(0, idx.reshape({-1})).view({b, k, D});
  return C - C.mean(1, /*keepdim=*/true);
}

}  // namespace

torch::Tensor nearest_neighbours(const torch::Tensor& X, int64_t k, int64_t block) {
  TORCH_CHECK(X.dim() == 2, "nearest_neighbours: X must be [N, D], got ", X.sizes());
  TORCH_CHECK(k >= 1 && k <= X.size(0), "nearest_neighbours: k must be in [1, N = ", X.size(0),
              "], got ", k);
  torch::NoGradGuard ng;
  const int64_t N = X.size(0);
  auto norms = X.pow(2).sum(1);
  auto out = torch::empty({N, k}, torch::kLong);
  for (int64_t r0 = 0; r0 < N; r0 += block) {
    const int64_t r1 = std::min(N, r0 + block);
    auto d2 = norms.narrow(0, r0, r1 - r0).unsqueeze(1) + norms.unsqueeze(0) -
              2 * torch::mm(X.narrow(0, r0, r1 - r0), X.t());
    // Each point first, even among duplicates.
    auto rows = torch::arange(r1 - r0, torch::kLong);
    d2.index_put_({rows, rows + r0}, -1.0);
    out.narrow(0, r0, r1 - r0).copy_(std::get<1>(torch::topk(d2, k, 1, /*largest=*/false)));
  }
  return out;
}

Tangents local_tangents(const torch::Tensor& X, const TangentOptions& o) {
  const Resolved r = resolve(X, o);
  torch::NoGradGuard ng;
  // Blocks of neighbourhoods run side by side, one per thread, each on one
  // thread inside (at::parallel_for: the ATen ops and OpenBLAS calls of a
  // block see they are in a parallel region and stay serial). Threading
  // inside each block instead made the batched QR/eigh and the per-item
  // products contend (OpenBLAS's threads against ATen's): the 10,000
  // Fashion-MNIST tangents took 639 s on the 2-core machine with two threads,
  // against 270 s with one. Every op runs on one thread either way, so the
  // result does not depend on the thread count (test
  // LocalTangents.SameOnOneAndTwoThreads).
  auto x = X.contiguous();
  Tangents t{torch::zeros({r.N, r.D, r.d}, x.options()), torch::zeros({r.N}, torch::kLong),
             torch::zeros({r.N}, x.options())};
  auto gen = at::detail::createCPUGenerator(o.seed);
  auto omega = torch::randn({r.D, r.l}, gen, x.options());
  // The centred neighbourhood C = Nb - 1 mu^T is never formed: with Nb the
  // gathered neighbours and mu their mean, C M = Nb M - 1 (mu^T M) and
  // C^T Y = Nb^T Y - mu (1^T Y); C Omega = (X Omega)[idx] - 1 (mu^T Omega) with
  // X Omega computed once; ||C||_F^2 = sum ||x_j||^2 - k ||mu||^2 (in double).
  torch::Tensor idx, x_omega, sq_norms;
  {
    // One thread, as all of this ran before the blocks went parallel: the
    // neighbours (a GEMM and topk: ~3 s) and the products are the same
    // numbers on any thread count.
    ThreadsGuard one_thread(1);
    idx = nearest_neighbours(x, r.k);
    x_omega = torch::mm(x, omega);                    // [N, l]
    sq_norms = x.to(torch::kFloat64).pow(2).sum(1);  // [N]
  }
  const int64_t blocks = (r.N + o.block - 1) / o.block;
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    torch::NoGradGuard ng_worker;
    for (int64_t bi = first; bi < last; ++bi) {
      const int64_t b0 = bi * o.block;
      const int64_t b = std::min(r.N, b0 + o.block) - b0;
      auto nb_idx = idx.narrow(0, b0, b);
      auto flat = nb_idx.reshape({-1});
      auto Nb = x.index_select(0, flat).view({b, r.k, r.D});  // [b, k, D]
      auto mu = Nb.mean(1);                                   // [b, D]
      auto total = (sq_norms.index_select(0, flat).view({b, r.k}).sum(1) -
                    double(r.k) * mu.to(torch::kFloat64).pow(2).sum(1))
                       .clamp_min(0)
                       .to(x.scalar_type());
      auto C_times = [&](const torch::Tensor& M) {  // M [b, D, l] -> C M [b, k, l]
        return torch::bmm(Nb, M) - torch::bmm(mu.unsqueeze(1), M);
      };
      auto Ct_times = [&](const torch::Tensor& Y) {  // Y [b, k, l] -> C^T Y [b, D, l]
        return torch::bmm(Nb.transpose(1, 2), Y) - mu.unsqueeze(2) * Y.sum(1).unsqueeze(1);
      };
      auto C_omega = x_omega.index_select(0, flat).view({b, r.k, r.l}) -
                     torch::mm(mu, omega).unsqueeze(1);
      auto Q = std::get<0>(torch::linalg_qr(Ct_times(C_omega)));
      for (int64_t it = 0; it < o.iters; ++it)
        Q = std::get<0>(torch::linalg_qr(Ct_times(C_times(Q))));  // [b, D, l]
      // Rayleigh-Ritz: with H = C Q and (H^T H) V = V diag(e), the directions
      // are Q V with energies e (= ||C q||^2 of each). An eigh of the l x l
      // matrix, not an SVD of the k x l one (batched gesdd is ~100x slower here).
      auto H = C_times(Q);
      auto eigh = torch::linalg_eigh(torch::bmm(H.transpose(1, 2), H));  // ascending
      auto dirs = torch::bmm(Q, std::get<1>(eigh).flip(2));                // [b, D, l]
      keep(dirs, std::get<0>(eigh).flip(1), total, r.d, o.energy, t.T.narrow(0, b0, b),
           t.kept.narrow(0, b0, b), t.captured.narrow(0, b0, b));
    }
  });
  return t;
}

Tangents local_tangents_exact(const torch::Tensor& X, const TangentOptions& o,
                              const torch::Tensor& rows) {
  const Resolved r = resolve(X, o);
  torch::NoGradGuard ng;
  auto x = X.contiguous();
  auto idx = nearest_neighbours(x, r.k);
  if (rows.defined()) idx = idx.index_select(0, rows);
  const int64_t R = idx.size(0);
  Tangents t{torch::zeros({R, r.D, r.d}, x.options()), torch::zeros({R}, torch::kLong),
             torch::zeros({R}, x.options())};
  for (int64_t b0 = 0; b0 < R; b0 += o.block) {
    const int64_t b = std::min(R, b0 + o.block) - b0;
    auto C = centred_neighbourhoods(x, idx.narrow(0, b0, b));
    auto eigh = torch::linalg_eigh(torch::matmul(C.transpose(1, 2), C));  // ascending
    auto eig = std::get<0>(eigh).flip(1);
    auto dirs = std::get<1>(eigh).flip(2);
    keep(dirs, eig, C.pow(2).sum({1, 2}), r.d, o.energy, t.T.narrow(0, b0, b),
         t.kept.narrow(0, b0, b), t.captured.narrow(0, b0, b));
  }
  return t;
}

}  // namespace hashlab::models
