// Trainer hooks: when the loop's services run, around each step (or each unit
// of a fit). A hook holds the service it drives, or reads it from the Trainer
// (trainers/trainer.h lists the order the Trainer installs them in);
// Trainer::add_hook adds more before the checkpoint and interrupt hooks.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "trainers/method.h"

namespace hashlab {

class Trainer;
class StepContext;
class OptimizerSet;
class Checkpointer;

class TrainerHook {
 public:
  virtual ~TrainerHook() = default;
  virtual void before_train(Trainer&) {}
  virtual void before_step(Trainer&) {}
  // `losses`: what the step returned (a fit unit: its logged values).
  virtual void after_step(Trainer&, const LossMap& /*losses*/) {}
  virtual void after_epoch(Trainer&) {}
  virtual void after_train(Trainer&) {}
};

// StepMethod::before_train / after_step / after_epoch / after_train, given `ctx`.
std::shared_ptr<TrainerHook> method_hook(StepMethod& method, StepContext& ctx);
// Before each step: the optimizer set's stage switches and learning rates.
std::shared_ptr<TrainerHook> lr_schedule_hook(OptimizerSet& optimizers);
// On CUDA, checks losses at log and checkpoint steps (CPU checks in the closure).
std::shared_ptr<TrainerHook> finite_guard_hook(const Checkpointer& checkpointer);
// "train" records (step, epoch, lr, losses, method status, sec_per_step) every
// train.log_every steps (every unit of a fit) and the progress display.
std::shared_ptr<TrainerHook> metrics_hook();
// `evaluate` every train.eval_every steps (units), not at the last one (the
// final evaluation is the caller's); an "eval" record each time.
std::shared_ptr<TrainerHook> eval_hook(std::function<nlohmann::json()> evaluate);
// The trainer's state (Trainer::save_state) written by `checkpointer` every
// checkpoint_every steps (a fit: its plan), and at the end.
std::shared_ptr<TrainerHook> checkpoint_hook(Checkpointer& checkpointer);
// SIGINT/SIGTERM (on any rank): checkpoint (unless this step's is written),
// `resume_hint`, an "interrupt" record, ExitStatus(130). A fit without units
// sees the signal when it ends.
std::shared_ptr<TrainerHook> interrupt_hook(Checkpointer& checkpointer, std::string resume_hint);

}  // namespace hashlab
