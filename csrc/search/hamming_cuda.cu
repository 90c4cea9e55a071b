// CUDA twin of the Hamming search; see hamming_cuda.cuh for the algorithm.
#include "csrc/search/hamming_cuda.cuh"

#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace hashlab::search::cuda_kernels {
namespace {

constexpr int kThreads = 256;             // threads per block of the distance passes
constexpr int64_t kChunk = kThreads * 32;  // database codes per block of those passes
constexpr int kIndexBits = 48;            // key = distance << 48 | index
constexpr unsigned long long kIndexMask = (1ull << kIndexBits) - 1;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("hamming CUDA: ") + what + ": " + cudaGetErrorString(e));
}

int words32(int nbits) { return (nbits + 31) / 32; }

// Queries per block: their histograms (nbits + 1 ints each) share <= 32 KiB.
int query_tile(int nbits) {
  const int fit = 32768 / (4 * (nbits + 1));
  return fit >= 8 ? 8 : fit >= 4 ? 4 : fit >= 2 ? 2 : 1;
}

// Bump allocator over the caller's workspace; with base == nullptr it only
// measures, so *_workspace_bytes and the run carve identically.
struct Carver {
  char* base;
  size_t used = 0;
  template <typename T>
  T* take(int64_t count) {
    used = (used + 255) / 256 * 256;
    T* p = base ? reinterpret_cast<T*>(base + used) : nullptr;
    used += static_cast<size_t>(count) * sizeof(T);
    return p;
  }
};

// ------------------------------------------------------------------ kernels

// Packed bytes -> 32-bit words (little-endian), bits past nbits cleared.
__global__ void pack_words_kernel(const uint8_t* __restrict__ codes, int64_t n, int nbytes,
                                  int nbits, int W, uint32_t* __restrict__ words) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= n * W) return;
  const int64_t i = t / W;
  const int w = static_cast<int>(t % W);
  uint32_t v = 0;
  for (int b = 0; b < 4; ++b) {
    const int byte = 4 * w + b;
    if (byte < nbytes) v |= uint32_t(codes[i * nbytes + byte]) << (8 * b);
  }
  if (w == W - 1 && nbits % 32) v &= (1u << (nbits % 32)) - 1u;
  words[t] = v;
}

// Loads the block's query tile into shared memory (zeros past nq).
template <int QT>
__device__ void load_queries(const uint32_t* __restrict__ q, int64_t nq, int W, uint32_t* sq) {
  const int64_t q0 = int64_t(blockIdx.x) * QT;
  for (int j = threadIdx.x; j < QT * W; j += blockDim.x) {
    const int64_t qi = q0 + j / W;
    sq[j] = qi < nq ? q[qi * W + j % W] : 0u;
  }
}

template <int QT>
__device__ __forceinline__ void item_distances(const uint32_t* __restrict__ db, int64_t i, int W,
                                               const uint32_t* sq, int (&acc)[QT]) {
#pragma unroll
  for (int t = 0; t < QT; ++t) acc[t] = 0;
  const uint32_t* c = db + i * W;
  for (int w = 0; w < W; ++w) {
    const uint32_t x = __ldg(c + w);
#pragma unroll
    for (int t = 0; t < QT; ++t) acc[t] += __popc(x ^ sq[t * W + w]);
  }
}

// Pass 1: hist[q][d] += #codes of this block's chunk at distance d.
template <int QT>
__global__ void histogram_kernel(const uint32_t* __restrict__ q, int64_t nq,
                                 const uint32_t* __restrict__ db, int64_t n, int W, int nbits,
                                 unsigned long long* __restrict__ hist) {
  extern __shared__ uint32_t smem[];
  uint32_t* sq = smem;
  int* shist = reinterpret_cast<int*>(smem + QT * W);
  const int bins = nbits + 1;
  load_queries<QT>(q, nq, W, sq);
  for (int j = threadIdx.x; j < QT * bins; j += blockDim.x) shist[j] = 0;
  __syncthreads();
  const int64_t c0 = int64_t(blockIdx.y) * kChunk, c1 = min(n, c0 + kChunk);
  for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x) {
    int acc[QT];
    item_distances<QT>(db, i, W, sq, acc);
#pragma unroll
    for (int t = 0; t < QT; ++t) atomicAdd(&shist[t * bins + acc[t]], 1);
  }
  __syncthreads();
  const int64_t q0 = int64_t(blockIdx.x) * QT;
  for (int j = threadIdx.x; j < QT * bins; j += blockDim.x) {
    const int64_t qi = q0 + j / bins;
    if (qi < nq && shist[j] != 0)
      atomicAdd(&hist[qi * bins + j % bins], static_cast<unsigned long long>(shist[j]));
  }
}

// Pass 2: per query, the threshold distance T and how many codes at T are
// needed (k - #codes below T).
__global__ void threshold_kernel(const unsigned long long* __restrict__ hist, int64_t nq,
                                 int nbits, int64_t k, int* __restrict__ thr,
                                 int64_t* __restrict__ need) {
  const int64_t qi = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (qi >= nq) return;
  const unsigned long long* h = hist + qi * (nbits + 1);
  long long below = 0;
  int d = 0;
  for (; d < nbits; ++d) {
    if (below + static_cast<long long>(h[d]) >= k) break;
    below += static_cast<long long>(h[d]);
  }
  thr[qi] = d;
  need[qi] = k - below;
}

// Pass 3: eq[q][chunk] = #codes of the chunk at distance thr[q].
template <int QT>
__global__ void tie_count_kernel(const uint32_t* __restrict__ q, int64_t nq,
                                 const uint32_t* __restrict__ db, int64_t n, int W,
                                 const int* __restrict__ thr, int64_t nchunks,
                                 int* __restrict__ eq) {
  extern __shared__ uint32_t smem[];
  uint32_t* sq = smem;
  __shared__ int scount[QT];
  __shared__ int sthr[QT];
  load_queries<QT>(q, nq, W, sq);
  const int64_t q0 = int64_t(blockIdx.x) * QT;
  if (threadIdx.x < QT) {
    scount[threadIdx.x] = 0;
    sthr[threadIdx.x] = q0 + threadIdx.x < nq ? thr[q0 + threadIdx.x] : -1;
  }
  __syncthreads();
  int local[QT];
#pragma unroll
  for (int t = 0; t < QT; ++t) local[t] = 0;
  const int64_t c0 = int64_t(blockIdx.y) * kChunk, c1 = min(n, c0 + kChunk);
  for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x) {
    int acc[QT];
    item_distances<QT>(db, i, W, sq, acc);
#pragma unroll
    for (int t = 0; t < QT; ++t) local[t] += acc[t] == sthr[t];
  }
#pragma unroll
  for (int t = 0; t < QT; ++t)
    if (local[t]) atomicAdd(&scount[t], local[t]);
  __syncthreads();
  if (threadIdx.x < QT && q0 + threadIdx.x < nq)
    eq[(q0 + threadIdx.x) * nchunks + blockIdx.y] = scount[threadIdx.x];
}

// Per query: the chunk c* where the need-th code at distance T lies, and how
// many codes at T to take from it.
__global__ void tie_chunk_kernel(const int* __restrict__ eq, int64_t nq, int64_t nchunks,
                                 const int64_t* __restrict__ need, int64_t* __restrict__ cstar,
                                 int64_t* __restrict__ take_in_cstar) {
  const int64_t qi = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (qi >= nq) return;
  long long before = 0;
  int64_t c = 0;
  for (; c < nchunks; ++c) {
    const int e = eq[qi * nchunks + c];
    if (before + e >= need[qi]) break;
    before += e;
  }
  cstar[qi] = c;
  take_in_cstar[qi] = need[qi] - before;
}

// Pass 4: appends key (d << 48 | i) at keys[begin[q] + slot] for every code
// with d < thr[q]; codes with d == thr[q] in chunks < cstar[q]; and in chunk
// cstar[q] the first take_in_cstar[q] codes at thr[q] in index order. cstar
// may be nullptr (radius: nothing at thr is taken).
template <int QT>
__global__ void collect_kernel(const uint32_t* __restrict__ q, int64_t nq,
                               const uint32_t* __restrict__ db, int64_t n, int W,
                               const int* __restrict__ thr, const int64_t* __restrict__ cstar,
                               const int64_t* __restrict__ take_in_cstar,
                               const int64_t* __restrict__ begin,
                               unsigned long long* __restrict__ fill,
                               unsigned long long* __restrict__ keys) {
  using BlockScan = cub::BlockScan<int, kThreads>;
  __shared__ typename BlockScan::TempStorage scan_storage;
  extern __shared__ uint32_t smem[];
  uint32_t* sq = smem;
  __shared__ int sthr[QT];
  __shared__ int64_t scstar[QT], stake[QT], staken[QT];
  load_queries<QT>(q, nq, W, sq);
  const int64_t q0 = int64_t(blockIdx.x) * QT;
  if (threadIdx.x < QT) {
    const int64_t qi = q0 + threadIdx.x;
    sthr[threadIdx.x] = qi < nq ? thr[qi] : -1;
    scstar[threadIdx.x] = (qi < nq && cstar) ? cstar[qi] : -1;
    stake[threadIdx.x] = (qi < nq && take_in_cstar) ? take_in_cstar[qi] : 0;
    staken[threadIdx.x] = 0;
  }
  __syncthreads();
  const int64_t chunk = blockIdx.y;
  const int64_t c0 = chunk * kChunk, c1 = min(n, c0 + kChunk);
  // Rounds are uniform across the block so the ordered scan can run.
  for (int64_t base = c0; base < c1; base += blockDim.x) {
    const int64_t i = base + threadIdx.x;
    const bool valid = i < c1;
    int acc[QT];
    if (valid) item_distances<QT>(db, i, W, sq, acc);
#pragma unroll
    for (int t = 0; t < QT; ++t) {
      const int64_t qi = q0 + t;
      if (qi >= nq) break;  // uniform
      const int d = valid ? acc[t] : -1;
      bool take = valid && d < sthr[t];
      const bool tie = valid && d == sthr[t];
      if (chunk < scstar[t]) {
        take |= tie;
      } else if (chunk == scstar[t]) {  // uniform: ordered pick of the first ties
        int rank = 0, total = 0;
        BlockScan(scan_storage).ExclusiveSum(tie ? 1 : 0, rank, total);
        if (tie && staken[t] + rank < stake[t]) take = true;
        __syncthreads();
        if (threadIdx.x == 0) staken[t] += total;
        __syncthreads();
      }
      if (take) {
        const unsigned long long slot = atomicAdd(&fill[qi], 1ull);
        keys[begin[qi] + slot] = (static_cast<unsigned long long>(d) << kIndexBits) |
                                 static_cast<unsigned long long>(i);
      }
    }
  }
}

// Distance matrix rows (int32) or keys for a full ranking.
template <int QT, bool kKeys>
__global__ void all_distances_kernel(const uint32_t* __restrict__ q, int64_t nq,
                                     const uint32_t* __restrict__ db, int64_t n, int W,
                                     int32_t* __restrict__ out,
                                     unsigned long long* __restrict__ keys) {
  extern __shared__ uint32_t smem[];
  uint32_t* sq = smem;
  load_queries<QT>(q, nq, W, sq);
  __syncthreads();
  const int64_t q0 = int64_t(blockIdx.x) * QT;
  const int64_t c0 = int64_t(blockIdx.y) * kChunk, c1 = min(n, c0 + kChunk);
  for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x) {
    int acc[QT];
    item_distances<QT>(db, i, W, sq, acc);
#pragma unroll
    for (int t = 0; t < QT; ++t) {
      if (q0 + t >= nq) break;
      if (kKeys)
        keys[(q0 + t) * n + i] =
            (static_cast<unsigned long long>(acc[t]) << kIndexBits) | static_cast<unsigned long long>(i);
      else
        out[(q0 + t) * n + i] = acc[t];
    }
  }
}

__global__ void fill_kernel(int* __restrict__ a, int64_t n, int value) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t < n) a[t] = value;
}

__global__ void strided_offsets_kernel(int64_t* __restrict__ offsets, int64_t count,
                                       int64_t stride) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t <= count) offsets[t] = t * stride;
}

template <typename IndexT>
__global__ void decode_kernel(const unsigned long long* __restrict__ keys, int64_t total,
                              int32_t* __restrict__ dist, IndexT* __restrict__ idx) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= total) return;
  const unsigned long long key = keys[t];
  if (dist) dist[t] = static_cast<int32_t>(key >> kIndexBits);
  idx[t] = static_cast<IndexT>(key & kIndexMask);
}

// ------------------------------------------------------------------ host side

unsigned blocks_for(int64_t n, int threads = 256) {
  return static_cast<unsigned>(std::max<int64_t>(1, (n + threads - 1) / threads));
}

struct Plan {
  int W, QT;
  int64_t nchunks;
  dim3 grid;
  size_t smem_queries;  // bytes of query words in shared memory
};

Plan make_plan(int64_t nq, int64_t n, int nbits) {
  Plan p;
  p.W = words32(nbits);
  p.QT = query_tile(nbits);
  p.nchunks = std::max<int64_t>(1, (n + kChunk - 1) / kChunk);
  if (p.nchunks > 65535) throw std::runtime_error("hamming CUDA: database too large for one call");
  p.grid = dim3(blocks_for(nq, p.QT), static_cast<unsigned>(p.nchunks));
  p.smem_queries = sizeof(uint32_t) * p.QT * p.W;
  return p;
}

// Calls fn.template operator()<QT>() for the plan's query tile.
template <typename Fn>
void with_tile(int QT, const Fn& fn) {
  switch (QT) {
    case 8: fn(std::integral_constant<int, 8>{}); break;
    case 4: fn(std::integral_constant<int, 4>{}); break;
    case 2: fn(std::integral_constant<int, 2>{}); break;
    default: fn(std::integral_constant<int, 1>{}); break;
  }
}

struct Words {
  uint32_t* q;
  uint32_t* db;
};

Words carve_words(Carver& c, int64_t nq, int64_t n, int nbits) {
  const int W = words32(nbits);
  return {c.take<uint32_t>(nq * W), c.take<uint32_t>(n * W)};
}

void pack_both(const uint8_t* queries, int64_t nq, const uint8_t* database, int64_t n, int nbits,
               const Words& w, cudaStream_t stream) {
  const int W = words32(nbits), nbytes = (nbits + 7) / 8;
  if (nq > 0) pack_words_kernel<<<blocks_for(nq * W), 256, 0, stream>>>(queries, nq, nbytes, nbits, W, w.q);
  pack_words_kernel<<<blocks_for(n * W), 256, 0, stream>>>(database, n, nbytes, nbits, W, w.db);
  check(cudaGetLastError(), "pack words");
}

void launch_histogram(const Plan& p, const Words& w, int64_t nq, int64_t n, int nbits,
                      unsigned long long* hist, cudaStream_t stream) {
  check(cudaMemsetAsync(hist, 0, sizeof(unsigned long long) * nq * (nbits + 1), stream), "memset");
  with_tile(p.QT, [&](auto qt) {
    constexpr int QT = decltype(qt)::value;
    const size_t smem = p.smem_queries + sizeof(int) * QT * (nbits + 1);
    histogram_kernel<QT><<<p.grid, kThreads, smem, stream>>>(w.q, nq, w.db, n, p.W, nbits, hist);
  });
  check(cudaGetLastError(), "histogram");
}

void launch_collect(const Plan& p, const Words& w, int64_t nq, int64_t n, const int* thr,
                    const int64_t* cstar, const int64_t* take, const int64_t* begin,
                    unsigned long long* fill, unsigned long long* keys, cudaStream_t stream) {
  check(cudaMemsetAsync(fill, 0, sizeof(unsigned long long) * nq, stream), "memset");
  with_tile(p.QT, [&](auto qt) {
    constexpr int QT = decltype(qt)::value;
    collect_kernel<QT><<<p.grid, kThreads, p.smem_queries, stream>>>(w.q, nq, w.db, n, p.W, thr,
                                                                     cstar, take, begin, fill, keys);
  });
  check(cudaGetLastError(), "collect");
}

size_t sort_temp_bytes(int64_t total, int64_t segments) {
  size_t bytes = 0;
  check(cub::DeviceSegmentedSort::SortKeys(nullptr, bytes, static_cast<const unsigned long long*>(nullptr),
                                           static_cast<unsigned long long*>(nullptr), total, segments,
                                           static_cast<const int64_t*>(nullptr),
                                           static_cast<const int64_t*>(nullptr)),
        "sort temp size");
  return bytes;
}

void sort_segments(void* temp, size_t temp_bytes, const unsigned long long* in,
                   unsigned long long* out, int64_t total, int64_t segments,
                   const int64_t* offsets, cudaStream_t stream) {
  check(cub::DeviceSegmentedSort::SortKeys(temp, temp_bytes, in, out, total, segments, offsets,
                                           offsets + 1, stream),
        "segmented sort");
}

// The full top-k workspace layout, shared by measuring and running.
struct TopKSpace {
  Words w;
  unsigned long long* hist;
  int* thr;
  int64_t *need, *cstar, *take, *offsets;
  int* eq;
  unsigned long long *fill, *keys, *sorted;
  void* sort_temp;
  size_t sort_bytes;
};

TopKSpace carve_topk(Carver& c, int64_t nq, int64_t n, int nbits, int64_t k) {
  const Plan p = make_plan(nq, n, nbits);
  TopKSpace s;
  s.w = carve_words(c, nq, n, nbits);
  s.hist = c.take<unsigned long long>(nq * (nbits + 1));
  s.thr = c.take<int>(nq);
  s.need = c.take<int64_t>(nq);
  s.cstar = c.take<int64_t>(nq);
  s.take = c.take<int64_t>(nq);
  s.offsets = c.take<int64_t>(nq + 1);
  s.eq = c.take<int>(nq * p.nchunks);
  s.fill = c.take<unsigned long long>(nq);
  s.keys = c.take<unsigned long long>(nq * k);
  s.sorted = c.take<unsigned long long>(nq * k);
  s.sort_bytes = sort_temp_bytes(nq * k, nq);
  s.sort_temp = c.take<char>(static_cast<int64_t>(s.sort_bytes));
  return s;
}

void check_workspace(const Carver& c, size_t have) {
  if (c.used > have) throw std::runtime_error("hamming CUDA: workspace too small");
}

}  // namespace

size_t topk_workspace_bytes(int64_t nq, int64_t n, int nbits, int64_t k) {
  Carver c{nullptr};
  carve_topk(c, nq, n, nbits, k);
  return c.used;
}

void topk(const uint8_t* queries, int64_t nq, const uint8_t* database, int64_t n, int nbits,
          int64_t k, void* workspace, size_t workspace_bytes, int32_t* distances,
          int64_t* indices, cudaStream_t stream) {
  if (nq == 0) return;
  Carver c{static_cast<char*>(workspace)};
  const TopKSpace s = carve_topk(c, nq, n, nbits, k);
  check_workspace(c, workspace_bytes);
  const Plan p = make_plan(nq, n, nbits);
  pack_both(queries, nq, database, n, nbits, s.w, stream);
  launch_histogram(p, s.w, nq, n, nbits, s.hist, stream);
  threshold_kernel<<<blocks_for(nq), 256, 0, stream>>>(s.hist, nq, nbits, k, s.thr, s.need);
  with_tile(p.QT, [&](auto qt) {
    constexpr int QT = decltype(qt)::value;
    tie_count_kernel<QT><<<p.grid, kThreads, p.smem_queries, stream>>>(s.w.q, nq, s.w.db, n, p.W,
                                                                       s.thr, p.nchunks, s.eq);
  });
  tie_chunk_kernel<<<blocks_for(nq), 256, 0, stream>>>(s.eq, nq, p.nchunks, s.need, s.cstar, s.take);
  strided_offsets_kernel<<<blocks_for(nq + 1), 256, 0, stream>>>(s.offsets, nq, k);
  check(cudaGetLastError(), "threshold");
  launch_collect(p, s.w, nq, n, s.thr, s.cstar, s.take, s.offsets, s.fill, s.keys, stream);
  sort_segments(s.sort_temp, s.sort_bytes, s.keys, s.sorted, nq * k, nq, s.offsets, stream);
  decode_kernel<int64_t><<<blocks_for(nq * k), 256, 0, stream>>>(s.sorted, nq * k, distances, indices);
  check(cudaGetLastError(), "decode");
}

namespace {
struct RadiusSpace {
  Words w;
  unsigned long long* hist;
  int* thr;
  unsigned long long *fill, *keys, *sorted;
  void* sort_temp;
  size_t sort_bytes;
};
RadiusSpace carve_radius(Carver& c, int64_t nq, int64_t n, int nbits, int64_t total) {
  RadiusSpace s;
  s.w = carve_words(c, nq, n, nbits);
  s.hist = c.take<unsigned long long>(nq * (nbits + 1));
  s.thr = c.take<int>(nq);
  s.fill = c.take<unsigned long long>(nq);
  s.keys = c.take<unsigned long long>(total);
  s.sorted = c.take<unsigned long long>(total);
  s.sort_bytes = total > 0 ? sort_temp_bytes(total, nq) : 0;
  s.sort_temp = c.take<char>(static_cast<int64_t>(s.sort_bytes));
  return s;
}

__global__ void radius_counts_kernel(const unsigned long long* __restrict__ hist, int64_t nq,
                                     int nbits, int radius, int64_t* __restrict__ counts) {
  const int64_t qi = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (qi >= nq) return;
  long long s = 0;
  for (int d = 0; d <= radius && d <= nbits; ++d) s += static_cast<long long>(hist[qi * (nbits + 1) + d]);
  counts[qi] = s;
}
}  // namespace

size_t radius_workspace_bytes(int64_t nq, int64_t n, int nbits, int64_t total) {
  Carver c{nullptr};
  carve_radius(c, nq, n, nbits, total);
  return c.used;
}

void radius_count(const uint8_t* queries, int64_t nq, const uint8_t* database, int64_t n,
                  int nbits, int radius, void* workspace, size_t workspace_bytes,
                  int64_t* counts, cudaStream_t stream) {
  if (nq == 0) return;
  Carver c{static_cast<char*>(workspace)};
  const RadiusSpace s = carve_radius(c, nq, n, nbits, 0);
  check_workspace(c, workspace_bytes);
  const Plan p = make_plan(nq, n, nbits);
  pack_both(queries, nq, database, n, nbits, s.w, stream);
  launch_histogram(p, s.w, nq, n, nbits, s.hist, stream);
  radius_counts_kernel<<<blocks_for(nq), 256, 0, stream>>>(s.hist, nq, nbits, radius, counts);
  check(cudaGetLastError(), "radius counts");
}

void radius_collect(const uint8_t* queries, int64_t nq, const uint8_t* database, int64_t n,
                    int nbits, int radius, const int64_t* offsets, int64_t total,
                    void* workspace, size_t workspace_bytes, int32_t* distances,
                    int64_t* indices, cudaStream_t stream) {
  if (nq == 0 || total == 0) return;
  Carver c{static_cast<char*>(workspace)};
  const RadiusSpace s = carve_radius(c, nq, n, nbits, total);
  check_workspace(c, workspace_bytes);
  const Plan p = make_plan(nq, n, nbits);
  pack_both(queries, nq, database, n, nbits, s.w, stream);
  fill_kernel<<<blocks_for(nq), 256, 0, stream>>>(s.thr, nq, radius + 1);
  launch_collect(p, s.w, nq, n, s.thr, nullptr, nullptr, offsets, s.fill, s.keys, stream);
  sort_segments(s.sort_temp, s.sort_bytes, s.keys, s.sorted, total, nq, offsets, stream);
  decode_kernel<int64_t><<<blocks_for(total), 256, 0, stream>>>(s.sorted, total, distances, indices);
  check(cudaGetLastError(), "radius decode");
}

namespace {
struct RankSpace {
  Words w;
  int64_t* offsets;
  unsigned long long *keys, *sorted;
  void* sort_temp;
  size_t sort_bytes;
};
RankSpace carve_rank(Carver& c, int64_t nq, int64_t n, int nbits) {
  RankSpace s;
  s.w = carve_words(c, nq, n, nbits);
  s.offsets = c.take<int64_t>(nq + 1);
  s.keys = c.take<unsigned long long>(nq * n);
  s.sorted = c.take<unsigned long long>(nq * n);
  s.sort_bytes = sort_temp_bytes(nq * n, nq);
  s.sort_temp = c.take<char>(static_cast<int64_t>(s.sort_bytes));
  return s;
}
}  // namespace

size_t rank_all_workspace_bytes(int64_t nq, int64_t n, int nbits) {
  Carver c{nullptr};
  carve_rank(c, nq, n, nbits);
  return c.used;
}

void rank_all(const uint8_t* queries, int64_t nq, const uint8_t* database, int64_t n, int nbits,
              void* workspace, size_t workspace_bytes, int32_t* indices, int64_t* counts,
              cudaStream_t stream) {
  if (nq == 0) return;
  Carver c{static_cast<char*>(workspace)};
  const RankSpace s = carve_rank(c, nq, n, nbits);
  check_workspace(c, workspace_bytes);
  const Plan p = make_plan(nq, n, nbits);
  pack_both(queries, nq, database, n, nbits, s.w, stream);
  // counts has the histogram's layout; int64 and unsigned long long share a size.
  launch_histogram(p, s.w, nq, n, nbits, reinterpret_cast<unsigned long long*>(counts), stream);
  with_tile(p.QT, [&](auto qt) {
    constexpr int QT = decltype(qt)::value;
    all_distances_kernel<QT, true><<<p.grid, kThreads, p.smem_queries, stream>>>(
        s.w.q, nq, s.w.db, n, p.W, nullptr, s.keys);
  });
  strided_offsets_kernel<<<blocks_for(nq + 1), 256, 0, stream>>>(s.offsets, nq, n);
  check(cudaGetLastError(), "rank keys");
  sort_segments(s.sort_temp, s.sort_bytes, s.keys, s.sorted, nq * n, nq, s.offsets, stream);
  decode_kernel<int32_t><<<blocks_for(nq * n), 256, 0, stream>>>(s.sorted, nq * n, nullptr, indices);
  check(cudaGetLastError(), "rank decode");
}

size_t distances_workspace_bytes(int64_t nq, int64_t n, int nbits) {
  Carver c{nullptr};
  carve_words(c, nq, n, nbits);
  return c.used;
}

void distances(const uint8_t* queries, int64_t nq, const uint8_t* database, int64_t n, int nbits,
               void* workspace, size_t workspace_bytes, int32_t* out, cudaStream_t stream) {
  if (nq == 0) return;
  Carver c{static_cast<char*>(workspace)};
  const Words w = carve_words(c, nq, n, nbits);
  check_workspace(c, workspace_bytes);
  const Plan p = make_plan(nq, n, nbits);
  pack_both(queries, nq, database, n, nbits, w, stream);
  with_tile(p.QT, [&](auto qt) {
    constexpr int QT = decltype(qt)::value;
    all_distances_kernel<QT, false><<<p.grid, kThreads, p.smem_queries, stream>>>(
        w.q, nq, w.db, n, p.W, out, nullptr);
  });
  check(cudaGetLastError(), "distances");
}

}  // namespace hashlab::search::cuda_kernels
