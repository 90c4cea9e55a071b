// Similarity structures built from labels or features. All run on the
// device of their inputs.
#pragma once

#include <cstdint>

#include <torch/torch.h>

namespace hashlab::data {

// S[i, j] = 1 when a[i] and b[j] are relevant to each other, else 0:
// single labels (int64 [na], [nb]) are equal, or multi-hot rows (uint8
// [na, C], [nb, C]) share at least one label. Returns float [na, nb].
torch::Tensor label_similarity(const torch::Tensor& a, const torch::Tensor& b);

// Squared Euclidean distances ||a_i - b_j||^2 via ||a||^2 + ||b||^2 - 2 a b^T,
// clamped at 0. a: float [na, D], b: float [nb, D] -> float [na, nb].
torch::Tensor pairwise_sq_dists(const torch::Tensor& a, const torch::Tensor& b);

struct KnnGraph {
  torch::Tensor indices;    // int64 [N, k]: the k nearest other rows, nearest first
  torch::Tensor distances;  // float [N, k]: their Euclidean distances (not squared)
};

// The k nearest neighbours of every row of X (float [N, D]) among the other
// rows (self excluded), computed batch_rows query rows at a time so memory
// stays O(batch_rows * N). Requires 1 <= k < N.
KnnGraph knn_graph(const torch::Tensor& X, int64_t k, int64_t batch_rows = 1024);

// Heat-kernel weights exp(-d^2 / t) for Euclidean distances d (any shape),
// t > 0; t <= 0 asks for t = mean(d^2) over the given distances (a common
// bandwidth choice, as in Spectral Hashing's and AGH's code).
torch::Tensor heat_kernel(const torch::Tensor& distances, double t = 0);

}  // namespace hashlab::data
