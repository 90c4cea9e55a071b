// AVX2 kernels for CPUs without AVX-512 VPOPCNTDQ: the 8 codes of a block
// are two 256-bit halves; popcount by the nibble look-up (VPSHUFB) and a sum
// of absolute differences per 64-bit lane (VPSADBW), then one compare
// against the threshold per half. Only these functions carry the target
// attribute (see hamming_kernels_avx512.cpp for why).
#include <immintrin.h>

#include "csrc/search/hamming_kernels.h"

#define HL_AVX2 __attribute__((target("avx2,popcnt")))

namespace hashlab::search::detail {
namespace {

struct Half2 {
  __m256i lo, hi;  // distances of codes 0..3 and 4..7, one per 64-bit lane
};

HL_AVX2 inline __m256i popcount_bytes(__m256i x) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                       2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  return _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(x, low)),
                         _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low)));
}

HL_AVX2 inline Half2 block_distances(const uint64_t* query, const uint64_t* block, int words) {
  // Byte counts (<= 8 per word) are summed for up to 31 words before the
  // per-lane reduction, which would overflow a byte after that.
  __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
  for (int w0 = 0; w0 < words; w0 += 31) {
    __m256i blo = _mm256_setzero_si256(), bhi = _mm256_setzero_si256();
    const int w1 = w0 + 31 < words ? w0 + 31 : words;
    for (int w = w0; w < w1; ++w) {
      const __m256i q = _mm256_set1_epi64x(static_cast<long long>(query[w]));
      const __m256i* p = reinterpret_cast<const __m256i*>(block + w * kBlock);
      blo = _mm256_add_epi8(blo, popcount_bytes(_mm256_xor_si256(_mm256_loadu_si256(p), q)));
      bhi = _mm256_add_epi8(bhi, popcount_bytes(_mm256_xor_si256(_mm256_loadu_si256(p + 1), q)));
    }
    lo = _mm256_add_epi64(lo, _mm256_sad_epu8(blo, _mm256_setzero_si256()));
    hi = _mm256_add_epi64(hi, _mm256_sad_epu8(bhi, _mm256_setzero_si256()));
  }
  return {lo, hi};
}

HL_AVX2 inline int below_mask(const Half2& d, __m256i thr) {
  const int lo = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(thr, d.lo)));
  const int hi = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(thr, d.hi)));
  return lo | (hi << 4);
}

HL_AVX2 inline void push_block(const Half2& d, int m, int64_t base, Selector& sel) {
  alignas(32) uint64_t dist[kBlock];
  _mm256_store_si256(reinterpret_cast<__m256i*>(dist), d.lo);
  _mm256_store_si256(reinterpret_cast<__m256i*>(dist + 4), d.hi);
  while (m) {
    const int c = __builtin_ctz(m);
    m &= m - 1;
    if (static_cast<int>(dist[c]) < sel.threshold()) sel.push(static_cast<int>(dist[c]), base + c);
  }
}

// kQueries queries per block load (register tiling), as in the AVX-512 kernel.
template <int kWords, int kQueries>
HL_AVX2 void scan_tile(const uint64_t* queries, const uint64_t* db, int runtime_words,
                       int64_t block_begin, int64_t block_end, Selector* sel) {
  const int words = kWords > 0 ? kWords : runtime_words;
  const __m256i zero = _mm256_setzero_si256();
  __m256i thr[kQueries];
  for (int i = 0; i < kQueries; ++i) thr[i] = _mm256_set1_epi64x(sel[i].threshold());
  for (int64_t b = block_begin; b < block_end; ++b) {
    const __m256i* p = reinterpret_cast<const __m256i*>(db + (b - block_begin) * words * kBlock);
    Half2 d[kQueries];
    for (int i = 0; i < kQueries; ++i) d[i] = {zero, zero};
    // Byte counts (<= 8 per word) are summed for up to 31 words before the
    // per-lane reduction.
    for (int w0 = 0; w0 < words; w0 += 31) {
      const int w1 = w0 + 31 < words ? w0 + 31 : words;
      __m256i blo[kQueries], bhi[kQueries];
      for (int i = 0; i < kQueries; ++i) blo[i] = bhi[i] = zero;
      for (int w = w0; w < w1; ++w) {
        const __m256i lo = _mm256_loadu_si256(p + 2 * w);
        const __m256i hi = _mm256_loadu_si256(p + 2 * w + 1);
        for (int i = 0; i < kQueries; ++i) {
          const __m256i q = _mm256_set1_epi64x(static_cast<long long>(queries[i * words + w]));
          blo[i] = _mm256_add_epi8(blo[i], popcount_bytes(_mm256_xor_si256(lo, q)));
          bhi[i] = _mm256_add_epi8(bhi[i], popcount_bytes(_mm256_xor_si256(hi, q)));
        }
      }
      for (int i = 0; i < kQueries; ++i) {
        d[i].lo = _mm256_add_epi64(d[i].lo, _mm256_sad_epu8(blo[i], zero));
        d[i].hi = _mm256_add_epi64(d[i].hi, _mm256_sad_epu8(bhi[i], zero));
      }
    }
    int m[kQueries], any = 0;
    for (int i = 0; i < kQueries; ++i) any |= m[i] = below_mask(d[i], thr[i]);
    if (__builtin_expect(any != 0, 0)) {
      for (int i = 0; i < kQueries; ++i)
        if (m[i]) {
          push_block(d[i], m[i], b * kBlock, sel[i]);
          thr[i] = _mm256_set1_epi64x(sel[i].threshold());
        }
    }
  }
}

template <int kWords>
void scan_queries(const uint64_t* queries, int64_t nq, const uint64_t* db, int words,
                  int64_t block_begin, int64_t block_end, Selector* sels) {
  int64_t i = 0;
  for (; i + 4 <= nq; i += 4)
    scan_tile<kWords, 4>(queries + i * words, db, words, block_begin, block_end, sels + i);
  for (; i < nq; ++i)
    scan_tile<kWords, 1>(queries + i * words, db, words, block_begin, block_end, sels + i);
}

void scan_avx2(const uint64_t* queries, int64_t nq, const uint64_t* db, int words,
               int64_t block_begin, int64_t block_end, Selector* sels) {
  switch (words) {
    case 1: return scan_queries<1>(queries, nq, db, words, block_begin, block_end, sels);
    case 2: return scan_queries<2>(queries, nq, db, words, block_begin, block_end, sels);
    case 4: return scan_queries<4>(queries, nq, db, words, block_begin, block_end, sels);
    default: return scan_queries<0>(queries, nq, db, words, block_begin, block_end, sels);
  }
}

HL_AVX2 void distances_avx2(const uint64_t* query, const uint64_t* db, int words,
                            int64_t block_begin, int64_t block_end, uint16_t* out) {
  for (int64_t b = block_begin; b < block_end; ++b) {
    const Half2 d = block_distances(query, db + (b - block_begin) * words * kBlock, words);
    alignas(32) uint64_t dist[kBlock];
    _mm256_store_si256(reinterpret_cast<__m256i*>(dist), d.lo);
    _mm256_store_si256(reinterpret_cast<__m256i*>(dist + 4), d.hi);
    for (int c = 0; c < kBlock; ++c) out[(b - block_begin) * kBlock + c] = static_cast<uint16_t>(dist[c]);
  }
}

}  // namespace

Kernels avx2_kernels() { return {"avx2", scan_avx2, distances_avx2}; }

}  // namespace hashlab::search::detail
