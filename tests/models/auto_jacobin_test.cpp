// Auto-JacoBin's closed-form Jacobian term (models/auto_jacobin/jacobian_term.h):
// value and hand-written gradients against autograd through dz/dx, and against
// central finite differences, in float64.
#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "models/auto_jacobin/jacobian_term.h"
#include "models/auto_jacobin/tangents.h"

using hashlab::models::jacobian_term;
using hashlab::models::jacobian_term_reference;

namespace {

struct Problem {
  torch::Tensor x, W1, b1, W2, b2, T;
  std::vector<torch::Tensor> params() const { return {W1, b1, W2, b2}; }
};

// Random network and data; T: orthonormal tangent columns, the last `pad`
// of them zero (as local PCA pads when fewer directions hold the energy).
Problem make_problem(int64_t B, int64_t D, int64_t d, int64_t pad, uint64_t seed) {
  torch::manual_seed(seed);
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  Problem p;
  p.x = torch::randn({B, D}, o) * 0.5;
  p.W1 = (torch::randn({d, D}, o) * 0.7).requires_grad_(true);
  p.b1 = (torch::randn({d}, o) * 0.3).requires_grad_(true);
  p.W2 = (torch::randn({D, d}, o) * 0.7).requires_grad_(true);
  p.b2 = (torch::randn({D}, o) * 0.3).requires_grad_(true);
  auto qr = torch::linalg_qr(torch::randn({B, D, d}, o));
  p.T = std::get<0>(qr).clone();
  if (pad > 0) p.T.narrow(2, d - pad, pad).zero_();
  return p;
}

std::vector<torch::Tensor> grads_of(const torch::Tensor& loss, const Problem& p) {
  return torch::autograd::grad({loss}, p.params());
}

// Central differences of f with respect to every entry of every parameter.
std::vector<torch::Tensor> numeric_grads(const std::function<double()>& f, const Problem& p,
                                         double h) {
  std::vector<torch::Tensor> out;
  torch::NoGradGuard ng;
  for (const auto& t : p.params()) {
    auto g = torch::zeros_like(t);
    auto flat = t.view({-1});
    auto gflat = g.view({-1});
    for (int64_t i = 0; i < flat.numel(); ++i) {
      const double v = flat[i].item<double>();
      flat[i] = v + h;
      const double up = f();
      flat[i] = v - h;
      const double down = f();
      flat[i] = v;
      gflat[i] = (up - down) / (2 * h);
    }
    out.push_back(g);
  }
  return out;
}

}  // namespace

TEST(JacobianTerm, ValueAndGradientsEqualAutogradThroughTheJacobian) {
  for (int64_t pad : {0, 1}) {
    Problem p = make_problem(/*B=*/4, /*D=*/6, /*d=*/3, pad, 11 + pad);
    auto closed = jacobian_term(p.x, p.W1, p.b1, p.W2, p.b2, p.T);
    auto ref = jacobian_term_reference(p.x, p.W1, p.b1, p.W2, p.b2, p.T);
    EXPECT_NEAR(closed.item<double>(), ref.item<double>(), 1e-10 * std::abs(ref.item<double>()))
        << "pad " << pad;
    auto gc = grads_of(closed, p), gr = grads_of(ref, p);
    const char* names[] = {"W1", "b1", "W2", "b2"};
    for (size_t i = 0; i < gc.size(); ++i) {
      const double err = (gc[i] - gr[i]).abs().max().item<double>();
      const double scale = gr[i].abs().max().item<double>();
      EXPECT_LT(err, 1e-10 * std::max(1.0, scale)) << names[i] << " pad " << pad;
    }
  }
}

TEST(JacobianTerm, GradientsEqualCentralDifferences) {
  Problem p = make_problem(/*B=*/3, /*D=*/5, /*d=*/2, 0, 5);
  auto loss = jacobian_term(p.x, p.W1, p.b1, p.W2, p.b2, p.T);
  auto analytic = grads_of(loss, p);
  auto f = [&] {
    torch::NoGradGuard ng;
    return jacobian_term(p.x, p.W1, p.b1, p.W2, p.b2, p.T).item<double>();
  };
  auto numeric = numeric_grads(f, p, 1e-5);
  for (size_t i = 0; i < analytic.size(); ++i) {
    const double err = (analytic[i] - numeric[i]).abs().max().item<double>();
    EXPECT_LT(err, 1e-7 * std::max(1.0, numeric[i].abs().max().item<double>())) << "param " << i;
  }
}

TEST(JacobianTerm, ZeroWhenTheJacobianIsTheTangentProjector) {
  // With tanh nearly linear (tiny weights scaled back up), G ~ W2 W1; choose
  // W2 W1 = T T^T for one shared T: the term is ~0, far below its value at a
  // random network.
  const int64_t D = 6, d = 2, B = 3;
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  torch::manual_seed(3);
  auto basis = std::get<0>(torch::linalg_qr(torch::randn({D, d}, o)));
  const double eps = 1e-4;
  auto W1 = (basis.t() * eps).requires_grad_(true);
  auto W2 = (basis / eps).requires_grad_(true);
  auto b1 = torch::zeros({d}, o).requires_grad_(true);
  auto b2 = torch::zeros({D}, o).requires_grad_(true);
  auto x = torch::randn({B, D}, o) * 1e-3;
  auto T = basis.unsqueeze(0).expand({B, D, d}).contiguous();
  auto small = jacobian_term(x, W1, b1, W2, b2, T).item<double>();
  EXPECT_LT(small, 1e-4);
  Problem p = make_problem(B, D, d, 0, 4);
  EXPECT_GT(jacobian_term(p.x, p.W1, p.b1, p.W2, p.b2, p.T).item<double>(), 1.0);
}

TEST(JacobianTerm, BadShapesNameTheArgument) {
  Problem p = make_problem(2, 5, 2, 0, 1);
  try {
    jacobian_term(p.x, p.W1, p.b1, p.W2, p.b2, p.T.narrow(2, 0, 1));
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("T must be [2, 5, 2]"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- tangents

namespace {
// Points near a curved 3-D manifold in R^20 plus small noise: local PCA with
// k = D + d neighbours sees a spectrum that decays, as images do.
torch::Tensor manifold_points(int64_t N, int64_t D, uint64_t seed) {
  torch::manual_seed(seed);
  auto u = torch::rand({N, 3}, torch::kFloat64) * 3;
  auto A = torch::randn({3, D}, torch::kFloat64);
  auto B = torch::randn({3, D}, torch::kFloat64) * 0.3;
  return torch::mm(u, A) + torch::mm(torch::sin(u), B) + torch::randn({N, D}, torch::kFloat64) * 0.01;
}
}  // namespace

TEST(LocalTangents, NeighboursStartWithThePointItself) {
  auto X = manifold_points(50, 6, 1).to(torch::kFloat32);
  auto idx = hashlab::models::nearest_neighbours(X, 5, /*block=*/7);
  EXPECT_TRUE(torch::equal(idx.select(1, 0), torch::arange(50, torch::kLong)));
  // Against a full sort of the distances.
  auto d2 = torch::cdist(X, X);
  for (int64_t i : {0, 17, 49}) {
    auto ref = std::get<1>(torch::sort(d2[i])).narrow(0, 0, 5);
    EXPECT_TRUE(torch::equal(std::get<0>(torch::sort(idx[i])), std::get<0>(torch::sort(ref)))) << i;
  }
}

TEST(LocalTangents, MatchExactLocalPCA) {
  // The randomized subspace iteration against an exact eigh of each local
  // covariance: same kept counts, projectors T T^T within 1e-6 (float64).
  auto X = manifold_points(400, 20, 2);
  hashlab::models::TangentOptions o;
  o.d = 4;
  o.energy = 0.98;
  o.block = 37;
  auto fast = hashlab::models::local_tangents(X, o);
  auto exact = hashlab::models::local_tangents_exact(X, o);
  EXPECT_TRUE(torch::equal(fast.kept, exact.kept));
  EXPECT_GE(fast.kept.min().item<int64_t>(), 1);
  auto P1 = torch::matmul(fast.T, fast.T.transpose(1, 2));
  auto P2 = torch::matmul(exact.T, exact.T.transpose(1, 2));
  EXPECT_LT((P1 - P2).abs().max().item<double>(), 1e-6);
  EXPECT_TRUE(torch::allclose(fast.captured, exact.captured, 1e-8));
  // Kept columns are orthonormal, the rest zero.
  auto G = torch::matmul(fast.T.transpose(1, 2), fast.T);  // [N, d, d]
  auto cols = torch::arange(o.d, torch::kLong);
  auto eye = torch::diag_embed((cols.unsqueeze(0) < fast.kept.unsqueeze(1)).to(torch::kFloat64));
  EXPECT_LT((G - eye).abs().max().item<double>(), 1e-10);
  // The 98% rule: a lower share keeps fewer directions.
  o.energy = 0.5;
  EXPECT_LT(hashlab::models::local_tangents(X, o).kept.sum().item<int64_t>(),
            fast.kept.sum().item<int64_t>());
}

TEST(LocalTangents, SameOnOneAndTwoThreads) {
  // The blocks run in parallel, each op inside on one thread: the tangents
  // are the same numbers on any thread count (and so are the runs).
  auto X = manifold_points(300, 20, 2).to(torch::kFloat32);
  hashlab::models::TangentOptions o;
  o.d = 4;
  o.block = 16;  // 19 blocks, the last one short
  const int saved = at::get_num_threads();
  at::set_num_threads(1);
  auto one = hashlab::models::local_tangents(X, o);
  at::set_num_threads(2);
  auto two = hashlab::models::local_tangents(X, o);
  at::set_num_threads(saved);
  EXPECT_TRUE(torch::equal(one.T, two.T));
  EXPECT_TRUE(torch::equal(one.kept, two.kept));
  EXPECT_TRUE(torch::equal(one.captured, two.captured));
  EXPECT_GE(one.kept.min().item<int64_t>(), 1);
}

TEST(LocalTangents, CoincidentNeighboursKeepNothingAndBadOptionsAreNamed) {
  auto X = torch::ones({30, 5});
  hashlab::models::TangentOptions o;
  o.d = 2;
  auto t = hashlab::models::local_tangents(X, o);
  EXPECT_EQ(t.kept.sum().item<int64_t>(), 0);
  EXPECT_EQ(t.T.abs().sum().item<double>(), 0.0);
  o.neighbours = 31;
  try {
    hashlab::models::local_tangents(X, o);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("31 neighbours"), std::string::npos) << e.what();
  }
  o.neighbours = 1;  // the point alone: the message states the rule it breaks
  try {
    hashlab::models::local_tangents(X, o);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("must be at least 2 and at most the N = 30 points"),
              std::string::npos)
        << e.what();
  }
}

TEST(JacobianTerm, CudaEqualsCpu_CUDA) {
  // The same ATen code on the GPU (tools/gpu_check.sh runs it; skipped without
  // a device): value and gradients equal the CPU's in float64.
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device visible";
  auto p = make_problem(50, 40, 6, 2, 11);
  auto cpu = jacobian_term(p.x, p.W1, p.b1, p.W2, p.b2, p.T);
  auto gc = grads_of(cpu, p);
  Problem g{p.x.cuda(), p.W1.detach().cuda().requires_grad_(true),
            p.b1.detach().cuda().requires_grad_(true), p.W2.detach().cuda().requires_grad_(true),
            p.b2.detach().cuda().requires_grad_(true), p.T.cuda()};
  auto gpu = jacobian_term(g.x, g.W1, g.b1, g.W2, g.b2, g.T);
  auto gg = grads_of(gpu, g);
  EXPECT_NEAR(gpu.item<double>(), cpu.item<double>(), 1e-10 * std::abs(cpu.item<double>()));
  for (size_t i = 0; i < gc.size(); ++i)
    EXPECT_TRUE(torch::allclose(gg[i].cpu(), gc[i], 1e-9, 1e-11)) << i;
}
