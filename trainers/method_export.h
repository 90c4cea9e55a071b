// Glue between a Method's context and the exported hasher (csrc/export/script_emitter.h):
// the export core takes plain fields (HasherSpec); this turns a MethodContext into them.
#pragma once

#include <string>

#include <torch/script.h>

#include "csrc/export/script_emitter.h"
#include "trainers/method.h"

namespace hashlab::exporter {

// input_shape, input_scale, mean and std from what the method was built for.
HasherSpec hasher_spec(const MethodContext& ctx, const std::string& method, int64_t nbits);

// Shallow baselines: codes = sign((x' - center) W + bias), x' the input after
// the context's preprocessing, flattened. W float [D, B], center [D] or
// undefined, bias [B] or undefined. See export_linear_hasher in script_emitter.h.
torch::jit::Module export_linear_hasher(const std::string& method, const torch::Tensor& W,
                                        const torch::Tensor& center, const MethodContext& ctx,
                                        const torch::Tensor& bias = torch::Tensor());

}  // namespace hashlab::exporter
