// TorchScript export: the reloaded hasher gives exactly the eager model's
// codes (C++ and Python clients), and a torchvision-layout ResNet-18
// state_dict written by Python loads and gives the same features.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "csrc/codes/codes.h"
#include "csrc/core/config.h"
#include "trainers/method_export.h"
#include "csrc/export/script_emitter.h"
#include "models/backbones/nets.h"
#include "models/hashnet/method.h"

namespace fs = std::filesystem;
using namespace hashlab;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("hashlab_export_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

bool python_torch_available() {
  return std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") == 0;
}

void write_raw(const std::string& path, const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kCPU);
  std::ofstream(path, std::ios::binary)
      .write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
}

torch::Tensor read_raw(const std::string& path, std::vector<int64_t> shape, torch::Dtype dtype) {
  auto t = torch::empty(shape, dtype);
  std::ifstream in(path, std::ios::binary);
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  EXPECT_EQ(static_cast<size_t>(in.gcount()), t.nbytes()) << path;
  return t;
}

void randomize_batchnorm(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& kv : m.named_buffers()) {
    if (kv.key().find("running_mean") != std::string::npos) kv.value().uniform_(-0.2, 0.2);
    if (kv.key().find("running_var") != std::string::npos) kv.value().uniform_(0.5, 1.5);
  }
  for (auto& kv : m.named_parameters()) {
    // BN affine parameters away from their 1/0 init, so they matter.
    if (kv.value().dim() == 1 && kv.key().find("bn") != std::string::npos)
      kv.value().uniform_(0.5, 1.5);
  }
}

std::unique_ptr<Method> make_hashnet(const std::string& model_yaml, const MethodContext& ctx) {
  if (!method_registry().has("hashnet")) register_hashnet(method_registry());
  auto cfg = Config::from_string("model: " + model_yaml);
  Section s = cfg.section("model");
  return method_registry().create("hashnet", "test", s, ctx);
}

// fch's N(0, 0.01) init gives near-zero outputs: spread them so the codes
// depend on the whole network.
void spread_fch(Method& m) {
  torch::NoGradGuard g;
  for (auto& p : m.module()->named_parameters())
    if (p.key().rfind("fch.", 0) == 0) p.value().normal_(0, 0.3);
}

// What the loader feeds the eager model for raw pixels: the hasher's own
// preprocessing, written out with the same ops.
torch::Tensor normalise(const torch::Tensor& raw, const MethodContext& ctx) {
  auto stat = [&](const std::vector<double>& v, double none) {
    if (v.empty()) return torch::full({1}, none, torch::kFloat32);
    auto t = torch::tensor(v, torch::kFloat64).to(torch::kFloat32);
    if (v.size() == 1) return t;
    return t.reshape({1, static_cast<int64_t>(v.size()), 1, 1});
  };
  return (raw / ctx.input_scale - stat(ctx.mean, 0.0)) / stat(ctx.std, 1.0);
}

void expect_same_codes(Method& m, torch::jit::Module& hasher, const torch::Tensor& raw,
                       const MethodContext& ctx) {
  torch::NoGradGuard no_grad;
  auto x = normalise(raw, ctx);
  auto eager_codes = m.encode(x);
  auto script_codes = hasher.run_method("encode", raw).toTensor();
  ASSERT_EQ(script_codes.scalar_type(), torch::kUInt8);
  ASSERT_EQ(script_codes.sizes(), eager_codes.sizes());
  EXPECT_TRUE(torch::equal(script_codes, eager_codes));
  auto signs = hasher.forward({raw}).toTensor();
  EXPECT_TRUE(torch::equal(signs, codes::unpack_bits(eager_codes, m.nbits())));
  auto embed = hasher.run_method("embed", raw).toTensor();
  EXPECT_TRUE(torch::allclose(embed, m.embed(x), 1e-5, 1e-6));
  // Not a degenerate comparison: the codes carry both bit values.
  auto bits = codes::unpack_bits(eager_codes, m.nbits());
  EXPECT_GT(bits.gt(0).sum().item<int64_t>(), 0);
  EXPECT_GT(bits.lt(0).sum().item<int64_t>(), 0);
}

}  // namespace

TEST(Export, HashNetSmallCNNRoundTripIsExact) {
  MethodContext ctx;
  ctx.input_shape = {1, 12, 12};
  ctx.num_classes = 3;
  ctx.input_scale = 255.0;
  ctx.mean = {0.3};
  ctx.std = {0.2};
  torch::manual_seed(4);
  // 12 bits: the last byte is half padding.
  auto m = make_hashnet("{bits: 12, backbone: {name: small_cnn, feature_dim: 24}}", ctx);
  randomize_batchnorm(*m->module());
  spread_fch(*m);
  TempDir dir;
  exporter::save_hasher(m->to_torchscript(ctx), dir / "hasher.pt");
  auto hasher = torch::jit::load(dir / "hasher.pt");
  EXPECT_EQ(hasher.attr("nbits").toInt(), 12);
  EXPECT_EQ(hasher.attr("method").toStringRef(), "hashnet");
  EXPECT_EQ(hasher.attr("input_shape").toIntVector(), (std::vector<int64_t>{1, 12, 12}));
  EXPECT_DOUBLE_EQ(hasher.attr("input_scale").toDouble(), 255.0);
  EXPECT_EQ(hasher.attr("mean").toDoubleVector(), (std::vector<double>{0.3}));

  auto raw = torch::randint(0, 256, {9, 1, 12, 12}).to(torch::kFloat32);
  expect_same_codes(*m, hasher, raw, ctx);
  // uint8 pixels are accepted as they are.
  EXPECT_TRUE(torch::equal(hasher.run_method("encode", raw.to(torch::kUInt8)).toTensor(),
                           hasher.run_method("encode", raw).toTensor()));
  // Wrong rank: a clear TorchScript assertion, not garbage.
  EXPECT_THROW(hasher.run_method("encode", torch::zeros({2, 144})), std::exception);
}

TEST(Export, HashNetMLPOnVectorsRoundTripIsExact) {
  // Feature vectors (fvecs/npy style): no scale, no mean/std, rank-1 items.
  MethodContext ctx;
  ctx.input_shape = {40};
  torch::manual_seed(7);
  auto m = make_hashnet("{bits: 24, backbone: {name: mlp, widths: [64, 32], dropout: 0.1}}", ctx);
  spread_fch(*m);
  TempDir dir;
  exporter::save_hasher(m->to_torchscript(ctx), dir / "hasher.pt");
  auto hasher = torch::jit::load(dir / "hasher.pt");
  EXPECT_EQ(hasher.attr("input_shape").toIntVector(), (std::vector<int64_t>{40}));
  expect_same_codes(*m, hasher, torch::randn({6, 40}), ctx);
}

TEST(Export, HashNetResNet18WithResizeRoundTripIsExact) {
  MethodContext ctx;
  ctx.input_shape = {1, 20, 20};  // grayscale, resized to 24 inside
  ctx.input_scale = 255.0;
  ctx.mean = {0.5};
  ctx.std = {0.25};
  torch::manual_seed(5);
  auto m = make_hashnet("{bits: 32, backbone: {name: resnet18, input_size: 24}}", ctx);
  randomize_batchnorm(*m->module());
  spread_fch(*m);
  TempDir dir;
  exporter::save_hasher(m->to_torchscript(ctx), dir / "hasher.pt");
  auto hasher = torch::jit::load(dir / "hasher.pt");
  expect_same_codes(*m, hasher, torch::rand({4, 1, 20, 20}) * 255, ctx);
}

TEST(Export, AlexNetEmitterMatchesEager) {
  // Built in memory only (the weights are 240 MB): checks the emitter.
  torch::manual_seed(6);
  models::AlexNetImpl net(64);
  net.eval();
  exporter::HasherSpec spec;
  spec.method = "alexnet_features";
  spec.nbits = 4096;
  spec.input_shape = {3, 48, 48};
  auto hasher = exporter::build_hasher(spec, [&](exporter::ScriptEmitter& e, const std::string& x) {
    return net.emit_torchscript(e, "", x);
  });
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 3, 48, 48});
  auto eager = net.forward(x);
  auto script = hasher.run_method("embed", x).toTensor();
  EXPECT_TRUE(torch::equal(script, eager));
}

TEST(Export, LinearHasherMatchesProjection) {
  MethodContext ctx;
  ctx.input_shape = {2, 4, 3};
  ctx.input_scale = 255.0;
  ctx.mean = {0.4, 0.6};
  ctx.std = {0.2, 0.3};
  torch::manual_seed(7);
  auto W = torch::randn({24, 20});
  auto center = torch::randn({24}) * 0.1;
  auto bias = torch::randn({20}) * 0.1;
  auto hasher = exporter::export_linear_hasher("itq", W, center, ctx, bias);
  TempDir dir;
  exporter::save_hasher(hasher, dir / "lin.pt");
  auto loaded = torch::jit::load(dir / "lin.pt");
  EXPECT_EQ(loaded.attr("nbits").toInt(), 20);
  EXPECT_EQ(loaded.attr("method").toStringRef(), "itq");

  auto raw = torch::rand({7, 2, 4, 3}) * 255;
  auto x = normalise(raw, ctx);
  auto v = torch::matmul(torch::flatten(x, 1) - center, W) + bias;
  auto want = codes::pack_signs(v);
  auto got = loaded.run_method("encode", raw).toTensor();
  EXPECT_TRUE(torch::equal(got, want));
  EXPECT_EQ(got.sizes(), (std::vector<int64_t>{7, 3}));

  EXPECT_THROW(exporter::export_linear_hasher("lsh", torch::randn({10, 4}), {}, ctx), Error);
  EXPECT_THROW(exporter::export_linear_hasher("lsh", W, torch::zeros({5}), ctx), Error);
}

TEST(Export, PythonClientGetsTheSameCodes) {
  if (!python_torch_available()) GTEST_SKIP() << "/usr/bin/python3 cannot import torch";
  MethodContext ctx;
  ctx.input_shape = {1, 12, 12};
  ctx.input_scale = 255.0;
  ctx.mean = {0.2};
  ctx.std = {0.3};
  torch::manual_seed(8);
  auto m = make_hashnet("{bits: 20, backbone: {name: small_cnn, feature_dim: 16}}", ctx);
  randomize_batchnorm(*m->module());
  spread_fch(*m);
  TempDir dir;
  exporter::save_hasher(m->to_torchscript(ctx), dir / "hasher.pt");
  auto raw = torch::randint(0, 256, {11, 1, 12, 12}).to(torch::kFloat32);
  write_raw(dir / "input.f32", raw);
  std::ofstream(dir / "client.py") << R"(import sys, numpy as np, torch
d = sys.argv[1]
m = torch.jit.load(d + "/hasher.pt")
x = torch.from_numpy(np.fromfile(d + "/input.f32", dtype=np.float32).reshape([-1] + list(m.input_shape)))
codes = m.encode(x)
assert codes.dtype == torch.uint8, codes.dtype
signs = m(x)
assert set(signs.unique().tolist()) <= {-1.0, 1.0}
codes.numpy().tofile(d + "/codes_py.u8")
signs.numpy().tofile(d + "/signs_py.f32")
with open(d + "/attrs.txt", "w") as f:
    f.write("%d %s %g\n" % (m.nbits, m.method, m.input_scale))
)";
  std::string cmd = "/usr/bin/python3 " + (dir / "client.py") + " " + dir.path.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  torch::NoGradGuard no_grad;
  auto want = m->encode(normalise(raw, ctx));
  auto got = read_raw(dir / "codes_py.u8", {11, 3}, torch::kUInt8);
  EXPECT_TRUE(torch::equal(got, want));
  auto signs = read_raw(dir / "signs_py.f32", {11, 20}, torch::kFloat32);
  EXPECT_TRUE(torch::equal(signs, codes::unpack_bits(want, 20)));
  std::ifstream attrs(dir / "attrs.txt");
  std::string line;
  std::getline(attrs, line);
  EXPECT_EQ(line, "20 hashnet 255");
}

TEST(Export, TorchvisionResNet18StateDictFromPython) {
  if (!python_torch_available()) GTEST_SKIP() << "/usr/bin/python3 cannot import torch";
  TempDir dir;
  // torchvision's ResNet-18 module layout in plain torch.nn (torchvision
  // itself is not needed), random weights and BN statistics.
  std::ofstream(dir / "make.py") << R"(import sys, numpy as np, torch, torch.nn as nn
d = sys.argv[1]
torch.manual_seed(0)
class BasicBlock(nn.Module):
    def __init__(self, inp, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inp != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inp, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))
    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(out + idt)
class ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inp = 64
        for i, planes in enumerate([64, 128, 256, 512]):
            setattr(self, "layer%d" % (i + 1), nn.Sequential(
                BasicBlock(inp, planes, 1 if i == 0 else 2), BasicBlock(planes, planes, 1)))
            inp = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, 1000)
    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(4):
            x = getattr(self, "layer%d" % (i + 1))(x)
        return torch.flatten(self.avgpool(x), 1)
m = ResNet18()
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.uniform_(0.5, 1.5)
            mod.bias.uniform_(-0.2, 0.2)
m.eval()
assert len(m.state_dict()) == 122
x = torch.randn(2, 3, 40, 40)
with torch.no_grad():
    f = m.features(x)
torch.save(m.state_dict(), d + "/resnet18.pth")
torch.save({"epoch": 3, "state_dict": m.state_dict()}, d + "/checkpoint.pth")
x.numpy().tofile(d + "/x.f32")
f.numpy().tofile(d + "/f.f32")
)";
  std::string cmd = "/usr/bin/python3 " + (dir / "make.py") + " " + dir.path.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  models::BackboneOptions o;
  o.name = "resnet18";
  o.input_size = 0;
  o.pretrained = dir / "resnet18.pth";
  auto net = models::make_backbone(o, {3, 40, 40});
  net->eval();
  torch::NoGradGuard no_grad;
  auto x = read_raw(dir / "x.f32", {2, 3, 40, 40}, torch::kFloat32);
  auto want = read_raw(dir / "f.f32", {2, 512}, torch::kFloat32);
  auto got = net->forward(x);
  double scale = want.abs().max().item<double>();
  EXPECT_GT(scale, 0);
  EXPECT_TRUE(torch::allclose(got, want, 1e-4, 1e-5 * scale))
      << "max diff " << (got - want).abs().max().item<double>();

  // A training checkpoint {"epoch": .., "state_dict": {...}} loads the same.
  auto again = models::make_backbone(o, {3, 40, 40});
  models::load_torchvision_state_dict(*again, dir / "checkpoint.pth");
  again->eval();
  EXPECT_TRUE(torch::equal(again->forward(x), got));

  // The same file is rejected by a network with another layout.
  models::BackboneOptions o34 = o;
  o34.name = "resnet34";
  try {
    models::make_backbone(o34, {3, 40, 40});
    FAIL() << "resnet34 accepted a resnet18 state_dict";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing keys: layer1.2.bn1.bias"), std::string::npos)
        << e.what();
  }
}
