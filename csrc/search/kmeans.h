// Seeded k-means (Lloyd) with k-means++ initialisation, in torch ops so it
// runs on the data's device (GPU when the data is there).
//
//   minimise  Σ_i ||x_i − c_{a(i)}||²   over centroids c [K, D] and assignments a [N]
//
// Initialisation (Arthur & Vassilvitskii 2007): the first centroid is a
// uniformly drawn point, each next one a point drawn with probability
// ∝ D(x)², its squared distance to the nearest centroid chosen so far. The
// draws use a CPU generator seeded with `seed`, so a seed gives the same
// centroids on every device (up to floating-point reduction order).
// Iterations stop after `iters`, or earlier when the inertia improves by less
// than `tol` relatively. An empty cluster is repaired by moving its centroid
// onto the point farthest from its own centroid (distinct points for several
// empty clusters), which always lowers the inertia.
#pragma once

#include <cstdint>
#include <utility>

#include <torch/torch.h>

namespace hashlab::search {

struct KMeansOptions {
  int iters = 25;
  double tol = 1e-5;   // stop when (prev − cur) <= tol · prev
  uint64_t seed = 0;
};

struct KMeansResult {
  torch::Tensor centroids;    // float [K, D], on X's device
  torch::Tensor assignments;  // int64 [N], on X's device
  double inertia = 0;         // Σ squared distances to the assigned centroid
  int iterations = 0;         // Lloyd iterations run
};

// X: float [N, D] with N >= K >= 1.
KMeansResult kmeans(const torch::Tensor& X, int64_t K, const KMeansOptions& opts = {});

// Nearest centroid of each row of X (squared Euclidean, via ||x||² − 2x·c + ||c||²,
// in blocks of rows); ties go to the lowest centroid index.
// Returns (assignments int64 [N], squared distances float [N]).
std::pair<torch::Tensor, torch::Tensor> nearest_centroids(const torch::Tensor& X,
                                                          const torch::Tensor& centroids);

}  // namespace hashlab::search
