#include "trainers/method.h"

#include "csrc/codes/codes.h"

namespace hashlab {

torch::Tensor Method::encode(const torch::Tensor& x) { return codes::pack_signs(embed(x)); }

codes::Codes Method::make_codes(torch::Tensor data) const {
  if (code_kind() == codes::CodeKind::pq) {
    codes::PQCodes pq = pq_codebooks();
    if (!data.defined()) data = torch::empty({0, pq.M}, torch::kUInt8);
    pq.ids = data.to(torch::kCPU).contiguous();
    return codes::Codes::pq(std::move(pq));
  }
  if (!data.defined()) data = torch::empty({0, (nbits() + 7) / 8}, torch::kUInt8);
  return codes::Codes::binary({nbits(), data.to(torch::kCPU).contiguous()});
}

torch::jit::Module Method::to_torchscript(const MethodContext&) const {
  fail("method '{}' has no TorchScript export", name());
}

MethodRegistry& method_registry() {
  static MethodRegistry r("method");
  return r;
}

std::unique_ptr<Method> create_method(const std::string& name, Section& model_cfg,
                                      const MethodContext& ctx, const std::string& where) {
  return method_registry().create(name, where, model_cfg, ctx);
}

}  // namespace hashlab
