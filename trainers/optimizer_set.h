// The named optimizers of a method that trains in steps: one torch optimizer
// per ParameterSet, rebuilt fresh when an optimizer stage (optim.stages)
// begins, each with its own learning-rate schedule. It owns their state in
// checkpoints ("optimizer" for one, "optimizer.<name>" for several, and
// "optim_stage"). The LR-schedule hook (trainers/hooks.h) says when to apply
// the schedule; Trainer::optimize says which optimizer steps.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "trainers/method.h"
#include "trainers/optim.h"

namespace hashlab {

class OptimizerSet {
 public:
  // Checks the sets (unique names, disjoint, non-empty) and builds every
  // (stage, optimizer) combination once, so a setting no optimizer can run
  // fails now rather than when its stage begins. `grad_clip` > 0 is refused
  // for lbfgs. `total_steps`: the schedules' length.
  OptimizerSet(std::vector<ParameterSet> sets, OptimOptions options, double grad_clip,
               int64_t total_steps, const std::string& method);

  std::vector<std::string> names() const;
  size_t size() const { return named_.size(); }
  torch::optim::Optimizer& get(const std::string& name);
  // This optimizer's parameters (every group), and those of every optimizer.
  std::vector<torch::Tensor> parameters(const std::string& name);
  const std::vector<torch::Tensor>& all_parameters() const { return all_params_; }
  // The settings of optimizer `name` in the current stage.
  const OptimOptions& settings(const std::string& name);

  // Switches to the stage that `step` falls in (fresh optimizers, returns
  // true when it did) and sets every optimizer's learning rate for `step`.
  bool apply_schedule(int64_t step);
  // Whether apply_schedule(step) would begin another stage.
  bool switches_at(int64_t step) const { return options_.stage_index(step) != stage_; }
  size_t stage() const { return stage_; }
  // The learning rate of optimizer `name` (empty: the first) at `step`: the
  // base lr times the schedule (group multipliers not applied).
  double lr(int64_t step, const std::string& name = "") const;
  // "lr 0.01" or "generator lr 0.01, discriminator lr 0.001" at `step`.
  std::string describe_lrs(int64_t step) const;
  bool has_lbfgs() const;

  // Checkpoint state. `file` names the checkpoint in errors.
  void save(torch::serialize::OutputArchive& a);
  void load(torch::serialize::InputArchive& a, const std::string& file);

 private:
  struct Named {
    ParameterSet set;
    std::unique_ptr<torch::optim::Optimizer> optimizer;
    OptimOptions settings;  // of the current stage
  };
  void build(size_t stage);
  Named& named(const std::string& name);
  const Named& named(const std::string& name) const;
  std::string key(const std::string& name) const;

  OptimOptions options_;
  int64_t total_steps_;
  std::string method_;
  std::vector<Named> named_;
  std::vector<torch::Tensor> all_params_;
  size_t stage_ = 0;
};

}  // namespace hashlab
