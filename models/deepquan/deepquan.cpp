#include "models/deepquan/deepquan.h"

#include <fmt/format.h>

#include "csrc/core/error.h"

namespace hashlab::models {

TripletForm parse_triplet_form(const std::string& name) {
  if (name == "concat") return TripletForm::kConcat;
  if (name == "subspace") return TripletForm::kSubspace;
  fail("deepquan: unknown triplet form '{}' (concat | subspace)", name);
}

namespace {
void check_codes(const torch::Tensor& z, const torch::Tensor& c, const char* what) {
  TORCH_CHECK(z.dim() == 2, "deepquan: z must be [N, L], got ", z.sizes());
  TORCH_CHECK(c.sizes() == z.sizes(), "deepquan: ", what, " must be ", z.sizes(), ", got ",
              c.sizes());
}
}  // namespace

torch::Tensor deepquan_triplet_loss(const torch::Tensor& z, const torch::Tensor& c_pos,
                                    const torch::Tensor& c_neg, double margin, double lambda,
                                    int64_t M, TripletForm form) {
  check_codes(z, c_pos, "c_pos");
  check_codes(z, c_neg, "c_neg");
  TORCH_CHECK(M >= 1 && z.size(1) % M == 0, "deepquan_triplet_loss: M = ", M,
              " must divide L = ", z.size(1));
  const int64_t n = z.size(0);
  // [N, L] -> [N, G, L/G] with G = 1 (concat) or M (subspace); norms over the last dim.
  const int64_t groups = form == TripletForm::kConcat ? 1 : M;
  auto d_pos = (z - c_pos).reshape({n, groups, -1}).norm(2, -1);
  auto d_neg = (z - c_neg).reshape({n, groups, -1}).norm(2, -1);
  auto hinge = torch::relu(margin - (lambda * d_neg - d_pos));  // [N, G]
  return hinge.sum(1).mean();
}

torch::Tensor deepquan_quadratic_loss(const torch::Tensor& z, const torch::Tensor& c_pos) {
  check_codes(z, c_pos, "c_pos");
  return (z - c_pos).pow(2).sum(1).mean();
}

torch::Tensor deepquan_reconstruction_loss(const torch::Tensor& x, const torch::Tensor& x_rec) {
  TORCH_CHECK(x.dim() == 2 && x_rec.sizes() == x.sizes(),
              "deepquan_reconstruction_loss: x ", x.sizes(), " and x_rec ", x_rec.sizes(),
              " must both be [N, D]");
  return (x - x_rec).pow(2).sum(1).mean();
}

torch::Tensor sample_negative_ids(const torch::Tensor& pos_ids, int64_t K,
                                  c10::optional<at::Generator> generator) {
  TORCH_CHECK(pos_ids.dim() == 2, "sample_negative_ids: pos_ids must be [N, M], got ",
              pos_ids.sizes());
  TORCH_CHECK(K >= 2, "sample_negative_ids: need K >= 2 codewords, got ", K);
  // Drawn on the CPU so the draws do not depend on the device.
  auto offset = torch::randint(K - 1, pos_ids.sizes(), generator,
                               torch::TensorOptions().dtype(torch::kLong));
  auto pos = pos_ids.to(torch::kCPU, torch::kLong);
  return (pos + 1 + offset).remainder(K).to(pos_ids.device());
}

torch::Tensor gather_codewords(const torch::Tensor& codebooks, const torch::Tensor& ids) {
  TORCH_CHECK(codebooks.dim() == 3, "gather_codewords: codebooks must be [M, K, dsub], got ",
              codebooks.sizes());
  TORCH_CHECK(ids.dim() == 2 && ids.size(1) == codebooks.size(0),
              "gather_codewords: ids must be [N, ", codebooks.size(0), "], got ", ids.sizes());
  const int64_t M = codebooks.size(0);
  auto sub = torch::arange(M, ids.options().dtype(torch::kLong)).unsqueeze(0);  // [1, M]
  auto picked = codebooks.index({sub, ids.to(torch::kLong)});                  // [N, M, dsub]
  return picked.reshape({ids.size(0), -1});
}

DeepQuanAutoEncoderImpl::DeepQuanAutoEncoderImpl(DeepQuanAutoEncoderOptions options_)
    : options(std::move(options_)) {
  reset();
}

void DeepQuanAutoEncoderImpl::reset() {
  HL_CHECK(options.input_dim() > 0 && options.code_dim() > 0,
           "deepquan: input_dim {} and code_dim {} must be positive", options.input_dim(),
           options.code_dim());
  std::vector<int64_t> dims = {options.input_dim()};
  for (int64_t w : options.widths()) {
    HL_CHECK(w > 0, "deepquan: widths must be positive, got {}", w);
    dims.push_back(w);
  }
  dims.push_back(options.code_dim());
  encoder = torch::nn::Sequential();
  decoder = torch::nn::Sequential();
  const size_t layers = dims.size() - 1;
  for (size_t i = 0; i < layers; ++i) {
    encoder->push_back(torch::nn::Linear(dims[i], dims[i + 1]));
    if (i + 1 < layers) encoder->push_back(torch::nn::ReLU());
  }
  for (size_t i = layers; i > 0; --i) {
    decoder->push_back(torch::nn::Linear(dims[i], dims[i - 1]));
    if (i > 1) decoder->push_back(torch::nn::ReLU());
  }
  encoder = register_module("encoder", encoder);
  decoder = register_module("decoder", decoder);
}

torch::Tensor DeepQuanAutoEncoderImpl::encode(const torch::Tensor& x) {
  return encoder->forward(x.flatten(1));
}

torch::Tensor DeepQuanAutoEncoderImpl::decode(const torch::Tensor& z) {
  return decoder->forward(z);
}

std::string DeepQuanAutoEncoderImpl::emit_encoder(exporter::ScriptEmitter& e,
                                                  const std::string& x) const {
  std::string flat = e.let(fmt::format("torch.flatten({}, 1)", x));
  return exporter::emit_sequential(e, "encoder.", encoder, flat);
}

}  // namespace hashlab::models
