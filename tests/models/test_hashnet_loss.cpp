// HashNet's weighted pairwise loss (paper eq. 4, weights eq. 2) against a
// naive double-precision transcription, and the continuation schedule.
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/hashnet/hashnet.h"

using hashlab::models::hashnet_pairwise_loss;
using hashlab::models::PairWeighting;

namespace {

// The formula as written: sum_ij c_ij (log(1 + e^a) - s a) / normaliser, in
// double, loops only. `mask` may be undefined.
double naive_loss(const torch::Tensor& h1, const torch::Tensor& h2, const torch::Tensor& s,
                  double alpha, PairWeighting w, double class_weight, const torch::Tensor& mask) {
  auto a1 = h1.to(torch::kFloat64).contiguous(), a2 = h2.to(torch::kFloat64).contiguous();
  auto sd = s.to(torch::kFloat64).contiguous();
  const int64_t n1 = h1.size(0), n2 = h2.size(0), B = h1.size(1);
  double n_sim = 0, n_dis = 0;
  for (int64_t i = 0; i < n1; ++i)
    for (int64_t j = 0; j < n2; ++j) {
      if (mask.defined() && !mask[i][j].item<bool>()) continue;
      (sd[i][j].item<double>() > 0.5 ? n_sim : n_dis) += 1;
    }
  double total = 0;
  for (int64_t i = 0; i < n1; ++i)
    for (int64_t j = 0; j < n2; ++j) {
      if (mask.defined() && !mask[i][j].item<bool>()) continue;
      double dot = 0;
      for (int64_t k = 0; k < B; ++k) dot += a1[i][k].item<double>() * a2[j][k].item<double>();
      double a = alpha * dot, sij = sd[i][j].item<double>();
      double l = std::log(1 + std::exp(a)) - sij * a;
      double c = 1;
      if (w == PairWeighting::kPaper) c = (n_sim + n_dis) / (sij > 0.5 ? n_sim : n_dis);
      if (w == PairWeighting::kCode) c = sij > 0.5 ? class_weight : 1.0;
      total += c * l;
    }
  double norm = n_sim + n_dis;
  if (w == PairWeighting::kCode) norm = n_sim * class_weight + n_dis;
  return total / norm;
}

torch::Tensor random_similarity(int64_t n1, int64_t n2, int64_t classes) {
  auto l1 = torch::randint(classes, {n1}, torch::kLong);
  auto l2 = torch::randint(classes, {n2}, torch::kLong);
  return l1.unsqueeze(1).eq(l2.unsqueeze(0)).to(torch::kFloat32);
}

}  // namespace

TEST(HashNetLoss, MatchesNaiveFormulaForEveryWeighting) {
  torch::manual_seed(1);
  for (int64_t bits : {8, 13, 64}) {
    auto h1 = torch::tanh(torch::randn({7, bits}));
    auto h2 = torch::tanh(torch::randn({5, bits}));
    auto s = random_similarity(7, 5, 3);
    double alpha = 10.0 / static_cast<double>(bits);
    for (auto w : {PairWeighting::kPaper, PairWeighting::kCode, PairWeighting::kNone}) {
      double got = hashnet_pairwise_loss(h1, h2, s, alpha, w, 4.0).item<double>();
      double want = naive_loss(h1, h2, s, alpha, w, 4.0, torch::Tensor());
      EXPECT_NEAR(got, want, 1e-5 * std::max(1.0, std::abs(want)))
          << "bits " << bits << " weighting " << static_cast<int>(w);
    }
  }
}

TEST(HashNetLoss, PairMaskDropsPairsFromSumsAndCounts) {
  torch::manual_seed(2);
  auto h = torch::tanh(torch::randn({6, 16}));
  auto s = random_similarity(6, 6, 2);
  auto mask = torch::eye(6, torch::kBool).logical_not();
  for (auto w : {PairWeighting::kPaper, PairWeighting::kCode, PairWeighting::kNone}) {
    double got = hashnet_pairwise_loss(h, h, s, 0.5, w, 3.0, mask).item<double>();
    EXPECT_NEAR(got, naive_loss(h, h, s, 0.5, w, 3.0, mask), 1e-5);
  }
}

TEST(HashNetLoss, PaperWeightingIsMeanOverSimilarPlusMeanOverDissimilar) {
  // Eq. 2 with a 1:3 imbalance: both groups weigh the same in total.
  auto h1 = torch::tensor({{1.f, 1.f}, {1.f, -1.f}});
  auto h2 = torch::tensor({{1.f, 1.f}, {-1.f, 1.f}});
  auto s = torch::tensor({{1.f, 0.f}, {0.f, 0.f}});
  const double alpha = 0.7;
  auto per_pair = [&](double dot, double sij) {
    double a = alpha * dot;
    return std::log1p(std::exp(a)) - sij * a;
  };
  double sim = per_pair(2, 1);
  double dis = (per_pair(-0.0, 0) + per_pair(0, 0) + per_pair(-2, 0)) / 3;
  EXPECT_NEAR(hashnet_pairwise_loss(h1, h2, s, alpha, PairWeighting::kPaper).item<double>(),
              sim + dis, 1e-6);
  // The released code's weighting with class_weight 1 is the unweighted mean.
  EXPECT_NEAR(hashnet_pairwise_loss(h1, h2, s, alpha, PairWeighting::kCode, 1.0).item<double>(),
              hashnet_pairwise_loss(h1, h2, s, alpha, PairWeighting::kNone).item<double>(), 1e-7);
}

TEST(HashNetLoss, AllDissimilarBatchHasNoNaN) {
  // |S1| = 0: the empty group contributes nothing instead of 0/0.
  auto h = torch::tanh(torch::randn({4, 8}));
  auto s = torch::zeros({4, 4});
  for (auto w : {PairWeighting::kPaper, PairWeighting::kCode, PairWeighting::kNone}) {
    double got = hashnet_pairwise_loss(h, h, s, 1.0, w, 2.0).item<double>();
    EXPECT_NEAR(got, naive_loss(h, h, s, 1.0, w, 2.0, torch::Tensor()), 1e-5);
  }
}

TEST(HashNetLoss, LargeInnerProductsStayFiniteAndMatchTheLinearForm) {
  // alpha <h_i, h_j> = 10 * 64 = 640: float exp() overflows there, so the
  // naive float formula gives inf; the authors' code switches to a (1 - s)
  // above 15, which equals the exact value to within log1p(e^-a).
  const int64_t bits = 64;
  auto h1 = torch::ones({3, bits}, torch::requires_grad());
  auto h2 = torch::ones({2, bits});
  auto s = torch::tensor({{1.f, 0.f}, {0.f, 0.f}, {1.f, 1.f}});
  const double alpha = 10.0;
  auto naive_float = torch::log(1 + torch::exp(alpha * torch::matmul(h1, h2.t())));
  ASSERT_TRUE(torch::isinf(naive_float).all().item<bool>());

  auto loss = hashnet_pairwise_loss(h1, h2, s, alpha, PairWeighting::kNone);
  ASSERT_TRUE(std::isfinite(loss.item<double>()));
  // Linear form: a (1 - s) per pair; here a = 640, three dissimilar of six pairs.
  EXPECT_NEAR(loss.item<double>(), 640.0 * 3 / 6, 1e-3);
  loss.backward();
  ASSERT_TRUE(torch::isfinite(h1.grad()).all().item<bool>());
  // d/dh1[i,k] of mean over pairs = alpha * (sigmoid(a) - s) * h2[j,k] / 6:
  // row 0 has one dissimilar pair -> alpha/6 per bit; row 2 none -> 0.
  EXPECT_NEAR(h1.grad()[0][0].item<double>(), alpha / 6, 1e-5);
  EXPECT_NEAR(h1.grad()[2][0].item<double>(), 0.0, 1e-5);

  // Strongly negative inner products for a similar pair: loss ~ -a, no overflow.
  auto h3 = -torch::ones({1, bits});
  auto l2 = hashnet_pairwise_loss(h3, h2.narrow(0, 0, 1), torch::ones({1, 1}), alpha,
                                  PairWeighting::kNone);
  EXPECT_NEAR(l2.item<double>(), 640.0, 1e-3);
}

TEST(HashNetLoss, RejectsMismatchedShapes) {
  auto h = torch::zeros({3, 8});
  EXPECT_THROW(hashnet_pairwise_loss(h, torch::zeros({3, 9}), torch::zeros({3, 3}), 1.0,
                                     PairWeighting::kPaper),
               c10::Error);
  EXPECT_THROW(hashnet_pairwise_loss(h, h, torch::zeros({3, 2}), 1.0, PairWeighting::kPaper),
               c10::Error);
  EXPECT_THROW(hashlab::models::parse_pair_weighting("weighted"), hashlab::Error);
}

TEST(HashNetContinuation, BetaFollowsTheAuthorsSchedule) {
  // thuml/HashNet: beta = (1 + 0.005 t)^0.5, t advanced in steps of 200.
  hashlab::models::HashNetContinuation c(1.0, 0.005, 0.5, 200);
  EXPECT_DOUBLE_EQ(c.at(0, 10000), 1.0);
  EXPECT_DOUBLE_EQ(c.at(199, 10000), 1.0);
  EXPECT_NEAR(c.at(200, 10000), std::sqrt(2.0), 1e-12);
  EXPECT_NEAR(c.at(5399, 10000), std::sqrt(1 + 0.005 * 5200), 1e-12);
  EXPECT_NEAR(c.at(10000, 10000), std::sqrt(51.0), 1e-12);
  // From a config: the defaults are the authors'; keys of other types are refused.
  auto cfg = hashlab::Config::from_string("a: {gamma: 0.01}\nb: {power: 1, final: 2}\n");
  hashlab::Section a = cfg.section("a");
  EXPECT_NEAR(hashlab::models::HashNetContinuation(a).at(400, 0), std::sqrt(5.0), 1e-12);
  hashlab::Section b = cfg.section("b");
  EXPECT_THROW(hashlab::models::HashNetContinuation{b}, hashlab::Error);
}
