#include "models/wsl/wsl.h"

#include <cmath>
#include <limits>
#include <vector>

#include "csrc/core/error.h"

namespace hashlab::models {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// forward: ln(max((f^2 - 1)^2, floor)); backward: the surrogate 4f (f^2 - 1).
struct WShapeFunction : public torch::autograd::Function<WShapeFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& f, double floor) {
    ctx->save_for_backward({f});
    torch::Tensor b = f * f - 1;
    return torch::log(torch::clamp_min(b * b, floor));
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    torch::Tensor f = ctx->get_saved_variables()[0];
    return {grad[0] * 4 * f * (f * f - 1), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor wshape_loss(const torch::Tensor& f, double floor) {
  TORCH_CHECK(floor > 0, "wshape_loss: floor must be > 0, got ", floor);
  TORCH_CHECK(f.is_floating_point(), "wshape_loss: f must be floating point, got ", f.dtype());
  return WShapeFunction::apply(f, floor);
}

torch::Tensor wshape_quartic(const torch::Tensor& f) {
  torch::Tensor b = f * f - 1;
  return b * b;
}

double KnnGraph::mean_degree() const {
  return n > 0 ? static_cast<double>(src.size(0)) / static_cast<double>(n) : 0.0;
}

KnnGraph knn_heat_graph(const torch::Tensor& x_in, int64_t k, double t, int64_t block) {
  TORCH_CHECK(x_in.dim() == 2 && x_in.is_floating_point(),
              "knn_heat_graph: x must be float [N, D], got ", x_in.sizes(), " ", x_in.dtype());
  const int64_t n = x_in.size(0);
  TORCH_CHECK(k >= 1 && k < n, "knn_heat_graph: k must be in [1, N-1] = [1, ", n - 1, "], got ",
              k);
  TORCH_CHECK(block >= 1, "knn_heat_graph: block must be >= 1, got ", block);
  torch::NoGradGuard no_grad;
  // Neighbour search in float32 (BLAS distances), blocks of rows.
  const torch::Tensor xf = x_in.to(torch::kCPU, torch::kFloat32).contiguous();
  const torch::Tensor sq = (xf * xf).sum(1);
  std::vector<torch::Tensor> idx;
  idx.reserve(static_cast<size_t>((n + block - 1) / block));
  for (int64_t r0 = 0; r0 < n; r0 += block) {
    const int64_t r1 = std::min(n, r0 + block);
    torch::Tensor d2 = sq.slice(0, r0, r1).unsqueeze(1) + sq.unsqueeze(0) -
                       2 * torch::matmul(xf.slice(0, r0, r1), xf.t());
    torch::diagonal(d2, r0).fill_(std::numeric_limits<float>::infinity());  // no self-loops
    idx.push_back(std::get<1>(d2.topk(k, 1, /*largest=*/false, /*sorted=*/true)));
  }
  torch::Tensor nbr = torch::cat(idx);  // [N, k]
  // Both directions of every kNN edge, each edge once.
  torch::Tensor src = torch::arange(n, torch::kLong).repeat_interleave(k);
  torch::Tensor dst = nbr.flatten();
  torch::Tensor all_src = torch::cat({src, dst}), all_dst = torch::cat({dst, src});
  torch::Tensor key = all_src * n + all_dst;
  torch::Tensor sorted = std::get<0>(key.sort(/*stable=*/true, 0, false));
  torch::Tensor first = torch::ones_like(sorted, torch::kBool);
  if (sorted.size(0) > 1) first.slice(0, 1).copy_(sorted.slice(0, 1) != sorted.slice(0, 0, -1));
  sorted = sorted.masked_select(first);
  KnnGraph g;
  g.n = n;
  g.src = torch::div(sorted, n, "floor");
  g.dst = sorted - g.src * n;
  // Squared distances once more, exactly (x_i - x_j)^2 summed, so S_ij = S_ji to the bit;
  // in chunks of edges.
  const torch::Tensor x = x_in.to(torch::kCPU).contiguous();
  std::vector<torch::Tensor> d2s;
  const int64_t e = g.src.size(0), chunk = std::max<int64_t>(1, (int64_t{1} << 24) / std::max<int64_t>(1, x.size(1)));
  for (int64_t e0 = 0; e0 < e; e0 += chunk) {
    const int64_t e1 = std::min(e, e0 + chunk);
    d2s.push_back((x.index_select(0, g.src.slice(0, e0, e1)) -
                   x.index_select(0, g.dst.slice(0, e0, e1)))
                      .pow(2)
                      .sum(1));
  }
  torch::Tensor d2 = torch::cat(d2s);
  if (t <= 0) {
    // The mean squared distance of the kNN edges (each undirected edge once per direction).
    t = d2.mean().item<double>();
    if (!(t > 0)) t = 1.0;  // all points equal
  }
  g.t = t;
  g.weight = torch::exp(-d2 / t);
  g.degree = torch::zeros({n}, g.weight.options()).index_add_(0, g.src, g.weight);
  return g;
}

torch::Tensor laplacian_apply(const KnnGraph& g, const torch::Tensor& f) {
  TORCH_CHECK(f.size(0) == g.n, "laplacian_apply: f has ", f.size(0), " rows, the graph ", g.n);
  const bool vec = f.dim() == 1;
  torch::Tensor fs = vec ? f.unsqueeze(1) : f;
  torch::Tensor w = g.weight.to(fs.dtype()).unsqueeze(1);
  // Out of place, so that autograd can differentiate it (the deep variant).
  torch::Tensor sf = torch::zeros_like(fs).index_add(0, g.src, fs.index_select(0, g.dst) * w);
  torch::Tensor lf = g.degree.to(fs.dtype()).unsqueeze(1) * fs - sf;
  return vec ? lf.squeeze(1) : lf;
}

WSLBatchTerms wsl_batch_terms(const torch::Tensor& F, const KnnGraph& g, bool normalized) {
  TORCH_CHECK(F.dim() == 2 && F.size(0) == g.n, "wsl_batch_terms: F must be [", g.n,
              ", K], got ", F.sizes());
  const double b = static_cast<double>(F.size(0));
  const double s1 = normalized ? 1.0 / b : 1.0, s2 = normalized ? 1.0 / (b * b) : 1.0;
  WSLBatchTerms t;
  t.loss = wshape_loss(F).sum() * s1;
  t.loss_quartic = wshape_quartic(F.detach()).sum() * s1;
  t.consistency = 0.5 * (F * laplacian_apply(g, F)).sum() * s1;
  torch::Tensor G = F.t().mm(F);
  torch::Tensor ones = F.sum(0);
  t.orthogonality = (G.pow(2).sum() - G.diagonal().pow(2).sum() + ones.pow(2).sum()) * s2;
  return t;
}

double WSLTerms::lagrangian(double mu, double nu, const std::string& value) const {
  return (value == "ln" ? loss_ln : loss_quartic) + mu * consistency + nu * orthogonality;
}

LinearBitProblem::LinearBitProblem(const torch::Tensor& X, const KnnGraph& graph,
                                   torch::Tensor F_other, double mu, double nu, bool normalized,
                                   std::string value)
    : X_(X),
      graph_(graph),
      F_other_(std::move(F_other)),
      mu_(mu),
      nu_(nu),
      value_(std::move(value)) {
  TORCH_CHECK(X_.dim() == 2 && X_.scalar_type() == torch::kFloat64,
              "LinearBitProblem: X must be double [N, D], got ", X_.sizes(), " ", X_.dtype());
  TORCH_CHECK(graph_.n == X_.size(0), "LinearBitProblem: the graph has ", graph_.n,
              " nodes, X has ", X_.size(0), " rows");
  TORCH_CHECK(F_other_.dim() == 2 && F_other_.size(0) == X_.size(0),
              "LinearBitProblem: F_other must be [N, K-1], got ", F_other_.sizes());
  TORCH_CHECK(value_ == "ln" || value_ == "quartic",
              "LinearBitProblem: value must be 'ln' or 'quartic', got '", value_, "'");
  const double n = static_cast<double>(X_.size(0));
  sL_ = sR_ = normalized ? 1.0 / n : 1.0;
  sO_ = normalized ? 1.0 / (n * n) : 1.0;
}

WSLTerms LinearBitProblem::terms_of(const torch::Tensor& f) const {
  WSLTerms t;
  torch::Tensor b = f * f - 1;
  torch::Tensor b2 = b * b;
  t.loss_quartic = b2.sum().item<double>() * sL_;
  t.loss_ln = torch::log(torch::clamp_min(b2, kWShapeFloor)).sum().item<double>() * sL_;
  t.consistency = 0.5 * f.dot(laplacian_apply(graph_, f)).item<double>() * sR_;
  torch::Tensor c = F_other_.t().mv(f);
  const double s1 = f.sum().item<double>();
  t.orthogonality = (c.dot(c).item<double>() + s1 * s1) * sO_;
  return t;
}

WSLTerms LinearBitProblem::terms(const torch::Tensor& w) const {
  torch::NoGradGuard no_grad;
  return terms_of(X_.mv(w.to(torch::kFloat64)));
}

double LinearBitProblem::evaluate(const torch::Tensor& w, torch::Tensor* grad) const {
  torch::NoGradGuard no_grad;
  torch::Tensor f = X_.mv(w);
  torch::Tensor b = f * f - 1;
  torch::Tensor b2 = b * b;
  torch::Tensor lf = laplacian_apply(graph_, f);
  torch::Tensor c = F_other_.t().mv(f);
  const double s1 = f.sum().item<double>();
  const double quant = value_ == "ln"
                           ? torch::log(torch::clamp_min(b2, kWShapeFloor)).sum().item<double>()
                           : b2.sum().item<double>();
  const double value = quant * sL_ + mu_ * 0.5 * f.dot(lf).item<double>() * sR_ +
                       nu_ * (c.dot(c).item<double>() + s1 * s1) * sO_;
  if (grad != nullptr) {
    // d/df: the surrogate 4 f (f^2 - 1), L f, 2 C_k f = 2 (F_other c + 1 (1.f)).
    torch::Tensor gf = (4 * sL_) * f * b + (mu_ * sR_) * lf +
                       (2 * nu_ * sO_) * (F_other_.mv(c) + s1);
    *grad = X_.t().mv(gf);
  }
  return value;
}

}  // namespace hashlab::models
