// Product quantization (Jégou et al., TPAMI 2011): training, encoding, and
// exact symmetric (SDC) / asymmetric (ADC) distance search.
//
// A D-dimensional vector is cut into M sub-vectors of dsub = D / M
// dimensions; sub-vector m is coded by the index of its nearest codeword in
// codebook m (K <= 256 codewords, one uint8 id per subspace). The quantizer is
// hashlab::codes::PQCodes (csrc/codes/code_file.h): codebooks float [M, K, dsub]
// (its `ids` member holds the codes of whatever was encoded with it).
//
//   ADC: d(q, c) = Σ_m T_q[m][c_m],  T_q[m][k] = ||q_m − C[m][k]||²   (per-query tables, [M, K])
//   SDC: d(a, c) = Σ_m S[m][a_m][c_m], S[m][i][j] = ||C[m][i] − C[m][j]||²   (M tables of K × K)
//
// Every distance here is the float sum over m = 0..M-1 in that order, so all
// functions (top-k, full ranking, distance matrix) agree bit for bit. Results
// are ordered by (distance, database index) ascending.
//
// The CPU top-k (pq_cpu.cpp) scans the database in blocks of 64 codes stored
// subspace-major; on CPUs with AVX-512 VBMI it first bounds each code's
// distance from below with 8-bit quantized tables (64 codes per instruction,
// `vpermi2b` table look-ups, saturating adds) and computes exact float
// distances only for codes whose bound can still beat the current k-th
// distance. The bound is conservative, so the result is exactly the scalar
// result.
#pragma once

#include <cstdint>
#include <memory>

#include <torch/torch.h>

#include "csrc/codes/code_file.h"

namespace hashlab::search {

// Trains one k-means (k-means++ init, `iters` Lloyd iterations, seed + m for
// subspace m) per subspace on X float [N, D] (D divisible by M, N >= K,
// 1 <= K <= 256), on X's device. Returns codebooks (CPU) and the ids of X.
codes::PQCodes pq_train(const torch::Tensor& X, int M, int K, int iters = 25, uint64_t seed = 0);

// Nearest codeword per subspace: uint8 [N, M] (CPU). Ties: lowest id.
torch::Tensor pq_encode(const codes::PQCodes& pq, const torch::Tensor& X);
// Codewords concatenated: float [N, D] (CPU).
torch::Tensor pq_decode(const codes::PQCodes& pq, const torch::Tensor& ids);

torch::Tensor pq_sdc_tables(const codes::PQCodes& pq);                           // float [M, K, K]
torch::Tensor pq_adc_tables(const codes::PQCodes& pq, const torch::Tensor& queries);  // float [nq, M, K]

// Plain distance matrices, float [nq, n] (tests, small problems).
torch::Tensor pq_distances_adc(const codes::PQCodes& pq, const torch::Tensor& queries,
                               const torch::Tensor& db_ids, int threads = 0);
torch::Tensor pq_distances_sdc(const codes::PQCodes& pq, const torch::Tensor& query_ids,
                               const torch::Tensor& db_ids, int threads = 0);

struct PQTopK {
  torch::Tensor distances;  // float [nq, k]
  torch::Tensor indices;    // int64 [nq, k]
};

// Database codes in the scan layout (blocks of 64 codes, subspace-major),
// built once and reused for many queries.
class PQScanDatabase {
 public:
  PQScanDatabase(const torch::Tensor& db_ids, int K);
  int64_t size() const { return n_; }
  int M() const { return M_; }
  int K() const { return K_; }
  const uint8_t* block(int64_t b) const { return blocks_.data() + b * int64_t(M_) * 64; }
  int64_t num_blocks() const { return (n_ + 63) / 64; }

 private:
  int64_t n_;
  int M_, K_;
  std::vector<uint8_t> blocks_;  // [num_blocks][M][64]
};

// Exact k nearest codes for each query given its distance tables float
// [nq, M, K]. 1 <= k <= n. threads <= 0: at::get_num_threads().
// `use_simd` = false forces the scalar scan (tests compare both).
PQTopK pq_search_tables(const torch::Tensor& tables, const PQScanDatabase& db, int64_t k,
                        int threads = 0, bool use_simd = true);

PQTopK pq_search_adc(const codes::PQCodes& pq, const torch::Tensor& queries,
                     const torch::Tensor& db_ids, int64_t k, int threads = 0);
PQTopK pq_search_sdc(const codes::PQCodes& pq, const torch::Tensor& query_ids,
                     const torch::Tensor& db_ids, int64_t k, int threads = 0);

// Full ranking for mAP@all: per query every database index ordered by
// (distance, index), int64 [nq, n]. From tables float [nq, M, K].
torch::Tensor pq_rank_all(const torch::Tensor& tables, const torch::Tensor& db_ids,
                          int threads = 0);
// SDC tables gathered per query: float [nq, M, K] rows S[m][query_ids[m]].
torch::Tensor pq_sdc_query_tables(const torch::Tensor& sdc_tables, const torch::Tensor& query_ids);

// Which scan kernel pq_search_tables uses on this CPU: "avx512-vbmi" or "scalar".
const char* pq_cpu_kernel_name();

}  // namespace hashlab::search
