// Product quantization on the CPU (see pq.h). Training and table building use
// torch ops (so k-means runs on the data's device); the scans are plain loops
// summing table entries in subspace order, which is what makes every entry
// point agree bit for bit.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <ATen/Parallel.h>

#include "csrc/core/device.h"
#include "csrc/core/error.h"
#include "csrc/search/kmeans.h"
#include "csrc/search/pq.h"

namespace hashlab::search {

namespace {

void check_codebooks(const codes::PQCodes& pq) {
  HL_CHECK(pq.M >= 1 && pq.K >= 1 && pq.K <= 256 && pq.dsub >= 1,
           "PQ: bad shape M = {}, K = {}, dsub = {}", pq.M, pq.K, pq.dsub);
  HL_CHECK(pq.codebooks.defined() && pq.codebooks.dim() == 3 && pq.codebooks.size(0) == pq.M &&
               pq.codebooks.size(1) == pq.K && pq.codebooks.size(2) == pq.dsub,
           "PQ: codebooks must be [M={}, K={}, dsub={}], got {}", pq.M, pq.K, pq.dsub,
           pq.codebooks.defined() ? c10::str(pq.codebooks.sizes()) : std::string("undefined"));
}

void check_ids(const torch::Tensor& ids, int M, const char* what) {
  TORCH_CHECK(ids.dim() == 2 && ids.size(1) == M && ids.scalar_type() == torch::kUInt8, what,
              ": expected uint8 [n, ", M, "], got ", ids.scalar_type(), " ", ids.sizes());
}

// The k best (distance, index) pairs seen so far; a max-heap on (distance, index).
class TopKHeap {
 public:
  explicit TopKHeap(int64_t k) : k_(k) { heap_.reserve(size_t(k)); }
  bool full() const { return int64_t(heap_.size()) == k_; }
  float worst() const { return heap_.front().first; }
  // True when the heap's worst entry changed.
  bool push(float d, int64_t j) {
    if (!full()) {
      heap_.emplace_back(d, j);
      std::push_heap(heap_.begin(), heap_.end());
      return full();
    }
    if (!(std::make_pair(d, j) < heap_.front())) return false;
    std::pop_heap(heap_.begin(), heap_.end());
    heap_.back() = {d, j};
    std::push_heap(heap_.begin(), heap_.end());
    return true;
  }
  void write_sorted(float* dist, int64_t* idx) {
    std::sort_heap(heap_.begin(), heap_.end());
    for (size_t t = 0; t < heap_.size(); ++t) {
      dist[t] = heap_[t].first;
      idx[t] = heap_[t].second;
    }
  }

 private:
  int64_t k_;
  std::vector<std::pair<float, int64_t>> heap_;
};

// Σ_m T[m][code_m] for the code at slot t of a scan block.
inline float block_code_distance(const float* T, const uint8_t* blk, int M, int K, int t) {
  float d = 0;
  for (int m = 0; m < M; ++m) d += T[m * K + blk[m * 64 + t]];
  return d;
}

void scan_blocks_scalar(const float* T, const PQScanDatabase& db, int64_t b0, int64_t b1,
                        TopKHeap& heap) {
  const int M = db.M(), K = db.K();
  const int64_t n = db.size();
  for (int64_t b = b0; b < b1; ++b) {
    const uint8_t* blk = db.block(b);
    const int slots = int(std::min<int64_t>(64, n - b * 64));
    for (int t = 0; t < slots; ++t) heap.push(block_code_distance(T, blk, M, K, t), b * 64 + t);
  }
}

// Per-query state of the quantized-bound scan.
struct BoundState {
  const float* T = nullptr;
  alignas(64) uint8_t qtab[256 * 64];  // unused beyond M * 256
  std::vector<uint8_t> qtab_big;       // M > 64
  float base = 0, delta = 0, quantized_at = 0;
  int limit = 0;
  bool quantized = false;
  uint8_t* table() { return qtab_big.empty() ? qtab : qtab_big.data(); }
};

// 8-bit lower bounds: q[m][k] = floor((T[m][k] − min_m) / Δ) clipped to 255, so
// Σ_m T[m][c_m] >= Σ_m min_m + Δ · Σ_m q[m][c_m] (saturating sums only lower it).
// Δ maps the current k-th distance to ~128 units.
void quantize_tables(BoundState& s, int M, int K, float thr) {
  std::vector<float> mn(static_cast<size_t>(M));
  s.base = 0;
  for (int m = 0; m < M; ++m) {
    mn[m] = *std::min_element(s.T + m * K, s.T + (m + 1) * K);
    s.base += mn[m];
  }
  // A bound only pays (and only stays safe against float rounding) when the
  // k-th distance sits clearly above the smallest possible distance.
  s.quantized = std::isfinite(thr) && thr - s.base > 1e-3f * thr;
  if (!s.quantized) return;
  s.delta = (thr - s.base) / 128.0f;
  s.quantized_at = thr;
  uint8_t* q = s.table();
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < 256; ++k) {
      const float v = k < K ? std::floor((s.T[m * K + k] - mn[m]) / s.delta) : 255.0f;
      q[m * 256 + k] = uint8_t(std::min(255.0f, std::max(0.0f, v)));
    }
}

// Bound units a code may have and still beat `thr`; +2 absorbs float rounding.
int bound_limit(const BoundState& s, float thr) {
  const float units = std::floor((thr - s.base) / s.delta) + 2.0f;
  return int(std::min(255.0f, std::max(0.0f, units)));
}

__attribute__((target("avx512f,avx512bw,avx512vbmi"))) void scan_blocks_vbmi(
    BoundState& s, const PQScanDatabase& db, int64_t b0, int64_t b1, TopKHeap& heap) {
  const int M = db.M(), K = db.K();
  const int64_t n = db.size();
  const uint8_t* q = s.table();
  for (int64_t b = b0; b < b1; ++b) {
    const uint8_t* blk = db.block(b);
    __m512i acc = _mm512_setzero_si512();
    for (int m = 0; m < M; ++m) {
      const __m512i ids = _mm512_loadu_si512(blk + m * 64);
      const uint8_t* qt = q + m * 256;
      // Bits 0-6 of the id pick one of 128 entries of (t0|t1) or (t2|t3); bit 7 picks the pair.
      const __m512i lo = _mm512_permutex2var_epi8(_mm512_load_si512(qt), ids,
                                                  _mm512_load_si512(qt + 64));
      const __m512i hi = _mm512_permutex2var_epi8(_mm512_load_si512(qt + 128), ids,
                                                  _mm512_load_si512(qt + 192));
      acc = _mm512_adds_epu8(acc, _mm512_mask_blend_epi8(_mm512_movepi8_mask(ids), lo, hi));
    }
    uint64_t cand = _mm512_cmple_epu8_mask(acc, _mm512_set1_epi8(char(uint8_t(s.limit))));
    const int64_t slots = std::min<int64_t>(64, n - b * 64);
    if (slots < 64) cand &= (uint64_t{1} << slots) - 1;
    while (cand) {
      const int t = __builtin_ctzll(cand);
      cand &= cand - 1;
      if (heap.push(block_code_distance(s.T, blk, M, K, t), b * 64 + t))
        s.limit = bound_limit(s, heap.worst());
    }
  }
}

bool cpu_has_vbmi() {
  static const bool has = __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vbmi");
  return has;
}

torch::Tensor tables_from(const torch::Tensor& t, int M, int K) {
  TORCH_CHECK(t.dim() == 3 && t.size(1) == M && t.size(2) == K,
              "PQ tables: expected [nq, ", M, ", ", K, "], got ", t.sizes());
  return t.to(torch::kCPU, torch::kFloat).contiguous();
}

}  // namespace

// ---------------------------------------------------------------- training, coding

codes::PQCodes pq_train(const torch::Tensor& X, int M, int K, int iters, uint64_t seed) {
  TORCH_CHECK(X.dim() == 2, "pq_train: X must be [N, D], got ", X.sizes());
  HL_CHECK(M >= 1 && X.size(1) % M == 0, "pq_train: D = {} is not divisible by M = {}",
           X.size(1), M);
  HL_CHECK(K >= 1 && K <= 256, "pq_train: K = {} must lie in [1, 256]", K);
  HL_CHECK(X.size(0) >= K, "pq_train: {} training vectors for K = {} codewords", X.size(0), K);
  codes::PQCodes pq;
  pq.M = M;
  pq.K = K;
  pq.dsub = int(X.size(1) / M);
  pq.codebooks = torch::empty({M, K, pq.dsub}, torch::kFloat);
  pq.ids = torch::empty({X.size(0), M}, torch::kUInt8);
  auto train_subspace = [&](int64_t m) {
    auto sub = X.slice(1, m * pq.dsub, (m + 1) * pq.dsub);
    auto res = kmeans(sub, K, KMeansOptions{iters, 1e-5, seed + uint64_t(m)});
    pq.codebooks[m].copy_(res.centroids.cpu());
    pq.ids.select(1, m).copy_(res.assignments.cpu().to(torch::kUInt8));
  };
  // On the CPU, one intra-op thread: k-means on a small subspace is a long
  // chain of small ops, and a parallel region per op costs more than the op
  // (on a loaded machine, a scheduler time slice per region: ~50x slower).
  ThreadsGuard guard(X.is_cuda() ? 0 : 1);
  for (int64_t m = 0; m < M; ++m) train_subspace(m);
  return pq;
}

torch::Tensor pq_encode(const codes::PQCodes& pq, const torch::Tensor& X) {
  check_codebooks(pq);
  TORCH_CHECK(X.dim() == 2 && X.size(1) == int64_t(pq.M) * pq.dsub, "pq_encode: X must be [N, ",
              pq.M * pq.dsub, "], got ", X.sizes());
  auto ids = torch::empty({X.size(0), pq.M}, torch::kUInt8);
  auto encode_subspace = [&](int64_t m) {
    auto sub = X.slice(1, m * pq.dsub, (m + 1) * pq.dsub);
    ids.select(1, m).copy_(nearest_centroids(sub, pq.codebooks[m]).first.cpu().to(torch::kUInt8));
  };
  for (int64_t m = 0; m < pq.M; ++m) encode_subspace(m);
  return ids;
}

torch::Tensor pq_decode(const codes::PQCodes& pq, const torch::Tensor& ids) {
  check_codebooks(pq);
  check_ids(ids, pq.M, "pq_decode");
  auto ids_l = ids.cpu().to(torch::kLong);
  std::vector<torch::Tensor> parts;
  for (int m = 0; m < pq.M; ++m)
    parts.push_back(pq.codebooks[m].index_select(0, ids_l.select(1, m)));
  return torch::cat(parts, 1);
}

torch::Tensor pq_sdc_tables(const codes::PQCodes& pq) {
  check_codebooks(pq);
  auto c = pq.codebooks.to(torch::kFloat);
  return (c.unsqueeze(2) - c.unsqueeze(1)).pow(2).sum(-1).contiguous();  // [M, K, K]
}

torch::Tensor pq_adc_tables(const codes::PQCodes& pq, const torch::Tensor& queries) {
  check_codebooks(pq);
  TORCH_CHECK(queries.dim() == 2 && queries.size(1) == int64_t(pq.M) * pq.dsub,
              "pq_adc_tables: queries must be [nq, ", pq.M * pq.dsub, "], got ", queries.sizes());
  const int64_t nq = queries.size(0);
  auto c = pq.codebooks.to(queries.device(), torch::kFloat).unsqueeze(0);  // [1, M, K, dsub]
  auto out = torch::empty({nq, pq.M, pq.K}, torch::kFloat);
  // Direct differences (not the ||q||² − 2q·c + ||c||² expansion): no cancellation.
  const int64_t rows = std::max<int64_t>(1, (int64_t{32} << 20) / (int64_t(pq.M) * pq.K * pq.dsub));
  for (int64_t r0 = 0; r0 < nq; r0 += rows) {
    auto qb = queries.slice(0, r0, std::min(nq, r0 + rows)).to(torch::kFloat);
    auto qv = qb.view({qb.size(0), pq.M, 1, pq.dsub});
    out.slice(0, r0, r0 + qb.size(0)).copy_((qv - c).pow(2).sum(-1));
  }
  return out;
}

torch::Tensor pq_sdc_query_tables(const torch::Tensor& sdc_tables, const torch::Tensor& query_ids) {
  TORCH_CHECK(sdc_tables.dim() == 3 && sdc_tables.size(1) == sdc_tables.size(2),
              "SDC tables must be [M, K, K], got ", sdc_tables.sizes());
  const int64_t M = sdc_tables.size(0);
  check_ids(query_ids, int(M), "pq_sdc_query_tables");
  auto m_index = torch::arange(M, torch::kLong).unsqueeze(0);
  return sdc_tables.cpu().index({m_index, query_ids.cpu().to(torch::kLong)}).contiguous();
}

// ---------------------------------------------------------------- distances

namespace {
torch::Tensor distances_from_tables(const torch::Tensor& tables_in, const torch::Tensor& db_ids,
                                    int threads) {
  const int M = int(tables_in.size(1)), K = int(tables_in.size(2));
  auto tables = tables_from(tables_in, M, K);
  check_ids(db_ids, M, "database ids");
  auto ids = db_ids.cpu().contiguous();
  const int64_t nq = tables.size(0), n = ids.size(0);
  auto out = torch::empty({nq, n}, torch::kFloat);
  ThreadsGuard guard(threads);
  at::parallel_for(0, nq, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* T = tables.data_ptr<float>() + i * M * K;
      float* o = out.data_ptr<float>() + i * n;
      const uint8_t* c = ids.data_ptr<uint8_t>();
      for (int64_t j = 0; j < n; ++j, c += M) {
        float d = 0;
        for (int m = 0; m < M; ++m) d += T[m * K + c[m]];
        o[j] = d;
      }
    }
  });
  return out;
}
}  // namespace

torch::Tensor pq_distances_adc(const codes::PQCodes& pq, const torch::Tensor& queries,
                               const torch::Tensor& db_ids, int threads) {
  return distances_from_tables(pq_adc_tables(pq, queries), db_ids, threads);
}

torch::Tensor pq_distances_sdc(const codes::PQCodes& pq, const torch::Tensor& query_ids,
                               const torch::Tensor& db_ids, int threads) {
  return distances_from_tables(pq_sdc_query_tables(pq_sdc_tables(pq), query_ids), db_ids, threads);
}

// ---------------------------------------------------------------- top-k

PQScanDatabase::PQScanDatabase(const torch::Tensor& db_ids, int K)
    : n_(db_ids.size(0)), M_(int(db_ids.size(1))), K_(K) {
  check_ids(db_ids, M_, "PQScanDatabase");
  HL_CHECK(K >= 1 && K <= 256, "PQScanDatabase: K = {} must lie in [1, 256]", K);
  auto ids = db_ids.cpu().contiguous();
  const uint8_t* src = ids.data_ptr<uint8_t>();
  blocks_.assign(size_t(num_blocks() * M_ * 64), 0);
  for (int64_t j = 0; j < n_; ++j)
    for (int m = 0; m < M_; ++m) {
      HL_CHECK(src[j * M_ + m] < K, "PQ code {} subspace {}: id {} >= K = {}", j, m,
               src[j * M_ + m], K);
      blocks_[size_t((j / 64) * M_ * 64 + m * 64 + j % 64)] = src[j * M_ + m];
    }
}

const char* pq_cpu_kernel_name() { return cpu_has_vbmi() ? "avx512-vbmi" : "scalar"; }

PQTopK pq_search_tables(const torch::Tensor& tables_in, const PQScanDatabase& db, int64_t k,
                        int threads, bool use_simd) {
  const int M = db.M(), K = db.K();
  auto tables = tables_from(tables_in, M, K);
  const int64_t nq = tables.size(0), n = db.size(), nb = db.num_blocks();
  TORCH_CHECK(k >= 1 && k <= n, "pq_search: k = ", k, " must lie in [1, ", n, "]");
  PQTopK out{torch::empty({nq, k}, torch::kFloat), torch::empty({nq, k}, torch::kLong)};
  const bool simd = use_simd && cpu_has_vbmi();
  // Queries go in groups; each group walks the database in chunks that stay in
  // L2 while all its queries scan them.
  constexpr int64_t kGroup = 16;
  const int64_t chunk_blocks = std::max<int64_t>(1, (int64_t{1} << 20) / (int64_t(M) * 64));
  // Exact warm-up over the first codes: fills the heap and sets the first bound.
  const int64_t warm_blocks = std::min(nb, std::max<int64_t>(64, 2 * ((k + 63) / 64)));
  ThreadsGuard guard(threads);
  at::parallel_for(0, (nq + kGroup - 1) / kGroup, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t q0 = g * kGroup, q1 = std::min(nq, q0 + kGroup);
      std::vector<TopKHeap> heaps;
      std::vector<std::unique_ptr<BoundState>> states;
      for (int64_t i = q0; i < q1; ++i) {
        heaps.emplace_back(k);
        states.push_back(std::make_unique<BoundState>());
        auto& s = *states.back();
        s.T = tables.data_ptr<float>() + i * M * K;
        if (M > 64) s.qtab_big.assign(size_t(M) * 256, 0);
        scan_blocks_scalar(s.T, db, 0, warm_blocks, heaps.back());
        if (simd && heaps.back().full()) {
          quantize_tables(s, M, K, heaps.back().worst());
          if (s.quantized) s.limit = bound_limit(s, heaps.back().worst());
        }
      }
      for (int64_t c0 = warm_blocks; c0 < nb; c0 += chunk_blocks) {
        const int64_t c1 = std::min(nb, c0 + chunk_blocks);
        for (int64_t i = q0; i < q1; ++i) {
          auto& s = *states[i - q0];
          auto& heap = heaps[i - q0];
          if (!s.quantized) {
            scan_blocks_scalar(s.T, db, c0, c1, heap);
            continue;
          }
          scan_blocks_vbmi(s, db, c0, c1, heap);
          // A much tighter k-th distance deserves a finer Δ.
          if (heap.worst() - s.base < 0.5f * (s.quantized_at - s.base)) {
            quantize_tables(s, M, K, heap.worst());
            if (s.quantized) s.limit = bound_limit(s, heap.worst());
          }
        }
      }
      for (int64_t i = q0; i < q1; ++i)
        heaps[i - q0].write_sorted(out.distances.data_ptr<float>() + i * k,
                                   out.indices.data_ptr<int64_t>() + i * k);
    }
  });
  return out;
}

PQTopK pq_search_adc(const codes::PQCodes& pq, const torch::Tensor& queries,
                     const torch::Tensor& db_ids, int64_t k, int threads) {
  return pq_search_tables(pq_adc_tables(pq, queries), PQScanDatabase(db_ids, pq.K), k, threads);
}

PQTopK pq_search_sdc(const codes::PQCodes& pq, const torch::Tensor& query_ids,
                     const torch::Tensor& db_ids, int64_t k, int threads) {
  return pq_search_tables(pq_sdc_query_tables(pq_sdc_tables(pq), query_ids),
                          PQScanDatabase(db_ids, pq.K), k, threads);
}

// ---------------------------------------------------------------- full ranking

torch::Tensor pq_rank_all(const torch::Tensor& tables, const torch::Tensor& db_ids, int threads) {
  auto dist = distances_from_tables(tables, db_ids, threads);
  const int64_t nq = dist.size(0), n = dist.size(1);
  TORCH_CHECK(n < (int64_t{1} << 32), "pq_rank_all: database of ", n, " codes is too large");
  auto out = torch::empty({nq, n}, torch::kLong);
  ThreadsGuard guard(threads);
  at::parallel_for(0, nq, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint64_t> keys(static_cast<size_t>(n));
    for (int64_t i = begin; i < end; ++i) {
      const float* d = dist.data_ptr<float>() + i * n;
      // Distances are sums of squares (>= +0), whose IEEE bit patterns order
      // like the values: (bits << 32 | index) sorts by (distance, index).
      for (int64_t j = 0; j < n; ++j) {
        uint32_t bits;
        std::memcpy(&bits, &d[j], 4);
        keys[j] = (uint64_t(bits) << 32) | uint64_t(j);
      }
      std::sort(keys.begin(), keys.end());
      int64_t* o = out.data_ptr<int64_t>() + i * n;
      for (int64_t j = 0; j < n; ++j) o[j] = int64_t(keys[j] & 0xffffffffu);
    }
  });
  return out;
}

}  // namespace hashlab::search
