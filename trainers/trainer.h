// The generic training loop (detectron2's TrainerBase, in LibTorch).
//
// It owns the optimizer, the LR schedule, mixed precision, gradient clipping,
// logging (console, log.txt, metrics.jsonl), the progress display, periodic
// evaluation, NaN/inf detection, checkpoints and SIGINT/SIGTERM handling. A
// Method supplies training_step(batch) -> named losses and its hooks.
//
// train:
//   iterations: 10000       # optimizer steps
//   batch_size: 64
//   log_every: 50           # train records in metrics.jsonl, plain progress lines
//   eval_every: 0           # 0: evaluate only at the end
//   checkpoint_every: 1000  # also written at the end and on interrupt
//   amp: false              # bf16 autocast on CUDA (ignored on CPU)
//   channels_last: false    # CUDA only
//   grad_clip: 0            # max global grad norm; 0 = off
//   prefetch: 2             # batches prepared ahead by the loader thread
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "csrc/core/config.h"
#include "csrc/core/logging.h"
#include "datasets/loader.h"
#include "trainers/method.h"
#include "trainers/optim.h"

namespace hashlab {

struct TrainOptions {
  int64_t iterations = 10000;
  int64_t batch_size = 64;
  int64_t log_every = 50;
  int64_t eval_every = 0;
  int64_t checkpoint_every = 1000;
  bool amp = false;
  bool channels_last = false;
  double grad_clip = 0.0;
  int64_t prefetch = 2;

  static TrainOptions from_yaml(Section s);
};

class Trainer {
 public:
  // `loader` yields training batches; `checkpoint_dir` may be empty (no
  // checkpoints, e.g. in tests); `metrics` may be a closed writer.
  Trainer(Method& method, Loader* loader, TrainOptions train, OptimOptions optim,
          torch::Device device, std::string checkpoint_dir, MetricsWriter* metrics);
  ~Trainer();

  // Runs from the current step to train.iterations. Throws hashlab::Error on
  // NaN/inf (after pointing at the last good checkpoint) and ExitStatus(130)
  // after writing a checkpoint when interrupted.
  void train();

  // Restores step, optimizer, method, RNG and loader position.
  void resume(const std::string& checkpoint_path);
  void save_checkpoint(const std::string& path);
  std::string last_checkpoint_path() const;

  // Called for periodic and final evaluation; returns metrics to log.
  std::function<nlohmann::json()> evaluate;
  // Printed when interrupted ("hashlab train ... --resume").
  std::string resume_hint;

  int64_t step() const { return step_; }
  int64_t epoch() const { return epoch_; }
  int64_t total_steps() const { return train_.iterations; }
  torch::Device device() const { return device_; }
  const TrainOptions& options() const { return train_; }
  torch::optim::Optimizer* optimizer() { return optimizer_.get(); }
  MetricsWriter* metrics() { return metrics_; }
  Loader* loader() { return loader_; }
  double current_lr_factor() const;
  // Seconds spent in train(), summed over this run and every run it resumed
  // (each checkpoint carries the total so far); ticking while train() runs.
  double train_seconds() const;

 private:
  void log_step(const LossMap& losses, double seconds_per_step);
  void check_finite(const LossMap& losses);
  // (Re)builds optimizer_ for optim stage `index` (fresh state).
  void build_optimizer(size_t index);
  double current_lr() const;
  // Adds the running session to seconds_before_ and stops the clock (idempotent).
  void stop_clock();

  Method& method_;
  Loader* loader_;
  TrainOptions train_;
  OptimOptions optim_;
  torch::Device device_;
  std::string checkpoint_dir_;
  MetricsWriter* metrics_;
  std::vector<ParamGroup> groups_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  size_t optim_stage_ = 0;  // index into optim_'s stages of optimizer_
  int64_t step_ = 0;
  int64_t epoch_ = -1;  // epoch of the last batch seen; -1 before the first
  int64_t last_good_checkpoint_step_ = -1;
  double seconds_before_ = 0;  // train() time of earlier sessions (from the checkpoint)
  std::optional<std::chrono::steady_clock::time_point> session_start_;  // set while training
};

}  // namespace hashlab
