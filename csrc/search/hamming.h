// Exact Hamming search over packed binary codes: one header, a CPU twin
// (hamming_cpu.cpp, SIMD dispatched at run time) and a CUDA twin
// (hamming_cuda.cu + hamming_cuda_adapter.cpp). The CPU version is the
// reference the CUDA version is tested against.
//
// Codes: uint8 tensors [n, ceil(nbits/8)], contiguous, bit j of a code in
// byte j/8 at position j%8 (LSB first), FAISS IndexBinaryFlat layout; bits
// past `nbits` in the last byte must be zero. Distances are integers in
// [0, nbits]. Results are ordered by (distance, database index) ascending,
// on every device, so CPU and CUDA return identical indices.
// Inputs on CUDA run on CUDA (when built with it); otherwise CPU.
// 1 <= nbits <= 4096. Bad arguments (shape, dtype, k, nbits, mixed devices)
// are c10::Error from TORCH_CHECK. `threads` applies to the CPU only.
// Each call converts the database to the kernels' layout (~8 ms per 1M
// 64-bit codes on 2 threads), so batch queries rather than calling per query.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "csrc/core/error.h"

namespace hashlab::search {

// The longest codes searched (bits).
constexpr int kMaxBits = 4096;

struct TopK {
  torch::Tensor distances;  // int32 [nq, k]
  torch::Tensor indices;    // int64 [nq, k]
};

// The k nearest database codes of each query. 1 <= k <= database size.
// threads <= 0: use at::get_num_threads().
TopK hamming_topk(const torch::Tensor& queries, const torch::Tensor& database, int nbits,
                  int64_t k, int threads = 0);

// All database codes within Hamming distance <= radius of each query, in CSR
// form: query i's hits are [offsets[i], offsets[i+1]) of indices/distances,
// sorted by (distance, index).
struct RadiusResult {
  torch::Tensor offsets;    // int64 [nq + 1]
  torch::Tensor indices;    // int64 [total]
  torch::Tensor distances;  // int32 [total]
};
// A wide radius over a large database matches nearly every code (nq * n
// results), so a radius search holds at most `max_results` results (all
// queries together, >= 1): past that it stops early and throws
// RadiusLimitExceeded instead of growing until the machine runs out of memory.
constexpr int64_t kDefaultMaxRadiusResults = 10'000'000;
struct RadiusLimitExceeded : Error {
  RadiusLimitExceeded(const std::string& msg, int64_t max) : Error(msg), max_results(max) {}
  int64_t max_results;
};
RadiusResult hamming_radius(const torch::Tensor& queries, const torch::Tensor& database,
                            int nbits, int radius, int threads = 0,
                            int64_t max_results = kDefaultMaxRadiusResults);

// Full ranking for mAP@all without a comparison sort: per query, every
// database index ordered by (distance, index) (a counting sort over the
// nbits+1 possible distances), and how many items sit at each distance.
struct RankAll {
  torch::Tensor indices;  // int32 [nq, n_db]
  torch::Tensor counts;   // int64 [nq, nbits + 1]; counts[i][d] = #items at distance d
};
RankAll hamming_rank_all(const torch::Tensor& queries, const torch::Tensor& database, int nbits,
                         int threads = 0);

// Plain distance matrix, int32 [nq, n_db] (tests, small problems).
torch::Tensor hamming_distances(const torch::Tensor& queries, const torch::Tensor& database,
                                int nbits, int threads = 0);

// Which CPU kernel the dispatcher picked: "avx512-vpopcntdq", "avx2" or "scalar".
const char* cpu_kernel_name();

// Kernels this CPU can run, fastest first (always ends with "scalar").
std::vector<std::string> available_cpu_kernels();

// Forces the CPU kernel ("auto" = fastest available, or one of
// available_cpu_kernels()), for tests and benchmarks; throws hashlab::Error
// for a kernel this CPU cannot run. Process-wide; do not call while a search
// is running.
void set_cpu_kernel(const std::string& name);

}  // namespace hashlab::search
