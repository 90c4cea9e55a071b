// SiGAH: Sparsity-induced Generative Adversarial Hashing (paper:
// ../shared/papers/sigah.md). The networks and the loss terms; method.h beside
// it trains them.
//
// Network (sec. 3.4, Fig. 2), on centred inputs x [N, d]:
//   hash layer   h = tanh(W x),  W [r, d], no bias           codes b = sign(W x) (eq. 2)
//   generator    g = act(W_g h + c_g),  m = 2d outputs         act: LeakyReLU(slope) | ReLU
//   dictionary   x^ = Psi g,  Psi [d, m] ~ N(0, 1/d), fixed  (eq. 5; a buffer, never trained)
//   discriminator  Dec(Enc(a)), d - 50 - d, LeakyReLU(0.2) hidden, linear output
//   energy       e(a) = mean_j (Dec(Enc(a))_j - a_j)^2      [N]   (eq. 14, "MSE-loss based")
//
// Generator loss (eq. 20 with eq. 9's bound and EBGAN's adversarial term), means over the batch:
//   L_G = mean ||x^ - x||_2                      recon    (unsquared norm, as eq. 20 prints)
//       + alpha * quant(h)                       quant
//       + lambda * mean ||g||_2                  sparsity
//       + gamma * L_S                            graph    (eq. 17)
//       + adv_weight * mean e(x^)                adv      (EBGAN; eq. 20 omits it)
//   quant "bound":   mean_i sum_k (1 - h_ik^2)   (eq. 9: r - Tr(b b^T); pulls |h| to 1)
//   quant "literal": mean_i sum_k h_ik^2         (+Tr(b b^T) as eqs. 10/13/20 print; pushes h to 0)
// Discriminator loss (eq. 21):
//   L_D = mean e(x) + mean max(0, beta - e(x^.detach()))
//
// Graph term (eq. 17), S_ij = exp(-sigma ||x_i - x_j||) within the batch (no gradient):
//   "mean":  L_S = 1/N^2 sum_{i != j} S_ij ||h_i - h_j||^2
//   "paper": L_S = sum_{i != j} S_ij ||h_i - h_j||       (unsquared, unnormalised)
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

namespace hashlab::models {

struct SiGAHNetOptions {
  int64_t input_dim = 0;     // d
  int64_t bits = 32;         // r
  int64_t gen_dim = 0;       // m; 0 = 2 d
  int64_t disc_hidden = 50;  // d_l
  std::string activation = "leaky_relu";  // leaky_relu | relu
  double slope = 0.2;
  uint64_t seed = 0;  // draws Psi and the initial weights
};

class SiGAHNetImpl : public torch::nn::Module {
 public:
  explicit SiGAHNetImpl(const SiGAHNetOptions& o);
  // x: centred [N, d]. Returns W x [N, r] (before tanh).
  torch::Tensor project(const torch::Tensor& x);
  // h [N, r] -> g [N, m].
  torch::Tensor generate(const torch::Tensor& h);
  // g [N, m] -> x^ [N, d].
  torch::Tensor reconstruct(const torch::Tensor& g);
  // e(a) [N]: the discriminator's reconstruction error per item.
  torch::Tensor energy(const torch::Tensor& a);

  const SiGAHNetOptions& options() const { return o_; }
  torch::nn::Linear W{nullptr}, gen{nullptr}, enc{nullptr}, dec{nullptr};
  torch::Tensor psi;  // buffer [d, m]

 private:
  SiGAHNetOptions o_;
};
TORCH_MODULE(SiGAHNet);

// quant(h) for form "bound" or "literal" (see above). h [N, r] -> scalar.
torch::Tensor sigah_quantization(const torch::Tensor& h, const std::string& form);

// S_ij = exp(-sigma ||x_i - x_j||) for x [N, d] (no gradient): [N, N], zero diagonal.
torch::Tensor sigah_similarity(const torch::Tensor& x, double sigma);
// L_S for h [N, r] and S [N, N] (zero diagonal), form "mean" or "paper".
torch::Tensor sigah_graph_loss(const torch::Tensor& h, const torch::Tensor& S,
                               const std::string& form);

}  // namespace hashlab::models
