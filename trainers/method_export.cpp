#include "trainers/method_export.h"

#include "csrc/core/error.h"

namespace hashlab::exporter {

HasherSpec hasher_spec(const MethodContext& ctx, const std::string& method, int64_t nbits) {
  HasherSpec spec;
  spec.method = method;
  spec.nbits = nbits;
  spec.input_shape = ctx.input_shape;
  spec.input_scale = ctx.input_scale;
  spec.mean = ctx.mean;
  spec.std = ctx.std;
  return spec;
}

torch::jit::Module export_linear_hasher(const std::string& method, const torch::Tensor& W,
                                        const torch::Tensor& center, const MethodContext& ctx,
                                        const torch::Tensor& bias) {
  HL_CHECK(W.defined() && W.dim() == 2, "export_linear_hasher({}): W must be [D, B]", method);
  return export_linear_hasher(W, center, hasher_spec(ctx, method, W.size(1)), bias);
}

}  // namespace hashlab::exporter
