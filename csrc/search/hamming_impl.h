// Internal: the device twins behind the public functions of hamming.h. The
// public functions (hamming.cpp) check inputs and pick a twin by device; the
// twins may assume contiguous uint8 codes of ceil(nbits/8) bytes on their
// device, 1 <= nbits <= kMaxBits, and 1 <= k <= n_db.
#pragma once

#include "csrc/search/hamming.h"

namespace hashlab::search {

constexpr int kMaxBits = 4096;

namespace cpu {
TopK topk(const torch::Tensor& queries, const torch::Tensor& database, int nbits, int64_t k,
          int threads);
RadiusResult radius(const torch::Tensor& queries, const torch::Tensor& database, int nbits,
                    int radius, int threads);
RankAll rank_all(const torch::Tensor& queries, const torch::Tensor& database, int nbits,
                 int threads);
torch::Tensor distances(const torch::Tensor& queries, const torch::Tensor& database, int nbits,
                        int threads);
}  // namespace cpu

#ifdef HASHLAB_WITH_CUDA
// hamming_cuda_adapter.cpp: CUDA tensors in, CUDA tensors out, on the
// current stream.
namespace cuda {
TopK topk(const torch::Tensor& queries, const torch::Tensor& database, int nbits, int64_t k);
RadiusResult radius(const torch::Tensor& queries, const torch::Tensor& database, int nbits,
                    int radius);
RankAll rank_all(const torch::Tensor& queries, const torch::Tensor& database, int nbits);
torch::Tensor distances(const torch::Tensor& queries, const torch::Tensor& database, int nbits);
}  // namespace cuda
#endif

}  // namespace hashlab::search
