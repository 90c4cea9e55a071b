// CUDA twin of hamming.h on raw device pointers and a stream (no LibTorch),
// so nvcc compiles it even when LibTorch has no CUDA; hamming_cuda_adapter.cpp
// binds it to tensors in a CUDA build.
//
// Codes: uint8 [n, ceil(nbits/8)] device arrays, FAISS layout (hamming.h).
// Results are ordered by (distance, index) exactly like the CPU twin.
//
// Top-k never materialises the [nq, n] distance matrix. Distances are
// integers in [0, nbits], so selection is by histogram/threshold:
//   1. histogram pass: hist[q][d] = #database codes at distance d;
//   2. per query, T = smallest d with sum_{d'<=d} hist >= k, and
//      need = k - sum_{d'<T} hist (how many of the codes at distance T make it);
//   3. tie pass: per (query, database chunk), how many codes sit at distance T,
//      so the chunk c* holding the need-th one (in index order) is known;
//   4. collect pass: every code with d < T, every code at T in chunks < c*,
//      and in c* the first ones at T in index order (block-wide ordered scan);
//      exactly k keys (d << 48 | index) per query;
//   5. segmented sort of the keys per query (CUB), decoded to distances and
//      indices.
// Each pass recomputes distances (popc on 32-bit words) instead of storing
// them. Radius search uses pass 1 for the counts and pass 4 with T = r + 1.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace hashlab::search::cuda_kernels {

// Bytes of device workspace hamming_topk needs.
size_t topk_workspace_bytes(int64_t nq, int64_t n, int nbits, int64_t k);
// distances: int32 [nq, k], indices: int64 [nq, k] (device). 1 <= k <= n,
// nq * k < 2^31, n < 2^48, 1 <= nbits <= 4096.
void topk(const uint8_t* queries, int64_t nq, const uint8_t* database, int64_t n, int nbits,
          int64_t k, void* workspace, size_t workspace_bytes, int32_t* distances,
          int64_t* indices, cudaStream_t stream);

// Radius search in two calls: counts (int64 [nq], #codes within radius),
// then the caller builds offsets (int64 [nq + 1], exclusive prefix sum) and
// allocates total = offsets[nq] results.
size_t radius_workspace_bytes(int64_t nq, int64_t n, int nbits, int64_t total);
void radius_count(const uint8_t* queries, int64_t nq, const uint8_t* database, int64_t n,
                  int nbits, int radius, void* workspace, size_t workspace_bytes,
                  int64_t* counts, cudaStream_t stream);
void radius_collect(const uint8_t* queries, int64_t nq, const uint8_t* database, int64_t n,
                    int nbits, int radius, const int64_t* offsets, int64_t total,
                    void* workspace, size_t workspace_bytes, int32_t* distances,
                    int64_t* indices, cudaStream_t stream);

// Full ranking: indices int32 [nq, n] ordered by (distance, index), counts
// int64 [nq, nbits + 1]. nq * n < 2^31.
size_t rank_all_workspace_bytes(int64_t nq, int64_t n, int nbits);
void rank_all(const uint8_t* queries, int64_t nq, const uint8_t* database, int64_t n, int nbits,
              void* workspace, size_t workspace_bytes, int32_t* indices, int64_t* counts,
              cudaStream_t stream);

// Distance matrix int32 [nq, n].
size_t distances_workspace_bytes(int64_t nq, int64_t n, int nbits);
void distances(const uint8_t* queries, int64_t nq, const uint8_t* database, int64_t n, int nbits,
               void* workspace, size_t workspace_bytes, int32_t* out, cudaStream_t stream);

}  // namespace hashlab::search::cuda_kernels
