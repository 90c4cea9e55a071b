#include "models/deepquan/export.h"

#include <fmt/format.h>

#include "csrc/core/error.h"

namespace hashlab::models {

namespace {
// TorchScript compiled from C++ resolves `torch.X` to aten::X only, so dtypes
// are written as their ScalarType numbers (as csrc/export does).
constexpr int kUInt8 = static_cast<int>(torch::kUInt8);
constexpr int kInt64 = static_cast<int>(torch::kInt64);
constexpr int kFloat32 = static_cast<int>(torch::kFloat32);
}  // namespace

torch::jit::Module build_pq_hasher(exporter::HasherSpec spec, const torch::Tensor& codebooks,
                                   const exporter::NetEmitter& emit_net) {
  HL_CHECK(codebooks.defined() && codebooks.dim() == 3,
           "export: PQ codebooks must be [M, K, dsub]");
  const int64_t M = codebooks.size(0), K = codebooks.size(1), dsub = codebooks.size(2);
  HL_CHECK(M >= 1 && K >= 1 && K <= 256 && dsub >= 1,
           "export: PQ codebooks [{}, {}, {}] need M >= 1, 1 <= K <= 256, dsub >= 1", M, K, dsub);
  HL_CHECK(!spec.input_shape.empty(), "export: empty input shape");
  HL_CHECK(spec.input_scale > 0, "export: input_scale must be positive, got {}",
           spec.input_scale);
  spec.nbits = 8 * M;

  torch::jit::Module m("hashlab_" + spec.method + "_pq_hasher");
  m.register_attribute("nbits", c10::IntType::get(), spec.nbits);
  m.register_attribute("method", c10::StringType::get(), spec.method);
  m.register_attribute("input_shape", c10::ListType::ofInts(),
                       c10::List<int64_t>(spec.input_shape));
  m.register_attribute("input_scale", c10::FloatType::get(), spec.input_scale);
  m.register_attribute("mean", c10::ListType::ofFloats(), c10::List<double>(spec.mean));
  m.register_attribute("std", c10::ListType::ofFloats(), c10::List<double>(spec.std));
  m.register_attribute("M", c10::IntType::get(), M);
  m.register_attribute("K", c10::IntType::get(), K);
  m.register_attribute("dsub", c10::IntType::get(), dsub);

  // mean/std broadcasting over [N, C, H, W] (per channel) or [N, D] (per feature).
  const int64_t channels = spec.input_shape[0];
  auto stat = [&](const std::vector<double>& v, double none, const char* what) {
    if (v.empty()) return torch::full({1}, none, torch::kFloat32);
    HL_CHECK(v.size() == 1 || static_cast<int64_t>(v.size()) == channels,
             "export: {} has {} values; expected 1 or {}", what, v.size(), channels);
    torch::Tensor t = torch::tensor(v, torch::kFloat64).to(torch::kFloat32);
    if (v.size() == 1) return t;
    std::vector<int64_t> shape(spec.input_shape.size() + 1, 1);
    shape[1] = channels;
    return t.reshape(shape);
  };
  m.register_buffer("input_mean", stat(spec.mean, 0.0, "mean"));
  m.register_buffer("input_std", stat(spec.std, 1.0, "std"));
  m.register_buffer("codebooks", codebooks.detach().to(torch::kCPU, torch::kFloat32).contiguous());

  exporter::ScriptEmitter e(m);
  std::string z = emit_net(e, "x");

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
  const int64_t dims = static_cast<int64_t>(spec.input_shape.size()) + 1;
  std::string src = fmt::format(
      R"(
def preprocess(self, x):
    assert x.dim() == {dims}, "hashlab hasher: expected input [N] + {shape}"
    x = x.to({f32})
    return (x / self.input_scale - self.input_mean) / self.input_std

def embed(self, x):
    x = self.preprocess(x)
{body}    return {z}

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
      fmt::arg("dims", dims), fmt::arg("shape", exporter::int_list(spec.input_shape)),
      fmt::arg("f32", kFloat32), fmt::arg("i64", kInt64), fmt::arg("u8", kUInt8),
      fmt::arg("body", e.body()), fmt::arg("z", z), fmt::arg("encode_body", encode_body),
      fmt::arg("ids", fmt::join(ids, ", ")), fmt::arg("M", M), fmt::arg("L", M * dsub));
  try {
    m.define(src);
  } catch (const c10::Error& err) {
    fail("export: TorchScript for PQ method '{}' does not compile: {}\n{}", spec.method,
         err.what_without_backtrace(), src);
  }
  m.eval();
  return m;
}

}  // namespace hashlab::models
