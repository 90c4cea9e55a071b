// WSL: Direct Hashing without Pseudo-Labels (Zheng & Huang, AAAI 2018).
//
// The pieces of the paper's objective, each usable on its own:
//
// W-shape loss (eqs. 5-6), elementwise on the real-valued outputs f:
//
//   L(f) = ln((f^2 - 1)^2)
//
// Its gradient 4f / (f^2 - 1) is singular at |f| = 1; the paper updates
// parameters with the surrogate gradient of (f^2 - 1)^2, i.e. 4f (f^2 - 1),
// while reporting the ln loss ("Optimization", last paragraph).
// wshape_loss(f) is that pair as one autograd function: forward
// ln(max((f^2 - 1)^2, floor)) (floor = kWShapeFloor = 1e-12, so |f| = 1 gives
// ln(1e-12) = -27.6 instead of -inf), backward grad * 4f (f^2 - 1).
//   f: float or double [...]  ->  same shape.
// wshape_quartic(f) = (f^2 - 1)^2 with its exact gradient (the same one).
//
// Measurement consistency (eqs. 2, 10): R(f) = 1/2 f^T L f, L = D - S, S a
// sparse symmetric kNN heat-kernel graph (KnnGraph), never an N x N matrix;
// 1/2 f^T L f = 1/4 sum_{i,j} S_ij (f_i - f_j)^2, gradient L f. (The paper
// writes both sum_{i,j} S_ij (f_i - f_j)^2 / 2 and f L f^T / 2, which differ by
// a factor 2; the factor only rescales mu.)
//
// Orthogonality (eq. 8): O(f_k, C_k) = f_k C_k f_k^T with
// C_k = sum_{l != k} f_l^T f_l + 1 1^T, i.e.
//   O = sum_{l != k} (f_k . f_l)^2 + (f_k . 1)^2
// (bit decorrelation and bit balance in one term), computed from the other
// bits' outputs F_other [N, K-1] without forming C_k.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

namespace hashlab::models {

constexpr double kWShapeFloor = 1e-12;

// Elementwise ln(max((f^2 - 1)^2, floor)); backward: the surrogate 4f (f^2 - 1).
torch::Tensor wshape_loss(const torch::Tensor& f, double floor = kWShapeFloor);
// Elementwise (f^2 - 1)^2 (plain autograd).
torch::Tensor wshape_quartic(const torch::Tensor& f);

// A symmetric kNN heat-kernel graph on N points, as an edge list holding both
// directions of every edge: S_ij = exp(-||x_i - x_j||^2 / t) when j is among
// the k nearest neighbours of i or i among those of j.
struct KnnGraph {
  int64_t n = 0;
  torch::Tensor src, dst;  // int64 [E]
  torch::Tensor weight;    // [E] (the dtype of the points)
  torch::Tensor degree;    // [N]: D_ii = sum_j S_ij
  double t = 0;            // the heat-kernel width used
  double mean_degree() const;
};

// x: float/double [N, D] (CPU). k >= 1 neighbours (self excluded). t <= 0:
// t = the mean squared distance to the k nearest neighbours (the scale of S
// then does not depend on the data's units). Distances are computed in
// blocks of `block` rows (memory O(block * N)).
KnnGraph knn_heat_graph(const torch::Tensor& x, int64_t k, double t = 0, int64_t block = 2048);

// L f = D f - S f for f [N] or [N, B] (the graph's dtype).
torch::Tensor laplacian_apply(const KnnGraph& g, const torch::Tensor& f);

// The sub-problem for one linear bit f = X w (eq. 10, Theorem 0.3):
//   Lagrangian(w) = s_L L(f) + mu s_R R(f) + nu s_O O(f, C_k)
// with s_L = s_R = 1/N, s_O = 1/N^2 when `normalized` (the terms then stay of
// one order whatever N is: O grows like N^2 in the paper's plain sums, which
// make it a hard constraint), else 1 (the paper's literal sums).
// `value`: which quantization loss the returned value uses, "quartic"
// ((f^2 - 1)^2 summed) or "ln" (the W-shape loss); the gradient is always the
// surrogate's. X: double [N, D] centred; F_other: double [N, K-1].
struct WSLTerms {
  double loss_ln = 0;       // sum ln((f^2 - 1)^2), scaled
  double loss_quartic = 0;  // sum (f^2 - 1)^2, scaled
  double consistency = 0;   // R(f), scaled
  double orthogonality = 0; // O(f, C_k), scaled
  double lagrangian(double mu, double nu, const std::string& value) const;
};

class LinearBitProblem {
 public:
  LinearBitProblem(const torch::Tensor& X, const KnnGraph& graph, torch::Tensor F_other,
                   double mu, double nu, bool normalized, std::string value);
  // The terms at w (double [D]).
  WSLTerms terms(const torch::Tensor& w) const;
  // Lagrangian value at w; writes its (surrogate) gradient into grad [D] when
  // grad is defined.
  double evaluate(const torch::Tensor& w, torch::Tensor* grad) const;
  int64_t dim() const { return X_.size(1); }

 private:
  WSLTerms terms_of(const torch::Tensor& f) const;
  const torch::Tensor& X_;
  const KnnGraph& graph_;
  torch::Tensor F_other_;
  double mu_, nu_, sL_, sR_, sO_;
  std::string value_;
};

// The same objective for a batch of K bits at once, differentiable (the deep
// variant): F [B, K] the outputs, g a kNN graph over the batch's inputs.
//   loss          sum_k sum_i ln((F_ik^2 - 1)^2)   (wshape_loss: surrogate gradient)
//   loss_quartic  sum_k sum_i (F_ik^2 - 1)^2       (logged)
//   consistency   sum_k 1/2 f_k^T L f_k
//   orthogonality sum_k [sum_{l != k} (f_k . f_l)^2 + (f_k . 1)^2]
//                 = ||F^T F||_F^2 - sum_k ||f_k||^4 + ||F^T 1||^2
// scaled by 1/B (loss, consistency) and 1/B^2 (orthogonality) when normalized.
struct WSLBatchTerms {
  torch::Tensor loss, loss_quartic, consistency, orthogonality;  // scalars
};
WSLBatchTerms wsl_batch_terms(const torch::Tensor& F, const KnnGraph& g, bool normalized);

}  // namespace hashlab::models
