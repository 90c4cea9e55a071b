// Method: one per paper (and one per baseline). Looked up by name in the
// method registry (trainers/registry.cpp, one line per method).
//
// A method builds its model from its `model:` config section, then either
//  - trains through the generic Trainer (param_groups + training_step + hooks), or
//  - fits itself directly (uses_trainer() == false: closed-form baselines,
//    custom optimisers), still logging through the same MetricsWriter.
// Afterwards it maps inputs to real-valued outputs (embed) and codes (encode),
// saves/loads its state, and builds its TorchScript hasher.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include "csrc/codes/code_file.h"
#include "csrc/core/config.h"
#include "csrc/core/registry.h"
#include "datasets/loader.h"

namespace hashlab {

using data::Batch;
using data::Loader;
class Trainer;

// What a method knows about its input when it is built.
struct MethodContext {
  std::vector<int64_t> input_shape;  // one example after transforms: [C,H,W] or [D]
  int64_t num_classes = 0;
  bool multi_label = false;
  torch::Device device = torch::kCPU;
  uint64_t seed = 0;
  int64_t total_steps = 0;  // the trainer's iteration budget (schedules)
  // Input preprocessing the exported hasher must reproduce: x = (raw/scale - mean)/std.
  double input_scale = 255.0;
  std::vector<double> mean, std;
};

// Named scalar losses of one step; the entry named "loss" is minimised, the
// others are logged.
using LossMap = std::vector<std::pair<std::string, torch::Tensor>>;

struct ParamGroup {
  std::string name;
  std::vector<torch::Tensor> params;
  double lr_mult = 1.0;
  double weight_decay_mult = 1.0;
};

// The training data a non-trainer method fits on, materialised: features as
// float after transforms ([N, ...]), labels as in the Dataset.
struct FitData {
  torch::Tensor x;
  torch::Tensor labels;
};

enum class CodeKind { kBinary, kPQ };

class Method {
 public:
  virtual ~Method() = default;
  virtual std::string name() const = 0;
  virtual int nbits() const = 0;
  virtual CodeKind code_kind() const { return CodeKind::kBinary; }

  // ---- closed-form / custom optimisation
  virtual bool uses_trainer() const { return true; }
  virtual void fit(const FitData& /*data*/, Trainer& /*trainer*/) {
    fail("method '{}' has no fit(): it trains through the generic trainer", name());
  }

  // ---- generic trainer path
  virtual std::vector<ParamGroup> param_groups() { return {}; }
  virtual LossMap training_step(const Batch& /*batch*/, Trainer& /*trainer*/) {
    fail("method '{}' has no training_step()", name());
  }
  virtual void before_train(Trainer&) {}
  virtual void after_step(Trainer&) {}
  virtual void after_epoch(Trainer&) {}
  virtual void after_train(Trainer&) {}
  // Extra scalars shown in progress/log lines (e.g. {"beta", 2.3}).
  virtual std::vector<std::pair<std::string, double>> status() const { return {}; }
  // The underlying torch module (device moves, train/eval mode); may be null.
  virtual torch::nn::Module* module() { return nullptr; }

  // ---- inference. x: float input batch on the method's device.
  virtual torch::Tensor embed(const torch::Tensor& x) = 0;  // [N, nbits] real
  virtual torch::Tensor encode(const torch::Tensor& x);     // [N, ceil(nbits/8)] uint8

  // ---- product-quantization methods (code_kind() == kPQ): embed(x) gives the
  // continuous code-layer output z [N, D]; the codebooks quantise it.
  virtual codes::PQCodes pq_codebooks() const {  // codebooks only (ids undefined)
    fail("method '{}' has no PQ codebooks", name());
  }
  virtual torch::Tensor encode_pq(const torch::Tensor& x);  // uint8 [N, M] codeword ids

  // ---- state (checkpoints, model files)
  virtual void save(torch::serialize::OutputArchive& archive) const = 0;
  virtual void load(torch::serialize::InputArchive& archive) = 0;

  // ---- export: a TorchScript module with forward(x) -> ±1 codes and
  // encode(x) -> packed codes (csrc/export builds the common parts).
  virtual torch::jit::Module to_torchscript(const MethodContext& ctx) const;
};

using MethodRegistry = Registry<Method, Section&, const MethodContext&>;
MethodRegistry& method_registry();
// One line per built-in method; idempotent.
void register_builtin_methods();
std::unique_ptr<Method> create_method(const std::string& name, Section& model_cfg,
                                      const MethodContext& ctx, const std::string& where);

}  // namespace hashlab
