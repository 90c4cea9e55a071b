// Internal to the CPU Hamming search: the interleaved database layout, the
// bucketed top-k selector, and the per-ISA kernels (scalar, AVX2, AVX-512
// VPOPCNTDQ) that hamming_cpu.cpp dispatches to at run time.
//
// Layout. Codes are zero-padded to W = ceil(nbits/64) 64-bit words (byte j of
// a code is byte j of its little-endian words, so popcount(a ^ b) is the
// Hamming distance). The database is cut into blocks of 8 codes and stored
// word-interleaved: word w of code c of block b is at
//   db[(b * W + w) * 8 + c],
// so one 512-bit load holds the same word of 8 codes. The last block is
// padded with zero codes whose index is >= n_db; kernels may report them and
// the selector drops them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace hashlab::search::detail {

constexpr int kBlock = 8;  // codes per interleaved block

// One candidate: Hamming distance and database index.
struct Candidate {
  int32_t distance;
  int64_t index;
};

// Keeps the best `k` candidates seen so far under the order (distance, index),
// for candidates pushed in increasing index order. Distances are small
// integers, so instead of a heap it keeps a count per distance value and a
// threshold T = the smallest d with (#kept at distance <= d) >= k. A newcomer
// with distance >= T can never enter (it would tie or lose against k kept
// items of smaller index), so kernels compare against `threshold` and call
// push() only for the rare codes that pass. With k = "unbounded" and an
// initial threshold r + 1 the same object collects a radius search.
class Selector {
 public:
  Selector() = default;
  // k: how many to keep (std::numeric_limits<int64_t>::max() = all);
  // threshold: accept only distances < threshold; n_valid: indices >= n_valid
  // are padding and are dropped.
  void reset(int64_t k, int threshold, int nbits, int64_t n_valid) {
    k_ = k;
    threshold_ = threshold;
    n_valid_ = n_valid;
    below_ = 0;
    counts_.assign(nbits + 2, 0);
    cands_.clear();
  }

  int threshold() const { return threshold_; }
  // Candidates held now (a radius search: every one found so far).
  int64_t held() const { return static_cast<int64_t>(cands_.size()); }

  // Precondition: distance < threshold().
  inline void push(int distance, int64_t index) {
    if (index >= n_valid_) return;
    cands_.push_back({distance, index});
    if (k_ == kUnbounded) return;
    ++counts_[distance];
    ++below_;
    // Invariant: below_ = #kept with distance < threshold_ < k_.
    while (below_ >= k_) below_ -= counts_[--threshold_];
    if (cands_.size() >= compact_at()) compact();
  }

  // The kept candidates sorted by (distance, index), at most k. Stable
  // counting sort by distance: candidates arrived in increasing index order.
  std::vector<Candidate> finish() {
    std::vector<Candidate> out;
    // Kept candidates have distance <= threshold_ (those at threshold_ fill
    // the last places).
    sorted_by_distance(cands_, threshold_ + 1, &out);
    if (k_ != kUnbounded && static_cast<int64_t>(out.size()) > k_) out.resize(k_);
    return out;
  }

  // Stable counting sort of `in` (distances < dist_end) into *out.
  static void sorted_by_distance(const std::vector<Candidate>& in, int dist_end,
                                 std::vector<Candidate>* out) {
    std::vector<int64_t> start(dist_end + 1, 0);
    int64_t n = 0;
    for (const Candidate& c : in)
      if (c.distance < dist_end) ++start[c.distance + 1], ++n;
    for (int d = 0; d < dist_end; ++d) start[d + 1] += start[d];
    out->resize(n);
    for (const Candidate& c : in)
      if (c.distance < dist_end) (*out)[start[c.distance]++] = c;
  }

  static constexpr int64_t kUnbounded = std::numeric_limits<int64_t>::max();

 private:
  size_t compact_at() const { return static_cast<size_t>(2 * k_ + 256); }

  // Drop candidates that can no longer make the top k: distance > T, and the
  // ones at distance T past the k - below_ needed (they have larger indices).
  void compact() {
    int64_t room_at_t = k_ - below_;
    size_t w = 0;
    for (const Candidate& c : cands_) {
      if (c.distance > threshold_) continue;
      if (c.distance == threshold_) {
        if (room_at_t <= 0) continue;
        --room_at_t;
      }
      cands_[w++] = c;
    }
    cands_.resize(w);
  }

  int64_t k_ = 0;
  int threshold_ = 0;
  int64_t n_valid_ = 0;
  int64_t below_ = 0;
  std::vector<int64_t> counts_;
  std::vector<Candidate> cands_;
};

// Scans blocks [block_begin, block_end) of an interleaved database for nq
// queries (queries[i * W .. i * W + W)), pushing every code whose distance to
// query i is < sels[i].threshold() into sels[i]. `db` points at the first of
// these blocks (block_begin), which holds codes block_begin * 8 onwards, so a
// caller can hand over a chunk interleaved into a scratch buffer. Kernels may
// process several queries per database load (register tiling).
using ScanFn = void (*)(const uint64_t* queries, int64_t nq, const uint64_t* db, int words,
                        int64_t block_begin, int64_t block_end, Selector* sels);
// Writes the distances of the 8 codes of each block in [block_begin,
// block_end) to out[(b - block_begin) * 8 + c]; `db` points at block block_begin.
using DistFn = void (*)(const uint64_t* query, const uint64_t* db, int words,
                        int64_t block_begin, int64_t block_end, uint16_t* out);

struct Kernels {
  const char* name;
  ScanFn scan;
  DistFn distances;
};

// The kernels the CPU search uses now (hamming.h's set_cpu_kernel).
Kernels current_kernels();

// The database is scanned in chunks of this many bytes of interleaved codes:
// each chunk stays in L1d (48 KB per core here) while every query scans it.
constexpr int64_t kChunkBytes = 16 * 1024;

Kernels scalar_kernels();
// Only call when the CPU supports the ISA (see hamming_cpu.cpp).
Kernels avx2_kernels();
Kernels avx512_kernels();

}  // namespace hashlab::search::detail
