// Classic shallow hashing baselines, as closed-form fits on float features
// X [N, D] (rows are examples). Every one produces codes sign(f(x)) with bit
// j = f_j(x) >= 0; only f differs.
//
//  LSH   (Charikar 2002 / Gaussian random projections of centred data):
//        f(x) = (x - mu) W,  W ~ N(0, 1)^{D x B}.
//  PCAH  (Wang et al. 2010): W = the top-B principal directions of X.
//  ITQ   (Gong & Lazebnik, CVPR 2011): V = (X - mu) W_pca (top-B PCA), then
//        `iterations` rounds of  B = sgn(V R);  R = argmin ||B - V R||_F over
//        orthogonal R, i.e. the orthogonal Procrustes solution: with
//        svd(B^T V) = S Sigma S'^T, R = S' S^T. f(x) = (x - mu) W_pca R.
//  SH    (Weiss, Torralba & Fergus, NIPS 2008): PCA to min(B, D) dims, a box
//        [a_d, b_d] per dimension, the one-dimensional Laplacian
//        eigenfunctions sin(pi/2 + k pi (y_d - a_d)/(b_d - a_d)) with
//        eigenvalue ~ (k / (b_d - a_d))^2; the B eigenfunctions with the
//        smallest eigenvalues (k >= 1) are the bits.
#pragma once

#include <cstdint>

#include <torch/torch.h>

namespace hashlab::models {

// A linear hash: f(x) = (x - mean) W, W [D, B].
struct LinearHash {
  torch::Tensor mean;  // [D]
  torch::Tensor W;     // [D, B]
  torch::Tensor project(const torch::Tensor& x) const;  // x [N, D] -> [N, B]
};

// Principal directions: the top-k eigenvectors of the covariance of X,
// ordered by decreasing eigenvalue, as columns of a [D, k] matrix; the sign
// of each column is fixed (largest-magnitude entry positive) so results do
// not depend on the eigen-solver.
torch::Tensor pca_directions(const torch::Tensor& x_centred, int64_t k);

LinearHash fit_lsh(const torch::Tensor& x, int64_t bits, uint64_t seed);
LinearHash fit_pcah(const torch::Tensor& x, int64_t bits);
LinearHash fit_itq(const torch::Tensor& x, int64_t bits, int64_t iterations, uint64_t seed);

// Spectral hashing: f_j(x) = prod_d sin(pi/2 + omega_{j,d} (y_d - a_d)),
// y = (x - mean) W_pca.
struct SpectralHash {
  torch::Tensor mean;    // [D]
  torch::Tensor W;       // [D, P] PCA directions
  torch::Tensor lo;      // [P] box minimum a_d
  torch::Tensor omegas;  // [B, P] angular frequency per bit and dimension
  torch::Tensor project(const torch::Tensor& x) const;  // [N, B]
};
SpectralHash fit_sh(const torch::Tensor& x, int64_t bits);

}  // namespace hashlab::models
