// Auto-JacoBin's local tangent bases (§II): for every training point, a local
// PCA of its k nearest training points (the paper: k = D + d), centred on
// their mean, keeping the fewest principal directions that hold >= `energy`
// (98%) of the neighbourhood's energy, or d, whichever is fewer; zero-padded
// to d columns.
//
//   X [N, D] float (CPU)  ->  T [N, D, d] (orthonormal kept columns, then 0),
//                             kept [N] int64 (the number of kept columns).
//
// Only the top d directions are ever needed, so each neighbourhood C [k, D]
// gets a randomized subspace iteration instead of an eigendecomposition of
// its D x D covariance: Q = orth(C^T C Omega), `iters` times Q = orth(C^T C Q),
// then Rayleigh-Ritz on C Q (an eigh of the (d + oversample)^2 matrix Q^T C^T C Q). Every
// product has one operand shared by a block of neighbourhoods or is a large
// batched product, so the cost is O(N k D (d + oversample) (2 iters + 3)).
// The neighbourhood's total energy ||C||_F^2 is exact, so the 98% rule uses
// exact totals and approximate top eigenvalues. Accuracy against an exact
// eigh: test LocalTangents.MatchExactLocalPCA.
#pragma once

#include <cstdint>

#include <torch/torch.h>

namespace hashlab::models {

struct TangentOptions {
  int64_t d = 32;          // the most directions kept (= bits)
  int64_t neighbours = 0;  // k, the point itself included; 0: D + d (the paper)
  double energy = 0.98;    // keep the fewest directions holding this share
  int64_t iters = 2;       // subspace iterations after the first
  int64_t oversample = 8;  // extra directions carried by the iteration
  int64_t block = 64;      // neighbourhoods per batch (memory: block * k * D floats)
  uint64_t seed = 0;
};

struct Tangents {
  torch::Tensor T;         // [N, D, d]
  torch::Tensor kept;      // [N] int64
  torch::Tensor captured;  // [N]: the neighbourhood energy ||C T||_F^2 the kept columns hold
};

// The k nearest points of every row of X (itself first), by Euclidean
// distance, in row blocks: [N, k] int64.
torch::Tensor nearest_neighbours(const torch::Tensor& X, int64_t k, int64_t block = 1024);

Tangents local_tangents(const torch::Tensor& X, const TangentOptions& opts);

// The same with an exact eigendecomposition of each local covariance, for the
// points `rows` (int64 [R]; undefined: all), neighbours still drawn from all
// of X (tests, and the accuracy figure of `hashlab bench tangents`).
Tangents local_tangents_exact(const torch::Tensor& X, const TangentOptions& opts,
                              const torch::Tensor& rows = {});

}  // namespace hashlab::models
