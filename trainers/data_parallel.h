// Data-parallel training as one component: the process group, the timed
// waits, the collectives a method's loss may use, the gradient buckets and
// the checks that the ranks agree. With one process (no group) every helper
// returns its input, so a method is written once.
//
// A loss's scope is declared where the loss is made (Trainer::optimize's
// `scope`, Method::training_loss_scope for the default step):
//   local   every term is a mean over this rank's rows (reconstruction, a
//           per-item hinge): the gradients are averaged over ranks, and the
//           loss value and every logged value become their mean over ranks;
//   global  the loss of the whole global batch, computed alike on every rank
//           from gathered rows (all_gather) and sums over ranks
//           (sum_over_ranks / mean_over_ranks): the gradients, each through
//           this rank's rows, are summed, and the value must agree across
//           ranks (a local term mixed in would count N times: refused).
// Using a helper on a tensor with a gradient inside a closure declared local
// is refused, with one process too, so a method's tests catch a wrong
// declaration without launching ranks.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/torch.h>

namespace hashlab {

enum class LossScope { local, global };

class DataParallel {
 public:
  // `group` may be null or of size 1: one process. `who` names the method
  // in errors.
  DataParallel(c10::intrusive_ptr<c10d::ProcessGroup> group, std::string who);

  bool active() const { return static_cast<bool>(group_); }
  int rank() const;
  int world_size() const;

  // ---- what a method's loss may use (identity with one process)
  // Every rank's rows of x (dim 0, equal counts, CPU) concatenated in rank
  // order; the gradient flows back to this rank's rows only.
  torch::Tensor all_gather(const torch::Tensor& x);
  // The sum over ranks of `local` (any shape): value of the sum, gradient
  // through this rank's `local` only.
  torch::Tensor sum_over_ranks(const torch::Tensor& local);
  // The global batch's mean of a per-rank batch mean (equal shards).
  torch::Tensor mean_over_ranks(const torch::Tensor& local_mean);
  // This rank's rows of a tensor drawn at the global batch's shape, so every
  // rank consumes the RNG as one process does.
  torch::Tensor local_rows(const torch::Tensor& global) const;
  // Rank 0's values of `tensors` (CPU, same shapes on every rank) on every
  // rank, in place, one collective per dtype.
  void broadcast(std::vector<torch::Tensor>& tensors);

  // ---- used by the loop
  // The scope of the closure being evaluated (set by Trainer::optimize).
  class ScopeGuard {
   public:
    ScopeGuard(DataParallel& dp, LossScope scope, std::string optimizer);
    ~ScopeGuard();
    ScopeGuard(const ScopeGuard&) = delete;
    ScopeGuard& operator=(const ScopeGuard&) = delete;

   private:
    DataParallel& dp_;
  };
  // After backward: the gradients of `params` averaged (local) or summed
  // (global) over ranks, in flattened buckets of about 16 MB; returns the
  // loss value every rank hands the optimizer (global: checked to agree;
  // local: the mean), and replaces the logged scalars of a local loss by
  // their means over ranks.
  torch::Tensor reduce_step(const std::vector<torch::Tensor>& params,
                            std::vector<std::pair<std::string, torch::Tensor>>& losses,
                            LossScope scope, const std::string& optimizer);
  // The module's parameters (and buffers), or its buffers alone, from rank 0.
  void broadcast_module(torch::nn::Module& module, bool buffers_only);
  // A SIGINT/SIGTERM on any rank (MAX of the local flags).
  bool any_rank(bool flag);
  // Fails when the module's parameters differ across ranks.
  void check_parameters_agree(torch::nn::Module& module);
  // The step shown in collective errors.
  void set_step(int64_t step) { step_ = step; }
  // Seconds waited on collectives this session, in all and by operation.
  double comm_seconds() const { return comm_seconds_; }
  const std::map<std::string, double>& comm_by_op() const { return comm_by_op_; }

 private:
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what);
  // Gloo moves CPU tensors only.
  static void check_cpu(const char* helper, const torch::Tensor& x);
  // A helper used on a tensor with a gradient: refused inside a local closure.
  void note_global(const char* helper, const torch::Tensor& x);
  void allreduce_gradients(const std::vector<torch::Tensor>& params, bool sum);
  double check_global_loss(const torch::Tensor& value, const std::string& optimizer);
  void mean_values_over_ranks(std::vector<std::pair<std::string, torch::Tensor>>& losses);

  c10::intrusive_ptr<c10d::ProcessGroup> group_;  // null: one process
  std::string who_;
  bool in_closure_ = false;
  LossScope scope_ = LossScope::local;
  std::string optimizer_;
  int64_t step_ = 0;
  double comm_seconds_ = 0;
  std::map<std::string, double> comm_by_op_;
};

}  // namespace hashlab
