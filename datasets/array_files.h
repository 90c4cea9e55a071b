// Writing arrays for other tools: NumPy .npy (v1.0, C order, little-endian
// int32 / int64 / float32 / uint8) and .fvecs (per row: int32 d, then d
// float32), atomically (AtomicFile: every write, the close and the rename
// checked). The readers are datasets/readers.
#pragma once

#include <string>

#include <torch/torch.h>

namespace hashlab::data {

void write_npy(const std::string& path, const torch::Tensor& t);
// t: float [N, D].
void write_fvecs(const std::string& path, const torch::Tensor& t);
// By the name: .npy or .fvecs (anything else is an error naming it).
void write_feature_file(const std::string& path, const torch::Tensor& t);

}  // namespace hashlab::data
