#include "models/baselines/method.h"

#include "models/common/shallow.h"
#include "trainers/method_export.h"
#include "trainers/context.h"

namespace hashlab {
namespace {

// What every baseline shares: bits, max_train, the fit on flattened float
// features and the "fit" metrics event.
class ShallowMethod : public FitMethod {
 public:
  ShallowMethod(std::string name, Section& s, const MethodContext& ctx)
      : name_(std::move(name)), seed_(ctx.seed) {
    s.get("bits", bits_, Range{1, 4096});
    s.get("max_train", max_train_, Range{0, 1e12});
  }
  std::string name() const override { return name_; }
  int nbits() const override { return static_cast<int>(bits_); }

  void fit(const TrainingSet& data, FitContext& ctx) override {
    auto x = data.x().flatten(1).to(torch::kCPU, torch::kFloat32);
    if (max_train_ > 0 && x.size(0) > max_train_) x = x.narrow(0, 0, max_train_);
    fit_features(x);
    if (ctx.metrics())
      ctx.metrics()->write("fit", {{"method", name_}, {"train_size", x.size(0)},
                                       {"dim", x.size(1)}, {"bits", bits_}});
  }

 protected:
  virtual void fit_features(const torch::Tensor& x) = 0;
  // PCA-based fits take at most one bit per feature dimension.
  void need_bits_within_dim(const torch::Tensor& x) const {
    if (bits_ > x.size(1))
      fail("model.bits: {} needs bits <= feature dimension {}", name_, x.size(1));
  }
  torch::Tensor need(torch::serialize::InputArchive& a, const char* key) const {
    torch::Tensor t;
    if (!a.try_read(key, t)) fail("{} state: missing tensor '{}'", name_, key);
    return t;
  }

  std::string name_;
  uint64_t seed_;
  int64_t bits_ = 64;
  int64_t max_train_ = 0;
};

// f(x) = (x - mean) W: LSH, PCAH and ITQ.
class LinearHashMethod : public ShallowMethod {
 public:
  using ShallowMethod::ShallowMethod;

  torch::Tensor embed(const torch::Tensor& x) override {
    TORCH_CHECK(linear_.W.defined(), name_, " used before fit()");
    return linear_.project(x.flatten(1).to(torch::kFloat32).to(linear_.W.device()));
  }
  void save(torch::serialize::OutputArchive& a) const override {
    a.write("mean", linear_.mean);
    a.write("W", linear_.W);
  }
  void load(torch::serialize::InputArchive& a) override {
    linear_.mean = need(a, "mean");
    linear_.W = need(a, "W");
  }
  torch::jit::Module to_torchscript(const MethodContext& ctx) const override {
    return exporter::export_linear_hasher(name_, linear_.W, linear_.mean, ctx);
  }

 protected:
  models::LinearHash linear_;
};

class LSHMethod : public LinearHashMethod {
 public:
  LSHMethod(Section& s, const MethodContext& ctx) : LinearHashMethod("lsh", s, ctx) {
    s.finish();
  }
  void fit_features(const torch::Tensor& x) override {
    linear_ = models::fit_lsh(x, bits_, seed_);
  }
};

class PCAHMethod : public LinearHashMethod {
 public:
  PCAHMethod(Section& s, const MethodContext& ctx) : LinearHashMethod("pcah", s, ctx) {
    s.finish();
  }
  void fit_features(const torch::Tensor& x) override {
    need_bits_within_dim(x);
    linear_ = models::fit_pcah(x, bits_);
  }
};

class ITQMethod : public LinearHashMethod {
 public:
  ITQMethod(Section& s, const MethodContext& ctx) : LinearHashMethod("itq", s, ctx) {
    s.get("iterations", iterations_, Range{0, 100000});
    s.finish();
  }
  void fit_features(const torch::Tensor& x) override {
    need_bits_within_dim(x);
    linear_ = models::fit_itq(x, bits_, iterations_, seed_);
  }

 private:
  int64_t iterations_ = 50;
};

class SHMethod : public ShallowMethod {
 public:
  SHMethod(Section& s, const MethodContext& ctx) : ShallowMethod("sh", s, ctx) { s.finish(); }
  void fit_features(const torch::Tensor& x) override { sh_ = models::fit_sh(x, bits_); }

  torch::Tensor embed(const torch::Tensor& x) override {
    TORCH_CHECK(sh_.W.defined(), "spectral hashing used before fit()");
    return sh_.project(x.flatten(1).to(torch::kFloat32).to(sh_.W.device()));
  }
  void save(torch::serialize::OutputArchive& a) const override {
    a.write("mean", sh_.mean);
    a.write("W", sh_.W);
    a.write("lo", sh_.lo);
    a.write("omegas", sh_.omegas);
  }
  void load(torch::serialize::InputArchive& a) override {
    sh_.mean = need(a, "mean");
    sh_.W = need(a, "W");
    sh_.lo = need(a, "lo");
    sh_.omegas = need(a, "omegas");
  }
  torch::jit::Module to_torchscript(const MethodContext& ctx) const override {
    // v = cos(((x - mean) W - lo) Omega^T): the same ATen calls as
    // SpectralHash::project, so exported and eager codes agree exactly.
    auto spec = exporter::hasher_spec(ctx, name_, bits_);
    return exporter::build_hasher(spec, [this](exporter::ScriptEmitter& e, const std::string& x) {
      std::string xf = e.let(x + ".flatten(1)");
      std::string mean = e.buffer("sh.mean", sh_.mean), W = e.buffer("sh.W", sh_.W);
      std::string lo = e.buffer("sh.lo", sh_.lo), om = e.buffer("sh.omegas", sh_.omegas);
      std::string y = e.let("torch.matmul(" + xf + " - " + mean + ", " + W + ") - " + lo);
      return e.let("torch.cos(torch.matmul(" + y + ", " + om + ".t()))");
    });
  }

 private:
  models::SpectralHash sh_;
};

}  // namespace

void register_baselines(MethodRegistry& r) {
  r.add("lsh", method_factory<LSHMethod>(), "LSH: Gaussian random projections of centred data");
  r.add("pcah", method_factory<PCAHMethod>(), "PCAH: the top principal directions");
  r.add("itq", method_factory<ITQMethod>(), "ITQ (Gong & Lazebnik 2011): PCA + iterative rotation");
  r.add("sh", method_factory<SHMethod>(), "SH (Weiss et al. 2008): spectral hashing");
}

}  // namespace hashlab
