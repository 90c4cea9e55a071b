// Optimizer settings, the optimizer registry and the learning-rate schedules.
//
// optim:
//   type: sgd | adam | adamw | lbfgs   # optimizer_registry()
//   lr: 0.01            # base learning rate; each ParamGroup scales it (lr_mult)
//   momentum: 0.9       # sgd
//   nesterov: false     # sgd
//   weight_decay: 5e-4  # sgd/adam/adamw; lbfgs has none (giving it > 0 is an error)
//   betas: [0.9, 0.999] # adam/adamw
//   eps: 1e-8           # adam/adamw
//   history_size: 100   # lbfgs: correction pairs kept
//   max_iter: 20        # lbfgs: iterations per step
//   max_eval: 0         # lbfgs: closure evaluations per step; 0 = max_iter * 5 / 4
//   tolerance_grad: 1e-7     # lbfgs: stop when max |grad| <= this
//   tolerance_change: 1e-9   # lbfgs: stop when the loss or step changes less
//   line_search: strong_wolfe  # lbfgs: strong_wolfe | none (fixed step lr)
//   reset_each_step: false     # clear the optimizer's state before every step
//                              # (lbfgs: each step starts afresh from steepest descent)
//   schedule: step      # lr_schedule_registry(): constant | step | cosine
//   step_size: 2000     # step: lr *= gamma every step_size iterations
//   gamma: 0.5
//   min_lr_factor: 0.0  # cosine: final lr / base lr
//   warmup: 0           # linear warm-up iterations (any schedule)
//   stages:             # optional: other settings for earlier step ranges, e.g. an
//     - {until: 1000, type: adam, lr: 1e-3, schedule: constant}   # auto-encoder pretraining
//   optimizers:         # optional: per named optimizer (Method::parameter_sets) overrides
//     discriminator: {lr: 1e-3}
//
// Stages: stage i covers steps [until_{i-1}, until_i) (until strictly increasing),
// the top-level keys cover the steps from the last `until` to the end. A stage
// starts from the top-level values and overrides the keys it names. Each stage
// gets fresh optimizers (no state carried across), and its schedule and warm-up
// count from the stage's own first step over the stage's length.
//
// Named optimizers: the settings of optimizer `n` in stage i are stage i's,
// then the keys that `optimizers.n` names. Every named optimizer is its own
// torch optimizer over its own parameters (no shared moments, momentum or
// weight decay), follows its own schedule and is saved in the checkpoint.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "csrc/core/config.h"
#include "csrc/core/registry.h"
#include "trainers/method.h"

namespace hashlab {

struct OptimOptions {
  std::string type = "sgd";
  double lr = 0.01;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 5e-4;
  std::vector<double> betas = {0.9, 0.999};
  double eps = 1e-8;
  int64_t history_size = 100;
  int64_t max_iter = 20;
  int64_t max_eval = 0;
  double tolerance_grad = 1e-7;
  double tolerance_change = 1e-9;
  std::string line_search = "strong_wolfe";
  bool reset_each_step = false;
  std::string schedule = "step";
  int64_t step_size = 2000;
  double gamma = 0.5;
  double min_lr_factor = 0.0;
  int64_t warmup = 0;
  // Stages before the top-level settings (see above); `until` is set on stages only.
  std::vector<OptimOptions> stages;
  int64_t until = 0;
  // Per named optimizer overrides (only the keys in their `given`).
  std::map<std::string, OptimOptions> optimizers;
  // Keys set in the config (this level and the levels it inherits from), and
  // where this level was read ("file:line:col: optim...").
  std::set<std::string> given;
  std::string where = "optim";

  static OptimOptions from_yaml(Section s);
  // Whether the optimizer re-evaluates the closure within a step (L-BFGS's
  // line search): no weight decay, no gradient clipping.
  bool is_lbfgs() const;

  // Index of the stage that trains step `step` (0-based; stages.size() = the
  // top-level settings), and that stage's settings and step range [begin, end)
  // (end = total_steps for the top level).
  size_t stage_index(int64_t step) const;
  const OptimOptions& stage(size_t index) const;
  std::pair<int64_t, int64_t> stage_range(size_t index, int64_t total_steps) const;
  // Settings of named optimizer `name` in stage `index` (stage + its overrides).
  OptimOptions resolve(size_t index, const std::string& name) const;
  // Rejects overrides for optimizers the method does not have.
  void check_names(const std::vector<std::string>& names, const std::string& method) const;
  // Rejects settings no optimizer can run (nesterov without sgd and momentum,
  // weight decay given to lbfgs), naming `where`. The Trainer checks every
  // (stage, optimizer) combination before the first step.
  void validate() const;

 private:
  void read_keys(Section& s);
  void override_with(const OptimOptions& o);
};

// ---- optimizers: one torch optimizer over a parameter set's groups; group g
// gets lr * lr_mult[g] and weight_decay * weight_decay_mult[g].
using OptimizerRegistry =
    Registry<torch::optim::Optimizer, const OptimOptions&, const std::vector<ParamGroup>&>;
OptimizerRegistry& optimizer_registry();
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimOptions& opts,
                                                        const std::vector<ParamGroup>& groups);

// ---- learning-rate schedules: the multiplier of the base learning rate
// after `step` steps of `total_steps` (warm-up is applied on top by lr_factor).
class LRSchedule {
 public:
  virtual ~LRSchedule() = default;
  virtual double factor(int64_t step, int64_t total_steps) const = 0;
};
using LRScheduleRegistry = Registry<LRSchedule, const OptimOptions&>;
LRScheduleRegistry& lr_schedule_registry();

// The schedule's multiplier (with warm-up) of a run of `total_steps` (no
// stages: stage lookup is the caller's).
double lr_factor(const OptimOptions& opts, int64_t step, int64_t total_steps);
// With stages: the factor of the stage that trains `step`, counted within it,
// for named optimizer `name`.
double staged_lr_factor(const OptimOptions& opts, int64_t step, int64_t total_steps,
                        const std::string& name = "");

// Sets every group's lr to opts.lr * lr_mult[g] * factor.
void apply_lr(torch::optim::Optimizer& opt, const OptimOptions& opts,
              const std::vector<ParamGroup>& groups, double factor);

}  // namespace hashlab
