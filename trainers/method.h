// Method: one per paper (and one per baseline). Looked up by name in the
// method registry; each method folder (models/<method>/) registers its own
// entries, and app/builtin_methods.cpp calls each folder's register function.
//
// A method builds its model from its `model:` config section, then trains in
// one of three ways, all run by the Trainer (trainers/trainer.h) with the same
// services (LR schedule, checkpoints, resume, periodic evaluation, metrics,
// progress, NaN/inf guard, SIGINT; a fit gets them per unit of work, and one
// without units only when it ends):
//
//  1. Default step: param_groups() and training_step(batch) -> named losses,
//     "loss" first. The Trainer zeroes the gradients, back-propagates "loss"
//     and steps one optimizer (`optim:`), through a closure, so re-evaluating
//     optimizers such as lbfgs work unchanged.
//  2. Own step: parameter_sets() declares named optimizers over disjoint
//     parameter sets (e.g. "generator", "discriminator"); step(batch, trainer)
//     runs the updates with trainer.optimize(name, closure) and returns the
//     losses to log. `optim.optimizers.<name>` overrides settings per optimizer.
//  3. Fit: fits() == true; fit(training_set, trainer) runs the method's own
//     optimisation (closed forms, bit-by-bit solvers) in units of work and
//     calls trainer.unit_done() after each, which logs, evaluates, checkpoints
//     and handles SIGINT; a resumed fit continues from trainer.units_done()
//     with the state its save() wrote.
//
// Afterwards it maps inputs to real-valued outputs (embed) and to codes
// (encode: packed bits, or PQ codeword ids), saves/loads its state, and builds
// its TorchScript hasher.
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
#include "datasets/training_set.h"

namespace hashlab {

using data::Batch;
using data::Loader;
using data::TrainingSet;
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

// Named scalar losses or values of one step. In a default step the entry
// named "loss" (first) is minimised and the others are logged; an own step
// returns whatever it wants logged.
using LossMap = std::vector<std::pair<std::string, torch::Tensor>>;

struct ParamGroup {
  std::string name;
  std::vector<torch::Tensor> params;
  double lr_mult = 1.0;
  double weight_decay_mult = 1.0;
};

// The parameters of one named optimizer. Sets of one method are disjoint.
struct ParameterSet {
  std::string name;
  std::vector<ParamGroup> groups;
};

class Method {
 public:
  virtual ~Method() = default;
  virtual std::string name() const = 0;
  virtual int nbits() const = 0;

  // ---- 1. default step
  virtual std::vector<ParamGroup> param_groups() { return {}; }
  virtual LossMap training_step(const Batch& /*batch*/, Trainer& /*trainer*/) {
    fail("method '{}' has no training_step()", name());
  }

  // ---- 2. own step (named optimizers). The default implementations are the
  // default step: one set named "model" over param_groups(), and a step that
  // runs trainer.default_step(batch) (training_step through the closure).
  virtual std::vector<ParameterSet> parameter_sets() { return {{"model", param_groups()}}; }
  virtual LossMap step(const Batch& batch, Trainer& trainer);

  // ---- data-parallel training (Trainer::set_process_group)
  // Whether N ranks, each with 1/N of every global batch, train what one
  // process trains on the whole batch: true when each closure's loss is a
  // mean over the batch's items (a local loss: the trainer averages), or the
  // global batch's loss built with Trainer::all_gather / mean_over_ranks /
  // sum_over_ranks (a global loss: the trainer sums), random draws are made
  // for the global batch (Trainer::local_rows), and epoch-level work is done
  // once and shared (Trainer::broadcast). A method that says false is
  // refused with more than one rank.
  virtual bool supports_data_parallel() const { return false; }

  // ---- 3. fit
  virtual bool fits() const { return false; }
  virtual void fit(const TrainingSet& /*data*/, Trainer& /*trainer*/) {
    fail("method '{}' has no fit(): it trains in steps", name());
  }

  // ---- hooks around the step loop (not called for fits)
  virtual void before_train(Trainer&) {}
  virtual void after_step(Trainer&) {}
  virtual void after_epoch(Trainer&) {}
  virtual void after_train(Trainer&) {}
  // Extra scalars shown in progress/log lines (e.g. {"beta", 2.3}).
  virtual std::vector<std::pair<std::string, double>> status() const { return {}; }
  // The underlying torch module (device moves, train/eval mode); may be null.
  virtual torch::nn::Module* module() { return nullptr; }

  // ---- inference. x: float input batch on the method's device.
  virtual torch::Tensor embed(const torch::Tensor& x) = 0;  // [N, nbits] real (PQ: [N, L])
  // The kind of code encode() gives: packed bits (sign of embed, FAISS layout)
  // by default; PQ methods return codeword ids and override pq_codebooks().
  virtual codes::CodeKind code_kind() const { return codes::CodeKind::binary; }
  virtual torch::Tensor encode(const torch::Tensor& x);  // uint8 [N, bytes per code]
  virtual codes::PQCodes pq_codebooks() const {  // codebooks only (ids undefined)
    fail("method '{}' has no PQ codebooks", name());
  }
  // encode() output of many items as a code set (binary: nbits; PQ: the codebooks).
  codes::Codes make_codes(torch::Tensor data) const;

  // Model options (keys under `model:`) that change only how a trained model
  // encodes, not what it trained: a run may be evaluated, exported or resumed
  // with them changed (they are left out of the build record).
  virtual std::vector<std::string> encode_options() const { return {}; }

  // ---- state (checkpoints, model files): everything needed to continue.
  virtual void save(torch::serialize::OutputArchive& archive) const = 0;
  virtual void load(torch::serialize::InputArchive& archive) = 0;

  // ---- export: a TorchScript module with forward(x) -> ±1 codes and
  // encode(x) -> packed codes (trainers/method_export.h builds the common parts).
  virtual torch::jit::Module to_torchscript(const MethodContext& ctx) const;
};

using MethodRegistry = Registry<Method, Section&, const MethodContext&>;
MethodRegistry& method_registry();
// The registry entry of a Method subclass constructed from (Section&, const MethodContext&).
template <typename T>
MethodRegistry::Factory method_factory() {
  return [](Section& cfg, const MethodContext& ctx) -> std::unique_ptr<Method> {
    return std::make_unique<T>(cfg, ctx);
  };
}
// Builds a registered method (app/builtin_methods.h registers the built-in ones).
std::unique_ptr<Method> create_method(const std::string& name, Section& model_cfg,
                                      const MethodContext& ctx, const std::string& where);

}  // namespace hashlab
