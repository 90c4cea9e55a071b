#include "datasets/similarity.h"

#include "csrc/core/error.h"

namespace hashlab::data {

torch::Tensor label_similarity(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.dim() == b.dim() && (a.dim() == 1 || a.dim() == 2),
              "label_similarity: expected single labels [n] or multi-hot [n, C] on both sides, "
              "got ", a.sizes(), " and ", b.sizes());
  if (a.dim() == 1) return (a.unsqueeze(1) == b.unsqueeze(0)).to(torch::kFloat32);
  TORCH_CHECK(a.size(1) == b.size(1), "label_similarity: ", a.size(1), " vs ", b.size(1),
              " classes");
  // Counts of shared labels are small integers, exact in float32.
  return (torch::matmul(a.to(torch::kFloat32), b.to(torch::kFloat32).t()) > 0.5f)
      .to(torch::kFloat32);
}

torch::Tensor pairwise_sq_dists(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(1),
              "pairwise_sq_dists: expected [na, D] and [nb, D], got ", a.sizes(), " and ",
              b.sizes());
  torch::Tensor an = a.pow(2).sum(1, true);
  torch::Tensor bn = b.pow(2).sum(1).unsqueeze(0);
  return (an + bn - 2 * torch::matmul(a, b.t())).clamp_min(0);
}

KnnGraph knn_graph(const torch::Tensor& X_in, int64_t k, int64_t batch_rows) {
  TORCH_CHECK(X_in.dim() == 2, "knn_graph: X must be [N, D], got ", X_in.sizes());
  const int64_t n = X_in.size(0);
  TORCH_CHECK(k >= 1 && k < n, "knn_graph: need 1 <= k < N, got k = ", k, ", N = ", n);
  TORCH_CHECK(batch_rows >= 1, "knn_graph: batch_rows must be positive, got ", batch_rows);
  torch::Tensor X = X_in.to(torch::kFloat32);
  std::vector<torch::Tensor> idx, dist;
  for (int64_t lo = 0; lo < n; lo += batch_rows) {
    const int64_t len = std::min(batch_rows, n - lo);
    torch::Tensor d = pairwise_sq_dists(X.narrow(0, lo, len), X);
    // Self is never its own neighbour, even when duplicates make distances tie.
    torch::Tensor self = torch::arange(lo, lo + len, torch::TensorOptions().dtype(torch::kInt64).device(X.device()));
    d.scatter_(1, self.unsqueeze(1), std::numeric_limits<float>::infinity());
    auto [vals, ids] = d.topk(k, 1, /*largest=*/false, /*sorted=*/true);
    idx.push_back(ids);
    dist.push_back(vals.sqrt());
  }
  return KnnGraph{torch::cat(idx), torch::cat(dist)};
}

torch::Tensor heat_kernel(const torch::Tensor& distances, double t) {
  torch::Tensor d2 = distances.to(torch::kFloat32).pow(2);
  if (t <= 0) {
    t = d2.numel() ? d2.mean().item<double>() : 1.0;
    if (!(t > 0)) t = 1.0;
  }
  return torch::exp(-d2 / t);
}

}  // namespace hashlab::data
