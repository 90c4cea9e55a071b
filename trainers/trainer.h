// The training engine: a loop plus hooks (detectron2's TrainerBase, in LibTorch).
//
// The loop: for each step, the next batch (after_epoch hooks when the epoch
// changes), before_step hooks, the method's step, after_step hooks; then
// after_train hooks. A FitMethod's fit runs instead of the steps, and each
// unit of work it reports runs the after_step hooks. Everything else is a
// service with its own class, owned here and told when by a hook
// (trainers/hooks.h):
//   OptimizerSet   the named optimizers, stages, learning rates (optimizer_set.h)
//   DataParallel   collectives, timed waits, gradient buckets (data_parallel.h)
//   Checkpointer   the checkpoint format, build record, compatibility (checkpointer.h)
// and the hooks, in this order after each step:
//   method         StepMethod::after_step (after_epoch, before/after_train too)
//   finite guard   non-finite losses stop the run, naming the last good checkpoint
//                  (the step's closure checks every step on CPU before backward;
//                  on CUDA the hook checks at log and checkpoint steps: no sync)
//   metrics        "train" records in metrics.jsonl every log_every steps, progress
//   evaluation     every eval_every steps, its function given in TrainerSetup
//   user hooks     add_hook
//   checkpoint     every checkpoint_every steps, and at the end
//   interrupt      SIGINT/SIGTERM: checkpoint, "resume with" hint, ExitStatus(130)
// and before each step: the LR schedule.
//
// A method sees the loop through StepContext / FitContext (trainers/context.h).
// The checkpoint's state is gathered here (save_state): the loop's counters,
// clock and RNG, the method, and the optimizer set.
//
// train:
//   iterations: 10000       # optimizer steps
//   batch_size: 64
//   log_every: 50           # train records in metrics.jsonl, plain progress lines
//   eval_every: 0           # 0: evaluate only at the end (fits: in units)
//   checkpoint_every: 1000  # also written at the end and on interrupt (fits: their plan)
//   amp: false              # bf16 autocast on CUDA (ignored on CPU)
//   channels_last: false    # CUDA only
//   grad_clip: 0            # max global grad norm per optimizer; 0 = off (not with lbfgs)
//   prefetch: 2             # batches prepared ahead by the loader thread
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/torch.h>

#include "csrc/core/config.h"
#include "csrc/core/logging.h"
#include "csrc/core/progress.h"
#include "datasets/loader.h"
#include "datasets/training_set.h"
#include "trainers/checkpointer.h"
#include "trainers/context.h"
#include "trainers/data_parallel.h"
#include "trainers/hooks.h"
#include "trainers/method.h"
#include "trainers/optim.h"
#include "trainers/optimizer_set.h"

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

// What the caller plugs in, once, when the trainer is built.
struct TrainerSetup {
  std::string checkpoint_dir;  // empty: no checkpoints (tests, ranks other than 0)
  std::string build_record;    // written into every checkpoint (trainers/checkpointer.h)
  MetricsWriter* metrics = nullptr;  // may be null or a closed writer
  // Periodic evaluation (every train.eval_every): metrics to log. May be empty.
  std::function<nlohmann::json()> evaluate;
  // Printed when interrupted ("hashlab train ... --resume").
  std::string resume_hint;
  // Data-parallel: this trainer is one rank of `group` (null: one process).
  // The caller gives each rank a loader shard of every global batch
  // (LoaderOptions::shard_rank/shard_count) and lets rank 0 alone write.
  c10::intrusive_ptr<c10d::ProcessGroup> group;
};

class Trainer : public StepContext, public FitContext {
 public:
  Trainer(Method& method, Loader* loader, TrainOptions train, OptimOptions optim,
          torch::Device device, TrainerSetup setup = {});
  // The same with only a checkpoint directory and a metrics writer (tests).
  Trainer(Method& method, Loader* loader, TrainOptions train, OptimOptions optim,
          torch::Device device, std::string checkpoint_dir, MetricsWriter* metrics);
  ~Trainer() override;
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Runs the step loop from the current step to train.iterations, or the
  // method's fit. Throws hashlab::Error on NaN/inf (after pointing at the last
  // good checkpoint) and ExitStatus(130) after writing a checkpoint when
  // interrupted. Data-parallel: parameters are broadcast from rank 0 first
  // (buffers before every step, as DDP), and checked to agree at the end.
  void train();
  // Restores step (or units), optimizers, method, RNG and loader position.
  void resume(const std::string& checkpoint_path);
  // Runs after the built-in hooks that observe a step (metrics, evaluation)
  // and before the checkpoint and interrupt hooks.
  void add_hook(std::shared_ptr<TrainerHook> hook);

  // Refuses a method that cannot train data-parallel on `world_size` ranks
  // (fits; methods that do not opt in), naming it; the train job calls it
  // before anything is written.
  static void check_data_parallel(const Method& method, int world_size);

  // ---- the loop's state (hooks, callers)
  int64_t step() const override { return step_; }
  // A fit's units done (= step()).
  int64_t units_done() const override { return step_; }
  int64_t epoch() const override { return epoch_; }
  int64_t total_steps() const override { return train_.iterations; }
  // train.iterations, or the fit plan's units (0: unknown).
  int64_t planned_steps() const;
  bool fitting() const { return fit_method_ != nullptr; }
  torch::Device device() const override { return device_; }
  const TrainOptions& options() const { return train_; }
  Method& method() { return method_; }
  MetricsWriter* metrics() override { return metrics_; }
  Progress* progress() { return progress_.get(); }
  // Seconds spent in train(), summed over this run and every run it resumed
  // (each checkpoint carries the total so far); ticking while train() runs.
  double train_seconds() const;
  int64_t checkpoint_every() const;

  // ---- services
  // The named optimizers (null for a fit).
  OptimizerSet* optimizers() { return optimizers_.get(); }
  DataParallel& dp() override { return dp_; }
  // Fails, naming the loss, the step, the learning rates and the last good
  // checkpoint, when a loss is not finite (and records an "error").
  void check_finite(const LossMap& losses);

  // ---- checkpoint state: gathered here (the checkpoint hook asks), framed
  // and written by the Checkpointer, which never sees the Trainer.
  void save_state(torch::serialize::OutputArchive& a);
  void load_state(torch::serialize::InputArchive& a, const std::string& file);

  // ---- StepContext (what a StepMethod sees; also used by tests)
  LossMap optimize(const std::string& name, const std::function<LossMap()>& closure,
                   LossScope scope) override;
  std::vector<std::string> optimizer_names() const override;
  bool reevaluates(const std::string& name) override;
  const TrainingSet& training_set() override;

 private:
  // StepContext / FitContext
  int64_t batch_size() const override { return train_.batch_size; }
  bool has_training_data() const override { return loader_ != nullptr; }
  void begin_units(const FitPlan& plan) override;
  void unit_done(const LossMap& values) override;

  void run_loop(StepMethod& m);
  void run_fit(FitMethod& m);
  // Adds the running session to the stored seconds and stops the clock (idempotent).
  void stop_clock();
  // Whether the method's module has a dropout layer with p > 0.
  bool has_active_dropout();
  template <typename F>
  void each_hook(F&& f) {
    for (auto& h : hooks_) f(*h);
    for (auto& h : user_hooks_) f(*h);
    for (auto& h : final_hooks_) f(*h);
  }

  Method& method_;
  StepMethod* step_method_ = nullptr;  // exactly one of these is set
  FitMethod* fit_method_ = nullptr;
  Loader* loader_;
  TrainOptions train_;
  torch::Device device_;
  MetricsWriter* metrics_;
  std::unique_ptr<OptimizerSet> optimizers_;
  DataParallel dp_;
  Checkpointer checkpointer_;
  std::vector<std::shared_ptr<TrainerHook>> hooks_, user_hooks_, final_hooks_;
  std::unique_ptr<TrainingSet> training_set_;
  std::unique_ptr<Progress> progress_;
  FitPlan plan_;
  int64_t step_ = 0;
  int64_t epoch_ = -1;  // epoch of the last batch seen; -1 before the first
  bool fit_finished_ = false;
  double seconds_before_ = 0;  // train() time of earlier sessions (from the checkpoint)
  std::optional<std::chrono::steady_clock::time_point> session_start_;  // set while training
};

}  // namespace hashlab
