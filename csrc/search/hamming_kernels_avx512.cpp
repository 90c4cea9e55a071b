// AVX-512 kernels: one 512-bit register holds the same 64-bit word of the 8
// codes of an interleaved block, VPOPCNTQ counts their differing bits, and a
// single mask compare against the current threshold rejects the block in the
// common case. Only the kernel functions carry the target attribute, so the
// rest of the binary (and the inline Selector they call) stays baseline
// x86-64; hamming_cpu.cpp calls them only when the CPU has the ISA.
#include <immintrin.h>

#include "csrc/search/hamming_kernels.h"

#define HL_AVX512 __attribute__((target("avx512f,avx512vpopcntdq,avx512bw,popcnt")))

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

// The masks of a tile's queries as one word: bits [8i, 8i + 8) are query i's
// (kQueries = 8, 4 or 1).
template <int kQueries>
HL_AVX512 inline uint64_t tile_mask(const __mmask8* m) {
  if constexpr (kQueries == 1) {
    return m[0];
  } else {
    const __mmask32 m03 =
        _mm512_kunpackw(_mm512_kunpackb(m[3], m[2]), _mm512_kunpackb(m[1], m[0]));
    if constexpr (kQueries == 4) {
      return m03;
    } else {
      static_assert(kQueries == 8, "tiles of 1, 4 or 8 queries");
      return _mm512_kunpackd(
          _mm512_kunpackw(_mm512_kunpackb(m[7], m[6]), _mm512_kunpackb(m[5], m[4])), m03);
    }
  }
}

// The rare path of scan_avx512: some query of the tile may take a code of
// this block. Recomputes the block's mask per query (cheap: one block) into
// one word, so that a single loop over its set bits (not a branch per query,
// which the predictor cannot learn) visits the (query, code) pairs that
// pass; each distance is recounted with scalar POPCNT and pushed if it still
// passes (a push can lower the threshold), in increasing code order per
// query. Out of line, so that the hot loop keeps its thresholds and queries
// in registers and spills nothing.
template <int kWords, int kQueries>
HL_AVX512 __attribute__((noinline)) void push_tile(const uint64_t* queries, const uint64_t* block,
                                                   int64_t base, Selector* sel) {
  __mmask8 m[kQueries];
  for (int i = 0; i < kQueries; ++i)
    m[i] = _mm512_cmplt_epi64_mask(block_distances<kWords>(queries + i * kWords, block, kWords),
                                   _mm512_set1_epi64(sel[i].threshold()));
  uint64_t hits = tile_mask<kQueries>(m);
  while (hits) {
    const int bit = __builtin_ctzll(hits);
    hits &= hits - 1;
    const int i = bit / kBlock, c = bit % kBlock;
    int d = 0;
    for (int w = 0; w < kWords; ++w)
      d += static_cast<int>(_mm_popcnt_u64(queries[i * kWords + w] ^ block[w * kBlock + c]));
    if (d < sel[i].threshold()) sel[i].push(d, base + c);
  }
}

// kQueries queries against each block (register tiling): the block's words
// are loaded once and XORed with every query (embedded broadcasts), the
// compares of all queries are ORed into one mask, and one rarely taken
// branch covers them. Selector thresholds are re-read only after a push.
// (Keeping each query's mask here instead, packed with KUNPCK as push_tile
// does, made this loop a quarter slower on Zen 4.)
template <int kWords, int kQueries>
HL_AVX512 void scan_avx512(const uint64_t* queries, const uint64_t* db, int words,
                           int64_t block_begin, int64_t block_end, Selector* sel) {
  static_assert(kWords >= 1, "the tiled scan needs a compile-time word count");
  constexpr int W = kWords;
  (void)words;
  __m512i thr[kQueries];
  for (int i = 0; i < kQueries; ++i) thr[i] = _mm512_set1_epi64(sel[i].threshold());
  for (int64_t b = block_begin; b < block_end; ++b) {
    const uint64_t* block = db + (b - block_begin) * W * kBlock;
    __m512i x[W];
    for (int w = 0; w < W; ++w) x[w] = _mm512_loadu_si512(block + w * kBlock);
    __mmask8 any = 0;
    for (int i = 0; i < kQueries; ++i) {
      __m512i acc = _mm512_popcnt_epi64(
          _mm512_xor_si512(x[0], _mm512_set1_epi64(static_cast<long long>(queries[i * W]))));
      for (int w = 1; w < W; ++w)
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(
                                        x[w], _mm512_set1_epi64(static_cast<long long>(
                                                  queries[i * W + w])))));
      any |= _mm512_cmplt_epi64_mask(acc, thr[i]);
    }
    if (__builtin_expect(any != 0, 0)) {
      push_tile<kWords, kQueries>(queries, block, b * kBlock, sel);
      for (int i = 0; i < kQueries; ++i) thr[i] = _mm512_set1_epi64(sel[i].threshold());
    }
  }
}

// Longer codes (words > 4): one query at a time, distances accumulated over
// the words.
HL_AVX512 void scan_long(const uint64_t* query, const uint64_t* db, int W, int64_t block_begin,
                         int64_t block_end, Selector& sel) {
  __m512i thr = _mm512_set1_epi64(sel.threshold());
  for (int64_t b = block_begin; b < block_end; ++b) {
    const __m512i d = block_distances<0>(query, db + (b - block_begin) * W * kBlock, W);
    const __mmask8 m = _mm512_cmplt_epi64_mask(d, thr);
    if (__builtin_expect(m != 0, 0)) {
      push_block(d, m, b * kBlock, sel);
      thr = _mm512_set1_epi64(sel.threshold());
    }
  }
}

template <int kWords>
void scan_queries(const uint64_t* queries, int64_t nq, const uint64_t* db, int words,
                  int64_t block_begin, int64_t block_end, Selector* sels) {
  if constexpr (kWords == 0) {
    for (int64_t i = 0; i < nq; ++i)
      scan_long(queries + i * words, db, words, block_begin, block_end, sels[i]);
  } else {
    // 8 queries per block load for one word, 4 for more (registers: W block
    // words + the tile's thresholds + temporaries, of 32).
    constexpr int kTile = kWords == 1 ? 8 : 4;
    int64_t i = 0;
    for (; i + kTile <= nq; i += kTile)
      scan_avx512<kWords, kTile>(queries + i * words, db, words, block_begin, block_end, sels + i);
    for (; i < nq; ++i)
      scan_avx512<kWords, 1>(queries + i * words, db, words, block_begin, block_end, sels + i);
  }
}

template <int kWords>
HL_AVX512 void distances_avx512(const uint64_t* query, const uint64_t* db, int words,
                                int64_t block_begin, int64_t block_end, uint16_t* out) {
  const int W = kWords > 0 ? kWords : words;
  for (int64_t b = block_begin; b < block_end; ++b) {
    const __m512i d = block_distances<kWords>(query, db + (b - block_begin) * W * kBlock, W);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (b - block_begin) * kBlock),
                     _mm512_cvtepi64_epi16(d));
  }
}

void scan_dispatch(const uint64_t* queries, int64_t nq, const uint64_t* db, int words,
                   int64_t block_begin, int64_t block_end, Selector* sels) {
  switch (words) {
    case 1: return scan_queries<1>(queries, nq, db, words, block_begin, block_end, sels);
    case 2: return scan_queries<2>(queries, nq, db, words, block_begin, block_end, sels);
    case 3: return scan_queries<3>(queries, nq, db, words, block_begin, block_end, sels);
    case 4: return scan_queries<4>(queries, nq, db, words, block_begin, block_end, sels);
    default: return scan_queries<0>(queries, nq, db, words, block_begin, block_end, sels);
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
