// What a method sees while it trains: a narrow view of the loop, never the
// Trainer itself. The Trainer (trainers/trainer.h) implements both.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "csrc/core/logging.h"
#include "datasets/training_set.h"
#include "trainers/data_parallel.h"
#include "trainers/method.h"

namespace hashlab {

// A StepMethod's view of the loop.
class StepContext {
 public:
  virtual ~StepContext() = default;
  // Steps done (during a step: the steps before it), of total_steps().
  virtual int64_t step() const = 0;
  virtual int64_t total_steps() const = 0;
  // The epoch of the last batch (-1 before the first).
  virtual int64_t epoch() const = 0;
  virtual torch::Device device() const = 0;
  // train.batch_size: the global batch.
  virtual int64_t batch_size() const = 0;
  // The training items (features after transforms, labels, pool indices),
  // built on first use; has_training_data() says whether there are any.
  virtual const TrainingSet& training_set() = 0;
  virtual bool has_training_data() const = 0;
  // Where a method writes its own records (rank 0 only); may be null.
  virtual MetricsWriter* metrics() = 0;
  // One update of optimizer `name`: the closure computes the losses ("loss"
  // first, minimised; the rest logged) of the declared `scope`, and is called
  // by the optimizer once or, for L-BFGS, as often as its line search needs.
  // Each call zeroes the gradients of every trained parameter, runs the
  // closure (under autocast when train.amp), checks the losses are finite
  // (CPU), back-propagates "loss", reduces the gradients over ranks (by the
  // scope) and clips this optimizer's gradients. Only this optimizer's
  // parameters move. Returns the losses of the first evaluation.
  virtual LossMap optimize(const std::string& name, const std::function<LossMap()>& closure,
                           LossScope scope) = 0;
  // The names of the method's optimizers (parameter_sets order).
  virtual std::vector<std::string> optimizer_names() const = 0;
  // Whether optimizer `name` calls the closure more than once per step
  // (L-BFGS's line search), now.
  virtual bool reevaluates(const std::string& name) = 0;
  // The collectives a loss may use (identity with one process).
  virtual DataParallel& dp() = 0;
};

// What a fit plans: `units` of work called `unit` (e.g. 64 "bit"s per
// round); `units` may be an upper bound (0: unknown). A checkpoint is written
// every `checkpoint_every` units (and always at the end and on interrupt).
struct FitPlan {
  int64_t units = 0;
  std::string unit = "unit";
  int64_t checkpoint_every = 1;
};

// A FitMethod's view of the loop.
class FitContext {
 public:
  virtual ~FitContext() = default;
  virtual torch::Device device() const = 0;
  virtual MetricsWriter* metrics() = 0;
  // Once, before the first unit.
  virtual void begin_units(const FitPlan& plan) = 0;
  // One unit of work is done: `values` are logged with the unit's record;
  // the hooks run (log, evaluation, checkpoint, SIGINT).
  virtual void unit_done(const LossMap& values = {}) = 0;
  // Units done before this session (a resumed fit continues from here).
  virtual int64_t units_done() const = 0;
};

}  // namespace hashlab
