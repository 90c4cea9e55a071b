// Portable kernels: one code at a time with __builtin_popcountll (compiled
// for baseline x86-64, so it runs everywhere; the reference for the SIMD ones).
#include "csrc/search/hamming_kernels.h"

namespace hashlab::search::detail {
namespace {

inline int code_distance(const uint64_t* query, const uint64_t* block, int words, int c) {
  int d = 0;
  for (int w = 0; w < words; ++w) d += __builtin_popcountll(query[w] ^ block[w * kBlock + c]);
  return d;
}

void scan_one(const uint64_t* query, const uint64_t* db, int words, int64_t block_begin,
              int64_t block_end, Selector& sel) {
  for (int64_t b = block_begin; b < block_end; ++b) {
    const uint64_t* block = db + (b - block_begin) * words * kBlock;
    for (int c = 0; c < kBlock; ++c) {
      const int d = code_distance(query, block, words, c);
      if (d < sel.threshold()) sel.push(d, b * kBlock + c);
    }
  }
}

void scan_scalar(const uint64_t* queries, int64_t nq, const uint64_t* db, int words,
                 int64_t block_begin, int64_t block_end, Selector* sels) {
  for (int64_t i = 0; i < nq; ++i) scan_one(queries + i * words, db, words, block_begin, block_end, sels[i]);
}

void distances_scalar(const uint64_t* query, const uint64_t* db, int words, int64_t block_begin,
                      int64_t block_end, uint16_t* out) {
  for (int64_t b = block_begin; b < block_end; ++b) {
    const uint64_t* block = db + (b - block_begin) * words * kBlock;
    for (int c = 0; c < kBlock; ++c)
      *out++ = static_cast<uint16_t>(code_distance(query, block, words, c));
  }
}

}  // namespace

Kernels scalar_kernels() { return {"scalar", scan_scalar, distances_scalar}; }

}  // namespace hashlab::search::detail
