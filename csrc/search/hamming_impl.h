// Internal: the device twins behind the public functions of hamming.h. The
// public functions (hamming.cpp) check inputs and pick a twin by device; the
// twins may assume contiguous uint8 codes of ceil(nbits/8) bytes on their
// device, 1 <= nbits <= kMaxBits, and 1 <= k <= n_db.
#pragma once

#include "csrc/search/hamming.h"

namespace hashlab::search {

// The op-boundary checks of hamming.cpp (TORCH_CHECK naming the op and the
// bad value). Returns true when the inputs are CUDA tensors.
bool check_inputs(const char* op, const torch::Tensor& queries, const torch::Tensor& database,
                  int nbits);

// A radius search on either twin after check_inputs: checks the radius and
// max_results, and throws RadiusLimitExceeded (naming `op`) past the limit.
RadiusResult radius_search(const char* op, const torch::Tensor& queries,
                           const torch::Tensor& database, int nbits, int radius, int threads,
                           int64_t max_results, bool on_cuda, bool release_pages);

namespace cpu {
// release_pages: the database is a memory-mapped file; drop the pages
// scanned from the resident set as the search goes (bounded RSS).
TopK topk(const torch::Tensor& queries, const torch::Tensor& database, int nbits, int64_t k,
          int threads, bool release_pages = false);
// Stops early when the results pass max_results (all queries together) and
// returns a RadiusResult with undefined tensors.
RadiusResult radius(const torch::Tensor& queries, const torch::Tensor& database, int nbits,
                    int radius, int threads, bool release_pages, int64_t max_results);
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
