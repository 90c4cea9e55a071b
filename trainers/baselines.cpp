// The shallow baselines as Methods. model: section keys:
//   bits: 64
//   iterations: 50      # itq only
//   max_train: 0        # fit on at most this many training rows (0 = all)
#include "trainers/baselines.h"

#include "csrc/core/checkpoint.h"
#include "csrc/export/method_export.h"
#include "models/baselines/shallow.h"
#include "trainers/trainer.h"

namespace hashlab {
namespace {

class ShallowMethod : public Method {
 public:
  ShallowMethod(std::string kind, Section& s, const MethodContext& ctx)
      : kind_(std::move(kind)), seed_(ctx.seed) {
    s.get("bits", bits_, Range{1, 4096});
    if (kind_ == "itq") s.get("iterations", iterations_, Range{0, 100000});
    s.get("max_train", max_train_, Range{0, 1e12});
    s.finish();
  }
  std::string name() const override { return kind_; }
  int nbits() const override { return static_cast<int>(bits_); }
  bool uses_trainer() const override { return false; }

  void fit(const FitData& data, Trainer& trainer) override {
    auto x = data.x.flatten(1).to(torch::kCPU, torch::kFloat32);
    if (max_train_ > 0 && x.size(0) > max_train_) x = x.narrow(0, 0, max_train_);
    if (kind_ != "sh" && bits_ > x.size(1) && kind_ != "lsh")
      fail("model.bits: {} needs bits <= feature dimension {}", kind_, x.size(1));
    if (kind_ == "lsh") {
      linear_ = baselines::fit_lsh(x, bits_, seed_);
    } else if (kind_ == "pcah") {
      linear_ = baselines::fit_pcah(x, bits_);
    } else if (kind_ == "itq") {
      linear_ = baselines::fit_itq(x, bits_, iterations_, seed_);
    } else {
      sh_ = baselines::fit_sh(x, bits_);
    }
    if (trainer.metrics())
      trainer.metrics()->write("fit", {{"method", kind_}, {"train_size", x.size(0)},
                                       {"dim", x.size(1)}, {"bits", bits_}});
  }

  torch::Tensor embed(const torch::Tensor& x) override {
    auto xf = x.flatten(1).to(torch::kFloat32);
    if (kind_ == "sh") {
      TORCH_CHECK(sh_.W.defined(), "spectral hashing used before fit()");
      return sh_.project(xf.to(sh_.W.device()));
    }
    TORCH_CHECK(linear_.W.defined(), kind_, " used before fit()");
    return linear_.project(xf.to(linear_.W.device()));
  }

  void save(torch::serialize::OutputArchive& a) const override {
    if (kind_ == "sh") {
      a.write("mean", sh_.mean);
      a.write("W", sh_.W);
      a.write("lo", sh_.lo);
      a.write("omegas", sh_.omegas);
    } else {
      a.write("mean", linear_.mean);
      a.write("W", linear_.W);
    }
  }
  void load(torch::serialize::InputArchive& a) override {
    auto need = [&](const char* key) {
      torch::Tensor t;
      if (!a.try_read(key, t)) fail("{} state: missing tensor '{}'", kind_, key);
      return t;
    };
    if (kind_ == "sh") {
      sh_.mean = need("mean");
      sh_.W = need("W");
      sh_.lo = need("lo");
      sh_.omegas = need("omegas");
    } else {
      linear_.mean = need("mean");
      linear_.W = need("W");
    }
  }

  torch::jit::Module to_torchscript(const MethodContext& ctx) const override {
    if (kind_ != "sh") return exporter::export_linear_hasher(kind_, linear_.W, linear_.mean, ctx);
    // v = cos(((x - mean) W - lo) Omega^T): the same ATen calls as
    // SpectralHash::project, so exported and eager codes agree exactly.
    auto spec = exporter::hasher_spec(ctx, kind_, bits_);
    return exporter::build_hasher(spec, [this](exporter::ScriptEmitter& e, const std::string& x) {
      std::string xf = e.let(x + ".flatten(1)");
      std::string mean = e.buffer("sh.mean", sh_.mean), W = e.buffer("sh.W", sh_.W);
      std::string lo = e.buffer("sh.lo", sh_.lo), om = e.buffer("sh.omegas", sh_.omegas);
      std::string y = e.let("torch.matmul(" + xf + " - " + mean + ", " + W + ") - " + lo);
      return e.let("torch.cos(torch.matmul(" + y + ", " + om + ".t()))");
    });
  }

 private:
  std::string kind_;
  uint64_t seed_;
  int64_t bits_ = 64;
  int64_t iterations_ = 50;
  int64_t max_train_ = 0;
  baselines::LinearHash linear_;
  baselines::SpectralHash sh_;
};

}  // namespace

void register_baselines(MethodRegistry& r) {
  for (const char* kind : {"lsh", "pcah", "itq", "sh"}) {
    r.add(kind, [kind](Section& s, const MethodContext& ctx) -> std::unique_ptr<Method> {
      return std::make_unique<ShallowMethod>(kind, s, ctx);
    });
  }
}

}  // namespace hashlab
