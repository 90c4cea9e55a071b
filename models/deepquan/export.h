// TorchScript export of product-quantization hashers (DeepQuan, DAE-PQ, PQ).
//
// csrc/export's build_hasher makes binary-code hashers; this is its PQ twin.
// The exported module (torch.jit.load in Python, torch::jit::load in C++)
// offers:
//   preprocess(x) -> the network input (x / input_scale - mean) / std, as build_hasher
//   embed(x)      -> float [N, L]: the continuous code-layer output z
//   encode(x)     -> uint8 [N, M]: per subspace the id of the nearest codeword
//                    (squared Euclidean, computed as ||c||² − 2 z_m·c with the
//                    same ATen calls as search::pq_encode, ties to the lowest id),
//                    so its ids equal pq_encode(codebooks, embed(x)) exactly
//   forward(x)    -> encode(x)
//   decode(ids)   -> float [N, L]: concatenated codewords (ADC / reconstruction)
// x is RAW input shaped [N] + input_shape (any dtype; converted to float32).
// Buffers: codebooks float [M, K, dsub], input_mean, input_std and the net's
// weights. Attributes: nbits (= 8 M: one byte per subspace), method,
// input_shape, input_scale, mean, std, M, K, dsub.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include "csrc/export/script_emitter.h"

namespace hashlab::models {

// spec.nbits is set to 8 M here. codebooks: float [M, K, dsub] with K <= 256.
// emit_net writes z [N, M dsub] from the preprocessed input variable.
torch::jit::Module build_pq_hasher(exporter::HasherSpec spec, const torch::Tensor& codebooks,
                                   const exporter::NetEmitter& emit_net);

}  // namespace hashlab::models
