// AVX-512 kernels: one 512-bit register holds the same 64-bit word of the 8
// codes of an interleaved block, VPOPCNTQ counts their differing bits, and a
// single mask compare against the current threshold rejects the block in the
// common case. Only the kernel functions carry the target attribute, so the
// rest of the binary (and the inline Selector they call) stays baseline
// x86-64; hamming_cpu.cpp calls them only when the CPU has the ISA.
#include <immintrin.h>

#include "csrc/search/hamming_kernels.h"

#define HL_AVX512 __attribute__((target("avx512f,avx512vpopcntdq,avx512bw")))

namespace hashlab::search::detail {
namespace {

template <int kWords>
HL_AVX512 inline __m512i block_distances(const uint64_t* query, const uint64_t* block,
                                         int words) {
  const int W = kWords > 0 ? kWords : words;
  __m512i acc = _mm512_setzero_si512();
  for (int w = 0; w < W; ++w) {
    const __m512i x = _mm512_xor_si512(_mm512_loadu_si512(block + w * kBlock),
                                       _mm512_set1_epi64(static_cast<long long>(query[w])));
    acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(x));
  }
  return acc;
}

// Hands the codes of mask `m` to the selector, re-reading the threshold
// after each push because a push can lower it.
HL_AVX512 inline void push_block(__m512i dist, __mmask8 m, int64_t base, Selector& sel) {
  alignas(64) uint64_t d[kBlock];
  _mm512_store_si512(d, dist);
  while (m) {
    const int c = __builtin_ctz(m);
    m &= m - 1;
    if (static_cast<int>(d[c]) < sel.threshold()) sel.push(static_cast<int>(d[c]), base + c);
  }
}

template <int kWords>
HL_AVX512 void scan_avx512(const uint64_t* query, const uint64_t* db, int words,
                           int64_t block_begin, int64_t block_end, Selector& sel) {
  const int W = kWords > 0 ? kWords : words;
  __m512i thr = _mm512_set1_epi64(sel.threshold());
  int64_t b = block_begin;
  // Two blocks per iteration: independent popcount chains, one branch.
  for (; b + 2 <= block_end; b += 2) {
    const uint64_t* block = db + b * W * kBlock;
    const __m512i d0 = block_distances<kWords>(query, block, W);
    const __m512i d1 = block_distances<kWords>(query, block + W * kBlock, W);
    const __mmask8 m0 = _mm512_cmplt_epi64_mask(d0, thr);
    const __mmask8 m1 = _mm512_cmplt_epi64_mask(d1, thr);
    if (__builtin_expect((m0 | m1) != 0, 0)) {
      if (m0) push_block(d0, m0, b * kBlock, sel);
      if (m1) {
        const __mmask8 m1_now =
            _mm512_cmplt_epi64_mask(d1, _mm512_set1_epi64(sel.threshold()));
        if (m1_now) push_block(d1, m1_now, (b + 1) * kBlock, sel);
      }
      thr = _mm512_set1_epi64(sel.threshold());
    }
  }
  for (; b < block_end; ++b) {
    const __m512i d = block_distances<kWords>(query, db + b * W * kBlock, W);
    const __mmask8 m = _mm512_cmplt_epi64_mask(d, thr);
    if (m) {
      push_block(d, m, b * kBlock, sel);
      thr = _mm512_set1_epi64(sel.threshold());
    }
  }
}

template <int kWords>
HL_AVX512 void distances_avx512(const uint64_t* query, const uint64_t* db, int words,
                                int64_t block_begin, int64_t block_end, uint16_t* out) {
  const int W = kWords > 0 ? kWords : words;
  for (int64_t b = block_begin; b < block_end; ++b) {
    const __m512i d = block_distances<kWords>(query, db + b * W * kBlock, W);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (b - block_begin) * kBlock),
                     _mm512_cvtepi64_epi16(d));
  }
}

void scan_dispatch(const uint64_t* query, const uint64_t* db, int words, int64_t block_begin,
                   int64_t block_end, Selector& sel) {
  switch (words) {
    case 1: return scan_avx512<1>(query, db, words, block_begin, block_end, sel);
    case 2: return scan_avx512<2>(query, db, words, block_begin, block_end, sel);
    case 3: return scan_avx512<3>(query, db, words, block_begin, block_end, sel);
    case 4: return scan_avx512<4>(query, db, words, block_begin, block_end, sel);
    default: return scan_avx512<0>(query, db, words, block_begin, block_end, sel);
  }
}

void distances_dispatch(const uint64_t* query, const uint64_t* db, int words,
                        int64_t block_begin, int64_t block_end, uint16_t* out) {
  switch (words) {
    case 1: return distances_avx512<1>(query, db, words, block_begin, block_end, out);
    case 2: return distances_avx512<2>(query, db, words, block_begin, block_end, out);
    case 4: return distances_avx512<4>(query, db, words, block_begin, block_end, out);
    default: return distances_avx512<0>(query, db, words, block_begin, block_end, out);
  }
}

}  // namespace

Kernels avx512_kernels() { return {"avx512-vpopcntdq", scan_dispatch, distances_dispatch}; }

}  // namespace hashlab::search::detail
