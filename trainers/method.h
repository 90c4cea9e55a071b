// Method: one per paper (and one per baseline). Looked up by name in the
// method registry; each method folder (models/<method>/) registers its own
// entries, and app/builtin_methods.cpp calls each folder's register function.
//
// What every method is, a hasher (Method): it builds its model from its
// `model:` config section, maps inputs to real-valued outputs (embed) and to
// codes (encode: packed bits, or PQ codeword ids), saves/loads its state and
// builds its TorchScript hasher. How it trains is one of two kinds, both run
// by the Trainer (trainers/trainer.h) over the same hooks (LR schedule,
// checkpoints, resume, periodic evaluation, metrics, progress, NaN/inf guard,
// SIGINT):
//
//  StepMethod: trains in optimizer steps and sees a StepContext
//    (trainers/context.h), never the Trainer.
//    - default step: param_groups() and training_step(batch, ctx) -> named
//      losses, "loss" first, of the scope training_loss_scope() declares; the
//      Trainer zeroes the gradients, back-propagates "loss" and steps one
//      optimizer (`optim:`) through a closure, so re-evaluating optimizers
//      such as lbfgs work unchanged.
//    - own step: parameter_sets() declares named optimizers over disjoint
//      parameter sets (e.g. "generator", "discriminator"); step(batch, ctx)
//      runs the updates with ctx.optimize(name, closure, scope) and returns
//      the losses to log. `optim.optimizers.<name>` overrides settings per
//      optimizer.
//  FitMethod: runs its own optimisation (closed forms, bit-by-bit solvers)
//    in fit(training_set, ctx) in units of work, calling ctx.unit_done()
//    after each, which logs, evaluates, checkpoints and handles SIGINT; a
//    resumed fit continues from ctx.units_done() with the state its save() wrote.
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
#include "trainers/data_parallel.h"

namespace hashlab {

using data::Batch;
using data::Loader;
using data::TrainingSet;

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

  // Values per example once flattened (the product of input_shape).
  int64_t input_dim() const {
    int64_t d = 1;
    for (int64_t s : input_shape) d *= s;
    return d;
  }
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

class StepContext;
class FitContext;

// A hasher: what every method is.
class Method {
 public:
  virtual ~Method() = default;
  virtual std::string name() const = 0;
  virtual int nbits() const = 0;

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

// A method that trains in optimizer steps. (Method is a virtual base, so a
// shared hasher base such as a PQ method's can serve both kinds.)
class StepMethod : public virtual Method {
 public:
  // ---- default step: one optimizer ("model") over param_groups(), a loss
  // of the scope training_loss_scope() says (trainers/data_parallel.h).
  virtual std::vector<ParamGroup> param_groups() { return {}; }
  virtual LossMap training_step(const Batch& /*batch*/, StepContext& /*ctx*/) {
    fail("method '{}' has no training_step(): it runs its own step()", name());
  }
  virtual LossScope training_loss_scope() const { return LossScope::local; }

  // ---- own step (named optimizers). The defaults are the default step: one
  // set named "model" over param_groups(), and a step that optimizes it on
  // training_step().
  virtual std::vector<ParameterSet> parameter_sets() { return {{"model", param_groups()}}; }
  virtual LossMap step(const Batch& batch, StepContext& ctx);

  // ---- data-parallel training: whether N ranks, each with 1/N of every
  // global batch, train what one process trains on the whole batch: every
  // closure's loss is of the scope it declares, random draws are made for the
  // global batch (ctx.dp().local_rows), and epoch-level work is done once and
  // shared (ctx.dp().broadcast). A method that says false is refused with
  // more than one rank.
  virtual bool supports_data_parallel() const { return false; }

  // ---- around the loop
  virtual void before_train(StepContext&) {}
  virtual void after_step(StepContext&) {}
  virtual void after_epoch(StepContext&) {}
  virtual void after_train(StepContext&) {}
};

// A method that fits by its own optimisation, in units of work.
class FitMethod : public virtual Method {
 public:
  virtual void fit(const TrainingSet& data, FitContext& ctx) = 0;
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
