#include "models/hashnet/hashnet.h"

#include <cmath>

#include <fmt/format.h>

#include "csrc/core/error.h"

namespace hashlab::models {

HashNetContinuation::HashNetContinuation(double init, double gamma, double power, int64_t every)
    : init_(init), gamma_(gamma), power_(power), every_(every) {
  HL_CHECK(every >= 1, "HashNetContinuation: every must be >= 1, got {}", every);
}

HashNetContinuation::HashNetContinuation(Section& s) {
  s.get("init", init_);
  s.get("gamma", gamma_);
  s.get("power", power_);
  s.get("every", every_, Range{1, 1e12});
  s.finish();
}

double HashNetContinuation::at(int64_t step, int64_t) const {
  double t = static_cast<double>((step / every_) * every_);
  return init_ * std::pow(1.0 + gamma_ * t, power_);
}

PairWeighting parse_pair_weighting(const std::string& name) {
  if (name == "paper") return PairWeighting::kPaper;
  if (name == "code") return PairWeighting::kCode;
  if (name == "none") return PairWeighting::kNone;
  fail("hashnet: unknown pair weighting '{}' (known: paper, code, none)", name);
}

torch::Tensor hashnet_pairwise_loss(const torch::Tensor& h1, const torch::Tensor& h2,
                                    const torch::Tensor& s, double alpha,
                                    PairWeighting weighting, double class_weight,
                                    const torch::Tensor& pair_mask) {
  TORCH_CHECK(h1.dim() == 2 && h2.dim() == 2 && h1.size(1) == h2.size(1),
              "hashnet_pairwise_loss: h1 [N1, B] and h2 [N2, B] expected, got ", h1.sizes(),
              " and ", h2.sizes());
  TORCH_CHECK(s.dim() == 2 && s.size(0) == h1.size(0) && s.size(1) == h2.size(0),
              "hashnet_pairwise_loss: s must be [", h1.size(0), ", ", h2.size(0), "], got ",
              s.sizes());
  TORCH_CHECK(!pair_mask.defined() || pair_mask.sizes() == s.sizes(),
              "hashnet_pairwise_loss: pair_mask must be shaped like s ", s.sizes(), ", got ",
              pair_mask.sizes());
  TORCH_CHECK(alpha > 0, "hashnet_pairwise_loss: alpha must be positive, got ", alpha);
  TORCH_CHECK(class_weight > 0, "hashnet_pairwise_loss: class_weight must be positive, got ",
              class_weight);

  // Float32 even under autocast: a = alpha <h_i, h_j> reaches alpha * B.
  torch::Tensor a = alpha * torch::matmul(h1.to(torch::kFloat32), h2.to(torch::kFloat32).t());
  torch::Tensor sf = s.to(torch::kFloat32);
  torch::Tensor per_pair = torch::relu(a) + torch::log1p(torch::exp(-a.abs())) - sf * a;

  torch::Tensor valid = pair_mask.defined() ? pair_mask.to(torch::kBool)
                                            : torch::ones_like(sf, torch::kBool);
  torch::Tensor similar = (sf > 0.5).logical_and(valid).to(torch::kFloat32);
  torch::Tensor dissimilar = (sf <= 0.5).logical_and(valid).to(torch::kFloat32);
  torch::Tensor n1 = similar.sum(), n0 = dissimilar.sum();
  // Weights already divided by the normaliser; clamp_min(1) makes an empty
  // set contribute 0 instead of 0/0 (no host sync needed).
  torch::Tensor w;
  switch (weighting) {
    case PairWeighting::kPaper:
      w = similar / n1.clamp_min(1) + dissimilar / n0.clamp_min(1);
      break;
    case PairWeighting::kCode:
      w = (similar * class_weight + dissimilar) / (n1 * class_weight + n0).clamp_min(1);
      break;
    case PairWeighting::kNone:
      w = (similar + dissimilar) / (n1 + n0).clamp_min(1);
      break;
  }
  return (w * per_pair).sum();
}

HashNetImpl::HashNetImpl(Backbone bb, int64_t bits) : backbone(std::move(bb)) {
  HL_CHECK(bits > 0, "hashnet: bits must be positive, got {}", bits);
  register_module("backbone", backbone);
  fch = register_module("fch", torch::nn::Linear(backbone->feature_dim(), bits));
  torch::NoGradGuard no_grad;
  fch->weight.normal_(0.0, 0.01);
  fch->bias.zero_();
}

torch::Tensor HashNetImpl::forward(torch::Tensor x) { return fch->forward(backbone->forward(x)); }

std::string HashNetImpl::emit_torchscript(exporter::ScriptEmitter& e, const std::string& x) const {
  std::string f = backbone->emit_torchscript(e, "backbone.", x);
  return exporter::emit_linear(e, "fch.", *fch, f);
}

}  // namespace hashlab::models
