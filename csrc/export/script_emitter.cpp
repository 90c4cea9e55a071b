#include "csrc/export/script_emitter.h"

#include <algorithm>

#include <fmt/format.h>

#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"

namespace hashlab::exporter {

namespace {

std::string script_name(const std::string& dotted) {
  std::string s = dotted;
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

// TorchScript compiled from C++ resolves `torch.X` to aten::X only, so dtypes
// are written as their ScalarType numbers.
constexpr int kUInt8 = static_cast<int>(torch::kUInt8);
constexpr int kInt64 = static_cast<int>(torch::kInt64);
constexpr int kFloat32 = static_cast<int>(torch::kFloat32);

}  // namespace

std::string ScriptEmitter::add(const std::string& dotted_name, const torch::Tensor& t,
                               bool is_buffer) {
  TORCH_CHECK(t.defined(), "ScriptEmitter: undefined tensor for '", dotted_name, "'");
  std::string name = script_name(dotted_name);
  auto it = names_.find(name);
  TORCH_CHECK(it == names_.end(), "ScriptEmitter: '", dotted_name, "' and '",
              it == names_.end() ? "" : it->second, "' map to the same name '", name, "'");
  names_[name] = dotted_name;
  torch::Tensor v = t.detach().to(torch::kCPU).contiguous().clone();
  if (is_buffer) {
    module_.register_buffer(name, v);
  } else {
    module_.register_parameter(name, v, /*is_buffer=*/false);
  }
  return "self." + name;
}

std::string ScriptEmitter::param(const std::string& dotted_name, const torch::Tensor& t) {
  return add(dotted_name, t, false);
}

std::string ScriptEmitter::buffer(const std::string& dotted_name, const torch::Tensor& t) {
  return add(dotted_name, t, true);
}

std::string ScriptEmitter::let(const std::string& expr) {
  std::string var = fmt::format("t{}", next_var_++);
  line(var + " = " + expr);
  return var;
}

void ScriptEmitter::line(const std::string& stmt) { body_ << "    " << stmt << "\n"; }

std::string int_list(const std::vector<int64_t>& v) {
  return fmt::format("[{}]", fmt::join(v, ", "));
}

std::string float_literal(double v) {
  std::string s = fmt::format("{:.17g}", v);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

namespace {
std::vector<int64_t> vec(torch::IntArrayRef a) { return a.vec(); }
template <size_t N>
std::vector<int64_t> vec(const torch::ExpandingArray<N>& a) {
  return std::vector<int64_t>(a->begin(), a->end());
}
}  // namespace

std::string emit_conv2d(ScriptEmitter& e, const std::string& prefix,
                        const torch::nn::Conv2dImpl& conv, const std::string& x) {
  const auto& o = conv.options;
  HL_CHECK(c10::holds_alternative<torch::ExpandingArray<2>>(o.padding()),
           "export: {}: only explicit conv padding is supported", prefix);
  HL_CHECK(c10::holds_alternative<torch::enumtype::kZeros>(o.padding_mode()),
           "export: {}: only zero padding is supported", prefix);
  auto pad = c10::get<torch::ExpandingArray<2>>(o.padding());
  std::string w = e.param(prefix + "weight", conv.weight);
  std::string b = conv.bias.defined() ? e.param(prefix + "bias", conv.bias) : "None";
  return e.let(fmt::format("torch.conv2d({}, {}, {}, {}, {}, {}, {})", x, w, b,
                           int_list(vec(o.stride())), int_list(vec(pad)),
                           int_list(vec(o.dilation())), o.groups()));
}

std::string emit_batchnorm2d(ScriptEmitter& e, const std::string& prefix,
                             const torch::nn::BatchNorm2dImpl& bn, const std::string& x) {
  const auto& o = bn.options;
  HL_CHECK(o.track_running_stats(), "export: {}: BatchNorm without running stats", prefix);
  std::string w = bn.weight.defined() ? e.param(prefix + "weight", bn.weight) : "None";
  std::string b = bn.bias.defined() ? e.param(prefix + "bias", bn.bias) : "None";
  std::string m = e.buffer(prefix + "running_mean", bn.running_mean);
  std::string v = e.buffer(prefix + "running_var", bn.running_var);
  e.buffer(prefix + "num_batches_tracked", bn.num_batches_tracked);
  // Same call and flags as BatchNormImplBase::forward in eval mode.
  return e.let(fmt::format("torch.batch_norm({}, {}, {}, {}, {}, False, {}, {}, True)", x, w, b,
                           m, v, float_literal(o.momentum().value_or(0.1)),
                           float_literal(o.eps())));
}

std::string emit_linear(ScriptEmitter& e, const std::string& prefix,
                        const torch::nn::LinearImpl& fc, const std::string& x) {
  std::string w = e.param(prefix + "weight", fc.weight);
  std::string b = fc.bias.defined() ? e.param(prefix + "bias", fc.bias) : "None";
  return e.let(fmt::format("torch.linear({}, {}, {})", x, w, b));
}

std::string emit_sequential(ScriptEmitter& e, const std::string& prefix,
                            const torch::nn::Sequential& seq, const std::string& x) {
  std::string cur = x;
  size_t i = 0;
  for (const auto& child : seq->children()) {
    std::string p = fmt::format("{}{}.", prefix, i++);
    if (auto* conv = child->as<torch::nn::Conv2d>()) {
      cur = emit_conv2d(e, p, *conv, cur);
    } else if (auto* bn = child->as<torch::nn::BatchNorm2d>()) {
      cur = emit_batchnorm2d(e, p, *bn, cur);
    } else if (auto* fc = child->as<torch::nn::Linear>()) {
      cur = emit_linear(e, p, *fc, cur);
    } else if (child->as<torch::nn::ReLU>()) {
      cur = e.let(fmt::format("torch.relu({})", cur));
    } else if (auto* mp = child->as<torch::nn::MaxPool2d>()) {
      const auto& o = mp->options;
      cur = e.let(fmt::format("torch.max_pool2d({}, {}, {}, {}, {}, {})", cur,
                              int_list(vec(o.kernel_size())), int_list(vec(o.stride())),
                              int_list(vec(o.padding())), int_list(vec(o.dilation())),
                              o.ceil_mode() ? "True" : "False"));
    } else if (auto* ap = child->as<torch::nn::AdaptiveAvgPool2d>()) {
      auto size = ap->options.output_size();
      std::vector<int64_t> s;
      for (const auto& d : *size) {
        HL_CHECK(d.has_value(), "export: {}: adaptive pool with open output size", p);
        s.push_back(*d);
      }
      cur = e.let(fmt::format("torch.adaptive_avg_pool2d({}, {})", cur, int_list(s)));
    } else if (auto* fl = child->as<torch::nn::Flatten>()) {
      cur = e.let(fmt::format("torch.flatten({}, {}, {})", cur, fl->options.start_dim(),
                              fl->options.end_dim()));
    } else if (child->as<torch::nn::Dropout>()) {
      // identity at inference
    } else {
      fail("export: {}: layer {} has no TorchScript emitter", p, child->name());
    }
  }
  return cur;
}

HasherBase hasher_base(const HasherSpec& spec, const NetEmitter& emit_net,
                       const std::string& module_name) {
  HL_CHECK(spec.nbits > 0, "export: nbits must be positive, got {}", spec.nbits);
  HL_CHECK(!spec.input_shape.empty(), "export: empty input shape");
  HL_CHECK(spec.input_scale > 0, "export: input_scale must be positive, got {}",
           spec.input_scale);
  HasherBase base{torch::jit::Module(module_name), ""};
  torch::jit::Module& m = base.module;
  m.register_attribute("nbits", c10::IntType::get(), spec.nbits);
  m.register_attribute("method", c10::StringType::get(), spec.method);
  m.register_attribute("input_shape", c10::ListType::ofInts(), c10::List<int64_t>(spec.input_shape));
  m.register_attribute("input_scale", c10::FloatType::get(), spec.input_scale);
  m.register_attribute("mean", c10::ListType::ofFloats(), c10::List<double>(spec.mean));
  m.register_attribute("std", c10::ListType::ofFloats(), c10::List<double>(spec.std));

  // mean/std as tensors broadcasting over [N, C, H, W] (per channel) or
  // [N, D] (per feature).
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

  ScriptEmitter e(m);
  std::string out = emit_net(e, "x");
  const int64_t dims = static_cast<int64_t>(spec.input_shape.size()) + 1;
  base.source = fmt::format(
      R"(
def preprocess(self, x):
    assert x.dim() == {dims}, "hashlab hasher: expected input [N] + {shape}"
    x = x.to({f32})
    return (x / self.input_scale - self.input_mean) / self.input_std

def embed(self, x):
    x = self.preprocess(x)
{body}    return {out}
)",
      fmt::arg("dims", dims), fmt::arg("shape", int_list(spec.input_shape)),
      fmt::arg("f32", kFloat32), fmt::arg("body", e.body()), fmt::arg("out", out));
  return base;
}

torch::jit::Module define_hasher(HasherBase& base, const std::string& method) {
  try {
    base.module.define(base.source);
  } catch (const c10::Error& err) {
    fail("export: TorchScript for method '{}' does not compile: {}\n{}", method,
         err.what_without_backtrace(), base.source);
  }
  base.module.eval();
  return base.module;
}

torch::jit::Module build_hasher(const HasherSpec& spec, const NetEmitter& emit_net) {
  HasherBase base = hasher_base(spec, emit_net, "hashlab_" + spec.method + "_hasher");
  std::vector<int64_t> weights = {1, 2, 4, 8, 16, 32, 64, 128};
  base.module.register_buffer("bit_weights", torch::tensor(weights, torch::kInt64));
  const int64_t nbytes = (spec.nbits + 7) / 8;
  const int64_t pad = nbytes * 8 - spec.nbits;
  base.source += fmt::format(
      R"(
def forward(self, x):
    v = self.embed(x)
    return (v >= 0).to({f32}) * 2.0 - 1.0

def encode(self, x):
    v = self.embed(x)
    bits = (v >= 0).to({i64})
    bits = torch.constant_pad_nd(bits, [0, {pad}], 0)
    bits = bits.view([bits.size(0), {nbytes}, 8])
    return (bits * self.bit_weights).sum(2).to({u8})
)",
      fmt::arg("f32", kFloat32), fmt::arg("i64", kInt64), fmt::arg("u8", kUInt8),
      fmt::arg("pad", pad), fmt::arg("nbytes", nbytes));
  return define_hasher(base, spec.method);
}

torch::jit::Module export_linear_hasher(const torch::Tensor& W, const torch::Tensor& center,
                                        HasherSpec spec, const torch::Tensor& bias) {
  HL_CHECK(W.defined() && W.dim() == 2, "export_linear_hasher: W must be [D, B]");
  int64_t D = W.size(0);
  int64_t in_dim = 1;
  for (int64_t d : spec.input_shape) in_dim *= d;
  HL_CHECK(in_dim == D, "export_linear_hasher: W has {} rows but the input {} has {} values",
           D, int_list(spec.input_shape), in_dim);
  HL_CHECK(!center.defined() || center.numel() == D,
           "export_linear_hasher: center has {} values, expected {}", center.numel(), D);
  HL_CHECK(!bias.defined() || bias.numel() == W.size(1),
           "export_linear_hasher: bias has {} values, expected {}", bias.numel(), W.size(1));
  spec.nbits = W.size(1);
  return build_hasher(spec, [&](ScriptEmitter& e, const std::string& x) {
    std::string v = e.let(fmt::format("torch.flatten({}, 1)", x));
    if (center.defined()) {
      std::string c = e.buffer("center", center.to(torch::kFloat32).reshape({D}));
      v = e.let(fmt::format("{} - {}", v, c));
    }
    std::string w = e.buffer("projection", W.to(torch::kFloat32));
    v = e.let(fmt::format("torch.matmul({}, {})", v, w));
    if (bias.defined()) {
      std::string b = e.buffer("bias", bias.to(torch::kFloat32).reshape({W.size(1)}));
      v = e.let(fmt::format("{} + {}", v, b));
    }
    return v;
  });
}

void save_hasher(const torch::jit::Module& module, const std::string& path) {
  std::ostringstream out;
  module.save(out);
  atomic_write(path, out.str());
}

}  // namespace hashlab::exporter
