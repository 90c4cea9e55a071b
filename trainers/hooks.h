// Trainer hooks: what runs around each step (or each unit of a fit). The
// Trainer installs the built-in ones below, in this order; Trainer::add_hook
// adds more before the checkpoint and interrupt hooks.
#pragma once

#include <memory>

#include "trainers/method.h"

namespace hashlab {

class Trainer;

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

// Method::before_train / after_step / after_epoch / after_train (step loops only).
std::shared_ptr<TrainerHook> method_hook(Method& method);
// Before each step: optimizer stage switches and every optimizer's learning rate.
std::shared_ptr<TrainerHook> lr_schedule_hook();
// On CUDA, checks losses at log and checkpoint steps (CPU checks in the closure).
std::shared_ptr<TrainerHook> finite_guard_hook();
// "train" records (step, epoch, lr, losses, method status, sec_per_step) every
// train.log_every steps (every unit of a fit) and the progress display.
std::shared_ptr<TrainerHook> metrics_hook();
// Trainer::evaluate every train.eval_every steps (units), not at the last one.
std::shared_ptr<TrainerHook> eval_hook();
// checkpoints/last.pt every checkpoint_every steps (a fit: its plan), and at the end.
std::shared_ptr<TrainerHook> checkpoint_hook();
// SIGINT/SIGTERM: checkpoint, the resume hint, "interrupt" record, ExitStatus(130).
std::shared_ptr<TrainerHook> interrupt_hook();

}  // namespace hashlab
