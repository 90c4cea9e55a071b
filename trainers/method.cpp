#include "trainers/method.h"

#include "csrc/codes/codes.h"
#include "csrc/search/pq.h"

namespace hashlab {

torch::Tensor Method::encode(const torch::Tensor& x) { return codes::pack_signs(embed(x)); }

torch::Tensor Method::encode_pq(const torch::Tensor& x) {
  return search::pq_encode(pq_codebooks(), embed(x));
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
  register_builtin_methods();
  return method_registry().create(name, where, model_cfg, ctx);
}

}  // namespace hashlab
