#include "models/sigah/sigah.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "csrc/core/error.h"

namespace hashlab::models {

SiGAHNetImpl::SiGAHNetImpl(const SiGAHNetOptions& o) : o_(o) {
  HL_CHECK(o_.input_dim > 0 && o_.bits > 0, "sigah: input_dim {} and bits {} must be positive",
           o_.input_dim, o_.bits);
  HL_CHECK(o_.activation == "leaky_relu" || o_.activation == "relu",
           "sigah: activation must be leaky_relu or relu, got '{}'", o_.activation);
  if (o_.gen_dim == 0) o_.gen_dim = 2 * o_.input_dim;
  const int64_t d = o_.input_dim, m = o_.gen_dim;
  W = register_module("W", torch::nn::Linear(torch::nn::LinearOptions(d, o_.bits).bias(false)));
  gen = register_module("gen", torch::nn::Linear(o_.bits, m));
  enc = register_module("enc", torch::nn::Linear(d, o_.disc_hidden));
  dec = register_module("dec", torch::nn::Linear(o_.disc_hidden, d));
  // The random dictionary: N(0, 1/d), from the model seed alone.
  auto gen_psi = at::make_generator<at::CPUGeneratorImpl>(o_.seed ^ 0x5167u);
  psi = register_buffer(
      "psi", at::randn({d, m}, gen_psi, torch::TensorOptions().dtype(torch::kFloat32)) /
                 std::sqrt(static_cast<double>(d)));
}

torch::Tensor SiGAHNetImpl::project(const torch::Tensor& x) { return W->forward(x); }

torch::Tensor SiGAHNetImpl::generate(const torch::Tensor& h) {
  torch::Tensor pre = gen->forward(h);
  return o_.activation == "relu" ? torch::relu(pre) : torch::leaky_relu(pre, o_.slope);
}

torch::Tensor SiGAHNetImpl::reconstruct(const torch::Tensor& g) {
  return torch::matmul(g, psi.t());
}

torch::Tensor SiGAHNetImpl::energy(const torch::Tensor& a) {
  torch::Tensor r = dec->forward(torch::leaky_relu(enc->forward(a), 0.2));
  return (r - a).pow(2).mean(1);
}

torch::Tensor sigah_quantization(const torch::Tensor& h, const std::string& form) {
  TORCH_CHECK(h.dim() == 2, "sigah_quantization: h must be [N, r], got ", h.sizes());
  if (form == "bound") return (1 - h.pow(2)).sum(1).mean();
  TORCH_CHECK(form == "literal", "sigah_quantization: form must be bound or literal, got '", form,
              "'");
  return h.pow(2).sum(1).mean();
}

torch::Tensor sigah_similarity(const torch::Tensor& x, double sigma) {
  TORCH_CHECK(x.dim() == 2, "sigah_similarity: x must be [N, d], got ", x.sizes());
  TORCH_CHECK(sigma > 0, "sigah_similarity: sigma must be > 0, got ", sigma);
  torch::NoGradGuard no_grad;
  torch::Tensor s = torch::exp(-sigma * torch::cdist(x, x));
  s.fill_diagonal_(0);
  return s;
}

torch::Tensor sigah_graph_loss(const torch::Tensor& h, const torch::Tensor& S,
                               const std::string& form) {
  TORCH_CHECK(h.dim() == 2 && S.dim() == 2 && S.size(0) == h.size(0) && S.size(1) == h.size(0),
              "sigah_graph_loss: h [N, r] and S [N, N] expected, got ", h.sizes(), " and ",
              S.sizes());
  if (form == "paper") return (S * torch::cdist(h, h)).sum();
  TORCH_CHECK(form == "mean", "sigah_graph_loss: form must be mean or paper, got '", form, "'");
  torch::Tensor sq = h.pow(2).sum(1);
  torch::Tensor d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * torch::matmul(h, h.t())).clamp_min(0);
  const double n = static_cast<double>(h.size(0));
  return (S * d2).sum() / (n * n);
}

}  // namespace hashlab::models
