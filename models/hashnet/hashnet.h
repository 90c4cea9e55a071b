// HashNet: Deep Learning to Hash by Continuation (Cao, Long, Wang, Yu; ICCV 2017).
//
// Network: backbone -> fch (Linear feature_dim -> bits, W ~ N(0, 0.01^2),
// b = 0) -> z. Training activation g = tanh(beta * z), beta raised by the
// continuation schedule; inference codes h = sgn(z) (sgn(0) = +1, eq. 5).
#pragma once

#include <string>

#include <torch/torch.h>

#include "csrc/core/config.h"
#include "models/backbones/backbone.h"
#include "trainers/schedules.h"

namespace hashlab::models {

// ---------------------------------------------------------------- loss
//
// Weighted pairwise likelihood, paper eq. 4:
//
//   L = sum_{(i,j) in S} c_ij ( log(1 + exp(alpha <h_i, h_j>)) - alpha s_ij <h_i, h_j> )
//
// computed in the overflow-safe form softplus(a) - s a with
// softplus(a) = max(a, 0) + log1p(exp(-|a|)), a = alpha <h_i, h_j>. This is the
// exact value of the authors' log(1 + e^a) - s a, of which their code's
// a (1 - s) for a > 15 is an approximation (the two differ by log1p(e^-a) <
// 3.1e-7 there).
//
// Pair weights c_ij and the normaliser (the loss returned is the weighted mean):
//   kPaper (eq. 2): c_ij = |S|/|S1| for similar pairs, |S|/|S0| for dissimilar
//                   ones; L / |S|, i.e. mean over similar + mean over dissimilar.
//                   (An empty S1 or S0 contributes nothing.)
//   kCode  (thuml/HashNet pytorch loss.py): similar pairs x class_weight;
//                   L / (|S1| class_weight + |S0|).
//   kNone  (HashNet-W): c_ij = 1; L / |S|.
// S is every pair (i, j) with pair_mask[i, j] true (all pairs when undefined).
//
// Inputs:
//   h1: float [N1, B], h2: float [N2, B]   codes (tanh(beta z) or sign(z))
//   s:  float [N1, N2]                     1 similar, 0 dissimilar
//   alpha > 0                              sigmoid scale (authors: 10 / B)
//   pair_mask: bool [N1, N2] or undefined
// Output: float scalar, differentiable w.r.t. h1 and h2.
enum class PairWeighting { kPaper, kCode, kNone };
PairWeighting parse_pair_weighting(const std::string& name);  // paper | code | none

torch::Tensor hashnet_pairwise_loss(const torch::Tensor& h1, const torch::Tensor& h2,
                                    const torch::Tensor& s, double alpha,
                                    PairWeighting weighting, double class_weight = 1.0,
                                    const torch::Tensor& pair_mask = torch::Tensor());

// ---------------------------------------------------------------- continuation
//
// beta = init * (1 + gamma * t)^power, t = floor(step / every) * every
// (thuml/HashNet: init 1, gamma 0.005, power 0.5, every 200). Registered as
// the scalar schedule type "hashnet" (keys init, gamma, power, every).
class HashNetContinuation : public ScalarSchedule {
 public:
  HashNetContinuation() = default;
  HashNetContinuation(double init, double gamma, double power, int64_t every);
  explicit HashNetContinuation(Section& s);  // reads the keys above and finish()es
  double at(int64_t step, int64_t total_steps) const override;

 private:
  double init_ = 1.0, gamma_ = 0.005, power_ = 0.5;
  int64_t every_ = 200;
};

// ---------------------------------------------------------------- network

class HashNetImpl : public torch::nn::Module {
 public:
  HashNetImpl(Backbone backbone, int64_t bits);
  // x: float [N, C, H, W] (normalised) -> z: float [N, bits] (before tanh/sign).
  torch::Tensor forward(torch::Tensor x);
  // TorchScript of forward() on variable `x`; returns the z variable.
  std::string emit_torchscript(exporter::ScriptEmitter& e, const std::string& x) const;

  Backbone backbone;
  torch::nn::Linear fch{nullptr};
};
TORCH_MODULE(HashNet);

}  // namespace hashlab::models
