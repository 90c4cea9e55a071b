#include "models/deepquan/export.h"

#include <fmt/format.h>

#include "csrc/core/error.h"

namespace hashlab::models {

namespace {
// TorchScript compiled from C++ resolves `torch.X` to aten::X only, so dtypes
// are written as their ScalarType numbers (as csrc/export does).
constexpr int kUInt8 = static_cast<int>(torch::kUInt8);
constexpr int kInt64 = static_cast<int>(torch::kInt64);
}  // namespace

torch::jit::Module build_pq_hasher(exporter::HasherSpec spec, const torch::Tensor& codebooks,
                                   const exporter::NetEmitter& emit_net) {
  HL_CHECK(codebooks.defined() && codebooks.dim() == 3,
           "export: PQ codebooks must be [M, K, dsub]");
  const int64_t M = codebooks.size(0), K = codebooks.size(1), dsub = codebooks.size(2);
  HL_CHECK(M >= 1 && K >= 1 && K <= 256 && dsub >= 1,
           "export: PQ codebooks [{}, {}, {}] need M >= 1, 1 <= K <= 256, dsub >= 1", M, K, dsub);
  spec.nbits = 8 * M;
  exporter::HasherBase base =
      exporter::hasher_base(spec, emit_net, "hashlab_" + spec.method + "_pq_hasher");
  torch::jit::Module& m = base.module;
  m.register_attribute("M", c10::IntType::get(), M);
  m.register_attribute("K", c10::IntType::get(), K);
  m.register_attribute("dsub", c10::IntType::get(), dsub);
  m.register_buffer("codebooks", codebooks.detach().to(torch::kCPU, torch::kFloat32).contiguous());

  // encode: one nearest-codeword search per subspace, unrolled; the same
  // calls as search::nearest_centroids (addmm(||c||², z_m, cᵀ, 1, −2), min
  // over codewords) so the ids match the eager ones bit for bit.
  std::string encode_body;
  std::vector<std::string> ids;
  for (int64_t s = 0; s < M; ++s) {
    encode_body += fmt::format(
        "    c{s} = self.codebooks[{s}]\n"
        "    n{s} = torch.sum(torch.pow(c{s}, 2), [1])\n"
        "    d{s} = torch.addmm(torch.unsqueeze(n{s}, 0), z[:, {a}:{b}], torch.t(c{s}), beta=1.0, "
        "alpha=-2.0)\n"
        "    v{s}, i{s} = torch.min(d{s}, 1)\n",
        fmt::arg("s", s), fmt::arg("a", s * dsub), fmt::arg("b", (s + 1) * dsub));
    ids.push_back(fmt::format("i{}", s));
  }
  base.source += fmt::format(
      R"(
def encode(self, x):
    z = self.embed(x)
{encode_body}    return torch.stack([{ids}], 1).to({u8})

def forward(self, x):
    return self.encode(x)

def decode(self, ids):
    assert ids.dim() == 2 and ids.size(1) == {M}, "hashlab hasher: expected ids [N, {M}]"
    sub = torch.unsqueeze(torch.arange({M}), 0)
    return self.codebooks[sub, ids.to({i64})].reshape([ids.size(0), {L}])
)",
      fmt::arg("i64", kInt64), fmt::arg("u8", kUInt8), fmt::arg("encode_body", encode_body),
      fmt::arg("ids", fmt::join(ids, ", ")), fmt::arg("M", M), fmt::arg("L", M * dsub));
  return exporter::define_hasher(base, spec.method);
}

}  // namespace hashlab::models
