// LSH, PCAH, ITQ and SH registered as methods (closed-form fits, no trainer).
#pragma once

#include "trainers/method.h"

namespace hashlab {
void register_baselines(MethodRegistry& registry);
}
