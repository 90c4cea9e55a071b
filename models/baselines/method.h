// LSH, PCAH, ITQ and SH as methods: closed-form fits (FitMethod) on the
// training set's features, flattened (shallow.h holds the maths). One class
// per baseline, each registered under its name.
//
// model:
//   bits: 64
//   iterations: 50      # itq only
//   max_train: 0        # fit on at most this many training rows (0 = all)
#pragma once

#include "trainers/method.h"

namespace hashlab {

// Registers "lsh", "pcah", "itq" and "sh".
void register_baselines(MethodRegistry& registry);

}  // namespace hashlab
