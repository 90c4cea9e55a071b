// torch::optim::SGD with the update of each parameter fused into one pass
// over memory on the CPU.
//
// LibTorch 1.13's SGD::step (like PyTorch's single-tensor SGD, the Python
// peer's) runs, per parameter, g' = g + wd p (a new tensor), b = m b + (1 - d) g',
// [g'' = g' + m b (Nesterov)], p = p - lr b: about 11 passes over memory, where
// reading p, g and b once and writing b and p once is 5. For a network whose
// parameters do not fit in cache (ResNet-34: 21.3M floats, 85 MB per array) the
// step is bound by memory, and at 2 threads memory does not double, so the
// unfused update is the part of the step that scales worst.
//
// Same options, same state (SGDParamState's momentum_buffer under the same
// keys), same save/load, same arithmetic per element (first step: b = g';
// then b = m b + (1 - d) g'), so results differ from SGD::step only by the
// rounding of a fused multiply-add. Parameters that are not dense contiguous
// float32 CPU tensors with a gradient of the same layout take SGD::step's path.
#pragma once

#include <torch/optim/sgd.h>

namespace hashlab {

class FusedSGD : public torch::optim::SGD {
 public:
  using torch::optim::SGD::SGD;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace hashlab
