#include "csrc/search/kmeans.h"

#include <ATen/CPUGeneratorImpl.h>

#include "csrc/core/error.h"

namespace hashlab::search {

std::pair<torch::Tensor, torch::Tensor> nearest_centroids(const torch::Tensor& X,
                                                          const torch::Tensor& centroids) {
  TORCH_CHECK(X.dim() == 2 && centroids.dim() == 2 && X.size(1) == centroids.size(1),
              "nearest_centroids: X ", X.sizes(), " and centroids ", centroids.sizes(),
              " must be [N, D] and [K, D]");
  const int64_t n = X.size(0), k = centroids.size(0);
  auto c = centroids.to(X.device(), torch::kFloat);
  auto cn = c.pow(2).sum(1);  // [K]
  auto assign = torch::empty({n}, X.options().dtype(torch::kLong));
  auto dist = torch::empty({n}, X.options().dtype(torch::kFloat));
  // Bound the [rows, K] distance block to ~64 MB.
  const int64_t rows = std::max<int64_t>(1, (int64_t{16} << 20) / std::max<int64_t>(k, 1));
  for (int64_t r0 = 0; r0 < n; r0 += rows) {
    auto xb = X.slice(0, r0, std::min(n, r0 + rows)).to(torch::kFloat);
    auto d = torch::addmm(cn.unsqueeze(0), xb, c.t(), 1.0, -2.0);
    auto [mn, am] = d.min(1);
    assign.slice(0, r0, r0 + xb.size(0)).copy_(am);
    dist.slice(0, r0, r0 + xb.size(0)).copy_(mn.add_(xb.pow(2).sum(1)).clamp_min_(0));
  }
  return {assign, dist};
}

namespace {

// k-means++ seeding; draws on a seeded CPU generator.
torch::Tensor kmeanspp_init(const torch::Tensor& X, int64_t K, uint64_t seed) {
  const int64_t n = X.size(0);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto centroids = torch::empty({K, X.size(1)}, X.options().dtype(torch::kFloat));
  auto xn = X.pow(2).sum(1);
  const int64_t first = torch::randint(n, {1}, gen, torch::kLong).item<int64_t>();
  centroids[0].copy_(X[first]);
  // D(x)² to the nearest centroid so far.
  auto d2 = (xn - 2 * torch::mv(X, centroids[0]) + xn[first]).clamp_min_(0);
  for (int64_t c = 1; c < K; ++c) {
    auto w = d2.to(torch::kCPU, torch::kDouble);
    int64_t pick;
    if (w.sum().item<double>() > 0) {
      pick = torch::multinomial(w, 1, false, gen).item<int64_t>();
    } else {  // every point sits on a centroid: any point will do
      pick = torch::randint(n, {1}, gen, torch::kLong).item<int64_t>();
    }
    centroids[c].copy_(X[pick]);
    d2 = torch::minimum(d2, (xn - 2 * torch::mv(X, centroids[c]) + xn[pick]).clamp_min_(0));
  }
  return centroids;
}

}  // namespace

KMeansResult kmeans(const torch::Tensor& X_in, int64_t K, const KMeansOptions& opts) {
  TORCH_CHECK(X_in.dim() == 2, "kmeans: X must be [N, D], got ", X_in.sizes());
  HL_CHECK(K >= 1 && K <= X_in.size(0), "kmeans: need 1 <= K <= N, got K = {} with N = {}", K,
           X_in.size(0));
  HL_CHECK(opts.iters >= 0, "kmeans: iters must be >= 0, got {}", opts.iters);
  auto X = X_in.to(torch::kFloat).contiguous();
  const int64_t n = X.size(0);
  KMeansResult res;
  res.centroids = kmeanspp_init(X, K, opts.seed);
  auto [assign, dist] = nearest_centroids(X, res.centroids);
  double inertia = dist.sum().item<double>();
  for (int it = 0; it < opts.iters; ++it) {
    // Update: centroid = mean of its points.
    auto sums = torch::zeros_like(res.centroids).index_add_(0, assign, X);
    auto counts = torch::zeros({K}, X.options()).index_add_(0, assign, torch::ones({n}, X.options()));
    auto nonempty = counts.gt(0);
    res.centroids = torch::where(nonempty.unsqueeze(1), sums / counts.clamp_min(1).unsqueeze(1),
                                 res.centroids);
    auto empty = (~nonempty).nonzero().flatten();
    if (empty.numel() > 0) {
      // Repair: the points worst served by their centroid start the empty clusters.
      auto far = std::get<1>(dist.topk(std::min<int64_t>(empty.numel(), n)));
      res.centroids.index_copy_(0, empty.slice(0, 0, far.numel()), X.index_select(0, far));
    }
    std::tie(assign, dist) = nearest_centroids(X, res.centroids);
    const double next = dist.sum().item<double>();
    res.iterations = it + 1;
    const bool converged = empty.numel() == 0 && inertia - next <= opts.tol * inertia;
    inertia = next;
    if (converged) break;
  }
  res.assignments = assign;
  res.inertia = inertia;
  return res;
}

}  // namespace hashlab::search
