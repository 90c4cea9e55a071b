// The training engine: a loop plus hooks (detectron2's TrainerBase, in LibTorch).
//
// The loop: for each step, the next batch (after_epoch hooks when the epoch
// changes), before_step hooks, the method's step, after_step hooks; then
// after_train hooks. The services are hooks (trainers/hooks.h), run in this
// order after each step:
//   method         Method::after_step (after_epoch, before/after_train too)
//   finite guard   non-finite losses stop the run, naming the last good checkpoint
//                  (the step's closure checks every step on CPU before backward;
//                  on CUDA the hook checks at log and checkpoint steps: no sync)
//   metrics        "train" records in metrics.jsonl every log_every steps, progress
//   evaluation     every eval_every steps (the final evaluation is the job's)
//   checkpoint     every checkpoint_every steps, and at the end
//   interrupt      SIGINT/SIGTERM: checkpoint, "resume with" hint, ExitStatus(130)
// and before each step: the LR schedule (optimizer stages, per-optimizer schedules).
//
// Steps. Method::step(batch, trainer) runs the step. The default one is
// default_step(): optimize() of the single optimizer on training_step(). A
// method with named optimizers (Method::parameter_sets) runs its own step and
// calls optimize(name, closure) for each update it wants. optimize() always
// hands the optimizer a closure: SGD/Adam evaluate it once, L-BFGS as often as
// its line search needs.
//
// Fits. A method with fits() == true gets fit(training_set(), trainer) instead
// of the loop; it calls begin_units() with its plan and unit_done() after each
// unit of work, which runs the after_step hooks with step() = units done
// (logging every unit, evaluation every eval_every units, checkpoints as the
// plan says, SIGINT). On resume, units_done() says where to continue.
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
#include "trainers/hooks.h"
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

// What a fit method plans: `units` of work called `unit` (e.g. 64 "bit"s per
// round); `units` may be an upper bound (0: unknown). A checkpoint is written
// every `checkpoint_every` units (and always at the end and on interrupt).
struct FitPlan {
  int64_t units = 0;
  std::string unit = "unit";
  int64_t checkpoint_every = 1;
};

class Trainer {
 public:
  // `loader` yields training batches (and defines the training set);
  // `checkpoint_dir` may be empty (no checkpoints, e.g. in tests); `metrics`
  // may be null or a closed writer.
  Trainer(Method& method, Loader* loader, TrainOptions train, OptimOptions optim,
          torch::Device device, std::string checkpoint_dir, MetricsWriter* metrics);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Runs the step loop from the current step to train.iterations, or the
  // method's fit. Throws hashlab::Error on NaN/inf (after pointing at the last
  // good checkpoint) and ExitStatus(130) after writing a checkpoint when
  // interrupted.
  void train();

  // Restores step (or units), optimizers, method, RNG and loader position.
  void resume(const std::string& checkpoint_path);
  void save_checkpoint(const std::string& path);
  std::string last_checkpoint_path() const;

  // Called for periodic evaluation; returns metrics to log.
  std::function<nlohmann::json()> evaluate;
  // Printed when interrupted ("hashlab train ... --resume").
  std::string resume_hint;
  // Written into every checkpoint under "build": what the model was built
  // from (the caller's JSON: method, bits, input shape, model options). The
  // trainer does not read it; the caller compares it before resume().
  std::string build_record;
  // Runs after the built-in hooks that observe a step (metrics, evaluation)
  // and before the checkpoint and interrupt hooks.
  void add_hook(std::shared_ptr<TrainerHook> hook);

  int64_t step() const { return step_; }
  int64_t epoch() const { return epoch_; }
  int64_t total_steps() const { return train_.iterations; }
  torch::Device device() const { return device_; }
  const TrainOptions& options() const { return train_; }
  MetricsWriter* metrics() { return metrics_; }
  Loader* loader() { return loader_; }
  // The training items (features after transforms, labels, pool indices);
  // built from the loader on first use.
  const TrainingSet& training_set();
  // Seconds spent in train(), summed over this run and every run it resumed
  // (each checkpoint carries the total so far); ticking while train() runs.
  double train_seconds() const;
  // The learning rate of optimizer `name` at the current step (the base lr
  // times the schedule; group multipliers not applied).
  double current_lr(const std::string& name = "") const;
  double current_lr_factor(const std::string& name = "") const;

  // ---- steps
  std::vector<std::string> optimizer_names() const;
  torch::optim::Optimizer& optimizer(const std::string& name);
  // One update of optimizer `name`: the closure computes the losses ("loss"
  // first, minimised; the rest logged) and is called by the optimizer, once or,
  // for L-BFGS, as often as the line search needs. Each call zeroes the
  // gradients of every trained parameter, runs the closure (under autocast
  // when train.amp), checks the losses are finite (CPU), back-propagates
  // "loss" and clips this optimizer's gradients. Only this optimizer's
  // parameters move. Returns the losses of the first evaluation.
  LossMap optimize(const std::string& name, const std::function<LossMap()>& closure);
  // The default step: optimize() of the single optimizer on training_step().
  LossMap default_step(const Batch& batch);

  // ---- data-parallel training (several processes, one model each)
  // Joins this trainer to `group` (rank group->getRank() of getSize()). At the
  // start of train() every parameter and buffer of the method's module is
  // broadcast from rank 0 (the buffers, e.g. batch-norm statistics, again
  // before every step, as PyTorch's DDP does); in optimize(), after each backward, the gradients
  // of the optimizer's parameters are all-reduced in flattened buckets
  // (averaged, or summed when the closure's loss is global: see below),
  // and the loss value the optimizer sees (L-BFGS's line search) is the
  // global one; a SIGINT/SIGTERM on any rank stops every rank at the same
  // step; at the end the parameters are checked to agree across ranks. Fits
  // are refused. The caller gives each rank a loader shard of every global
  // batch (LoaderOptions::shard_rank/shard_count) and lets rank 0 alone write
  // (metrics, checkpoints, evaluation).
  void set_process_group(c10::intrusive_ptr<c10d::ProcessGroup> group);
  // Refuses a method that cannot train data-parallel on `world_size` ranks
  // (fits; methods that do not opt in), naming it. set_process_group calls it;
  // the train job calls it first, before anything is written.
  static void check_data_parallel(const Method& method, int world_size);
  int rank() const;
  int world_size() const;
  //
  // A closure's loss is either LOCAL or GLOBAL. Local: every term is a mean
  // over this rank's rows (reconstruction, per-item hinge); the gradients
  // are averaged across ranks, and the loss value and every logged value are
  // replaced by their mean over ranks. Global: the loss is the loss of the
  // whole global batch, computed alike on every rank from gathered rows and
  // from sums over ranks (the helpers below; using one makes the closure
  // global); the gradients, each flowing through this rank's rows only, are
  // summed. A global loss must not add a term over local rows alone (it would
  // count W times): optimize() checks that the loss value agrees across
  // ranks and fails naming the method if it does not. With one process every
  // helper returns its input (or its plain mean/sum).
  //
  // Every rank's rows of x (dim 0, equal counts, CPU) concatenated in rank
  // order. Gradient flows back to this rank's rows only (HashNet's pairs,
  // SiGAH's graph, WSL's kNN graph and orthogonality).
  torch::Tensor all_gather(const torch::Tensor& x);
  // The sum over ranks of `local` (any shape): value of the sum, gradient
  // through this rank's `local` only.
  torch::Tensor sum_over_ranks(const torch::Tensor& local);
  // The global batch's mean of a per-rank batch mean (shards are equal):
  // sum_over_ranks(local_mean) / world_size().
  torch::Tensor mean_over_ranks(const torch::Tensor& local_mean);
  // This rank's rows of a tensor shaped like the global batch (dim 0 =
  // world_size() x this rank's batch): random draws made for the global batch,
  // so that every rank consumes the RNG as one process does and uses its part.
  torch::Tensor local_rows(const torch::Tensor& global) const;
  // Rank 0's values of `tensors` (CPU, same shapes on every rank) on every
  // rank, in place, one collective per dtype: epoch-level work done once
  // (DeepQuan's k-means refresh), and the module's parameters and buffers.
  void broadcast(std::vector<torch::Tensor>& tensors);
  // Seconds this process has waited on collectives (data-parallel), this
  // session: the other ranks' lateness and the transfers. Train records
  // carry it per step as comm_sec_per_step.
  double comm_seconds() const { return comm_seconds_; }
  // Whether to stop now: a local SIGINT/SIGTERM, or (data-parallel) one on any rank.
  bool stop_requested();

  // ---- fits
  void begin_units(const FitPlan& plan);
  // One unit of work is done: `values` are logged with the unit's record.
  void unit_done(const LossMap& values = {});
  int64_t units_done() const { return step_; }

  // ---- used by the built-in hooks
  Method& method() { return method_; }
  void check_finite(const LossMap& losses);
  // Switches optimizer stages when one begins and sets every optimizer's lr.
  void apply_lr_schedule();
  Progress* progress() { return progress_.get(); }
  bool fitting() const { return method_.fits(); }
  // train.iterations, or the fit plan's units (0: unknown).
  int64_t planned_steps() const;
  int64_t checkpoint_every() const;
  // Adds the running session to the stored seconds and stops the clock (idempotent).
  void stop_clock();

 private:
  struct Named {
    ParameterSet set;
    std::unique_ptr<torch::optim::Optimizer> optimizer;
    OptimOptions settings;  // of the current stage
  };
  // (Re)builds every optimizer for optim stage `index` (fresh state).
  void build_optimizers(size_t index);
  Named& named(const std::string& name);
  const Named& named(const std::string& name) const;
  void run_loop();
  void run_fit();
  void before_step();
  void after_step(const LossMap& losses);

  Method& method_;
  Loader* loader_;
  TrainOptions train_;
  OptimOptions optim_;
  torch::Device device_;
  std::string checkpoint_dir_;
  MetricsWriter* metrics_;
  std::vector<Named> optimizers_;
  std::vector<torch::Tensor> trained_params_;  // every parameter of every set
  std::vector<std::shared_ptr<TrainerHook>> hooks_;
  size_t user_hooks_at_ = 0;  // add_hook inserts here
  std::unique_ptr<TrainingSet> training_set_;
  std::unique_ptr<Progress> progress_;
  FitPlan plan_;
  size_t optim_stage_ = 0;  // index into optim_'s stages of the optimizers
  c10::intrusive_ptr<c10d::ProcessGroup> group_;  // null: one process
  bool global_loss_ = false;  // a global helper was used in the current closure
  double comm_seconds_ = 0;
  std::map<std::string, double> comm_by_op_;  // the same by collective
  void broadcast_parameters(bool buffers_only = false);
  void allreduce_gradients(const std::vector<torch::Tensor>& params, bool sum);
  // Waits for a collective; a failure (a dead rank, a timeout) becomes a
  // hashlab::Error naming this rank, the step and `what`.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what);
  // A global loss must be the same on every rank (fails naming the method);
  // returns the largest value over ranks, which every rank then uses.
  double check_global_loss(const torch::Tensor& value, const std::string& optimizer);
  // Replaces every scalar of a local closure's losses by its mean over ranks.
  void mean_values_over_ranks(LossMap& losses);
  void check_parameters_agree();
  // Whether the method's module has a dropout layer with p > 0.
  bool has_active_dropout();
  int64_t step_ = 0;
  int64_t epoch_ = -1;  // epoch of the last batch seen; -1 before the first
  int64_t last_good_checkpoint_step_ = -1;
  bool fit_finished_ = false;
  double seconds_before_ = 0;  // train() time of earlier sessions (from the checkpoint)
  std::optional<std::chrono::steady_clock::time_point> session_start_;  // set while training
};

}  // namespace hashlab
