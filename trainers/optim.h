// Optimizer factory, learning-rate schedules and scalar schedules.
//
// optim:
//   type: sgd | adam | adamw
//   lr: 0.01            # base learning rate; each ParamGroup scales it (lr_mult)
//   momentum: 0.9       # sgd
//   nesterov: false     # sgd
//   weight_decay: 5e-4
//   betas: [0.9, 0.999] # adam/adamw
//   eps: 1e-8
//   schedule: step      # constant | step | cosine
//   step_size: 2000     # step: lr *= gamma every step_size iterations
//   gamma: 0.5
//   min_lr_factor: 0.0  # cosine: final lr / base lr
//   warmup: 0           # linear warm-up iterations (any schedule)
//   stages:             # optional: other settings for earlier step ranges, e.g. an
//     - {until: 1000, type: adam, lr: 1e-3, schedule: constant}   # auto-encoder pretraining
//
// Stages: stage i covers steps [until_{i-1}, until_i) (until strictly increasing),
// the top-level keys cover the steps from the last `until` to the end. A stage
// starts from the top-level values and overrides the keys it names. Each stage
// gets a fresh optimizer (no state carried across), and its schedule and warm-up
// count from the stage's own first step over the stage's length.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "csrc/core/config.h"
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
  std::string schedule = "step";
  int64_t step_size = 2000;
  double gamma = 0.5;
  double min_lr_factor = 0.0;
  int64_t warmup = 0;
  // Stages before the top-level settings (see above); `until` is set on stages only.
  std::vector<OptimOptions> stages;
  int64_t until = 0;

  static OptimOptions from_yaml(Section s);

  // Index of the stage that trains step `step` (0-based; stages.size() = the
  // top-level settings), and that stage's settings and step range [begin, end)
  // (end = total_steps for the top level).
  size_t stage_index(int64_t step) const;
  const OptimOptions& stage(size_t index) const;
  std::pair<int64_t, int64_t> stage_range(size_t index, int64_t total_steps) const;

 private:
  void read_keys(Section& s);
};

// One torch optimizer over the method's parameter groups; group g gets
// lr * lr_mult[g] and weight_decay * weight_decay_mult[g].
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimOptions& opts,
                                                        const std::vector<ParamGroup>& groups);

// The schedule's multiplier of the base learning rate after `step` steps of
// a run of `total_steps` (no stages: stage lookup is the caller's).
double lr_factor(const OptimOptions& opts, int64_t step, int64_t total_steps);
// With stages: the factor of the stage that trains `step`, counted within it.
double staged_lr_factor(const OptimOptions& opts, int64_t step, int64_t total_steps);

// Sets every group's lr to opts.lr * lr_mult[g] * factor.
void apply_lr(torch::optim::Optimizer& opt, const OptimOptions& opts,
              const std::vector<ParamGroup>& groups, double factor);

// A scalar that changes with the iteration count (continuation parameters
// such as HashNet's beta).
//   type: constant      value
//   type: hashnet       init * (1 + gamma * t)^power, t = floor(step / every) * every
//                       (thuml/HashNet: init 1, gamma 0.005, power 0.5, every 200)
//   type: step          init * gamma^floor(step / every)
//   type: linear        init + (final - init) * min(step / total, 1)
struct ScalarSchedule {
  std::string type = "constant";
  double init = 1.0;
  double gamma = 0.005;
  double power = 0.5;
  int64_t every = 200;
  double final_value = 1.0;

  static ScalarSchedule from_yaml(Section s);
  double at(int64_t step, int64_t total_steps) const;
};

}  // namespace hashlab
