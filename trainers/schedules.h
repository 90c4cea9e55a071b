// Scalar schedules: a value that changes with the training step (continuation
// parameters such as HashNet's beta, loss weights). One class per type in a
// registry; a method may register its own type (HashNet adds "hashnet").
//
//   type: constant   init                        (init)
//   type: step       init * gamma^floor(step / every)
//   type: linear     init + (final - init) * min(step / total, 1)
//
// Each type reads only its own keys; any other key is an error.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "csrc/core/config.h"
#include "csrc/core/registry.h"

namespace hashlab {

class ScalarSchedule {
 public:
  virtual ~ScalarSchedule() = default;
  virtual double at(int64_t step, int64_t total_steps) const = 0;
};

// Factories read their keys from the section (without `type`) and finish() it.
using ScalarScheduleRegistry = Registry<ScalarSchedule, Section&>;
ScalarScheduleRegistry& scalar_schedule_registry();

// Reads {type: NAME, <keys of NAME>}; `default_type` when `type` is absent.
std::shared_ptr<ScalarSchedule> make_scalar_schedule(Section s, const std::string& default_type);

}  // namespace hashlab
