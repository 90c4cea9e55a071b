// Random binary codes, a bit-by-bit reference ranking and the GPU skip, for
// the search tests (CPU kernels, CUDA twin, BinaryIndex).
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include <torch/torch.h>

#ifdef HASHLAB_WITH_CUDA
#include <torch/cuda.h>
#endif

// Skips a CUDA-twin test where no GPU is visible or the build has no CUDA search.
#ifdef HASHLAB_WITH_CUDA
#define HL_REQUIRE_GPU()                                                         \
  do {                                                                           \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device visible"; \
  } while (0)
#else
#define HL_REQUIRE_GPU() GTEST_SKIP() << "built without CUDA search (HASHLAB_WITH_CUDA)"
#endif

namespace hashlab::testing {

// Random codes whose bits past nbits are zero. `distinct` > 0 draws every
// code from a pool of that many, so many distances tie exactly. Deterministic
// in `seed`.
inline torch::Tensor random_codes(int64_t n, int nbits, uint64_t seed, int distinct = 0) {
  std::mt19937_64 rng(seed);
  const int nbytes = (nbits + 7) / 8;
  auto make = [&](int64_t rows) {
    auto t = torch::empty({rows, nbytes}, torch::kUInt8);
    uint8_t* p = t.data_ptr<uint8_t>();
    for (int64_t i = 0; i < rows * nbytes; ++i) p[i] = static_cast<uint8_t>(rng());
    if (nbits % 8)
      for (int64_t i = 0; i < rows; ++i) p[i * nbytes + nbytes - 1] &= (1u << (nbits % 8)) - 1;
    return t;
  };
  if (distinct <= 0) return make(n);
  auto pool = make(distinct);
  std::vector<int64_t> pick(static_cast<size_t>(n));
  for (auto& x : pick) x = static_cast<int64_t>(rng() % static_cast<uint64_t>(distinct));
  return pool.index_select(0, torch::tensor(pick, torch::kInt64)).contiguous();
}

// Bit-by-bit reference distance between code i of a and code j of b.
inline int ref_distance(const torch::Tensor& a, int64_t i, const torch::Tensor& b, int64_t j,
                        int nbits) {
  const uint8_t* x = a.data_ptr<uint8_t>() + i * a.size(1);
  const uint8_t* y = b.data_ptr<uint8_t>() + j * b.size(1);
  int d = 0;
  for (int bit = 0; bit < nbits; ++bit)
    d += ((x[bit / 8] >> (bit % 8)) & 1) != ((y[bit / 8] >> (bit % 8)) & 1);
  return d;
}

// Per query, every (distance, index) of the database, sorted.
inline std::vector<std::vector<std::pair<int, int64_t>>> ref_ranking(const torch::Tensor& q,
                                                                     const torch::Tensor& db,
                                                                     int nbits) {
  std::vector<std::vector<std::pair<int, int64_t>>> out(q.size(0));
  for (int64_t i = 0; i < q.size(0); ++i) {
    for (int64_t j = 0; j < db.size(0); ++j) out[i].emplace_back(ref_distance(q, i, db, j, nbits), j);
    std::sort(out[i].begin(), out[i].end());
  }
  return out;
}

}  // namespace hashlab::testing
