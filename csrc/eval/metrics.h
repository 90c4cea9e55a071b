// Retrieval metrics, exactly as ../shared/PROTOCOLS.md defines them.
//
// Everything is computed from a per-query *ranking*: the database indices in
// rank order (distance ascending, ties by database index ascending) and, for
// integer (Hamming) distances, how many items sit at each distance (the tie
// groups). Relevance comes from labels (single label: int64 [n], relevant =
// same label; multi-label: uint8 [n, C] multi-hot, relevant = share >= 1 label)
// or from Euclidean ground truth (relevant = among the true k nearest).
//
// Per query, with rel_j = 1 iff the item at rank j (1-based) is relevant,
// R = total relevant items in the database, R_K = relevant items in the top K:
//   AP@K      = (1/R_K) Σ_{j<=K} P@j · rel_j          (0 when R_K = 0, or the
//               query is dropped with skip_no_relevant)   mAP@all: K = n_db
//   P@N, R@N  = hits(N) / min(N, n_db),  hits(N) / R   (R = 0: recall 0)
//   P@H<=r    = hits within radius r / items within r  (nothing retrieved: 0)
//   R@H<=r    = hits within radius r / R
//   PR curve  = (P@H<=r, R@H<=r) for r = 0..B
//   tie-aware AP (McSherry & Najork, ECIR 2008): E[AP@all] over uniformly
//     random orders inside each group of equal distance. For a group of n
//     items holding r relevant ones, preceded by N items of which H are
//     relevant, a relevant item lands at position N+j with j uniform in 1..n,
//     and the other r-1 relevant items of the group fill the j-1 slots before
//     it with expected count (j-1)(r-1)/(n-1), so the group adds
//       (r/n) Σ_{j=1..n} (H + 1 + (j-1)(r-1)/(n-1)) / (N+j)
//     = (r/n) [ (H+1) S + (r-1)/(n-1) (n - (N+1) S) ],  S = Σ_{j=1..n} 1/(N+j)
//     (the (r-1)/(n-1) term is 0 when n = 1); E[AP] = (1/R) Σ_groups.
//   Recall@i  (Auto-JacoBin eq. 6) = |TE_k ∩ TH_i| / k, TE_k the true k
//     Euclidean neighbours, TH_i the first i items of the Hamming ranking.
//   m-Recall  (eq. 7) = (1/K) Σ_{i=1..K} Recall@i.
//   SiGAH: relevant = the top N_gt (1,000) Euclidean neighbours; mAP@all,
//     Pre@100, and recall curves R-n (n = 1, 10, 100, 1K): the fraction of the
//     true top-n neighbours found among the first T retrieved items.
//
// Memory: queries are processed in blocks so that a block's full ranking
// (4 bytes per query × database item, plus 1 byte of relevance) stays within
// EvalOptions::block_bytes; 10,000 × 1M runs in ~50 blocks of 256 MB.
// Threads: at::parallel_for over the queries of a block.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "csrc/core/config.h"

namespace hashlab::eval {

// How PQ codes are ranked: symmetric (query ids, K x K tables) or asymmetric
// (the queries' vectors, per-query tables).
enum class PQDistance { sdc, adc };
inline const char* pq_distance_name(PQDistance d) { return d == PQDistance::sdc ? "sdc" : "adc"; }

struct EvalOptions {
  // Label protocol.
  std::vector<int64_t> map_at{1000};  // mAP@K for each K (K > n_db means n_db)
  bool map_all = true;                // mAP@all
  bool tie_aware = true;              // tie-aware mAP@all (Hamming only)
  bool skip_no_relevant = false;      // drop queries with R_K = 0 from mAP@K
  std::vector<int> radius{2};         // P@H<=r, R@H<=r
  // P@N, R@N (a log grid, so reports can draw the curves)
  std::vector<int64_t> pn{1, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};
  bool pr_curve = true;               // P/R at every radius 0..B (Hamming only)
  // Euclidean protocol.
  int64_t recall_k = 100;                                // k true neighbours (eq. 6)
  std::vector<int64_t> recall_at{1, 10, 100, 1000, 10000};  // i values reported
  int64_t m_recall_max = 10000;                          // K of eq. 7
  // A grid of m-Recall values besides the one above: m_recall_k<k>_K<K> for
  // every k in m_recall_k and K in m_recall_K (empty: none).
  std::vector<int64_t> m_recall_k, m_recall_K;
  int64_t sigah_gt = 1000;                               // SiGAH relevant set size
  std::vector<int64_t> sigah_curves{1, 10, 100, 1000};   // R-1K
  std::vector<int64_t> sigah_retrieved{1, 10, 100, 1000, 10000};  // T of each curve point
  // PQ codes (evaluate_codes.h): sdc ranks query ids (symmetric), adc the
  // queries' un-quantised vectors (asymmetric).
  PQDistance pq_distance = PQDistance::sdc;
  // Execution.
  int64_t block_bytes = int64_t{256} << 20;  // per query block: ranking + relevance
  int threads = 0;                           // <= 0: at::get_num_threads()

  // Keys: map_at, map_all, tie_aware, skip_no_relevant, radius, pn, pr_curve,
  // recall_k, recall_at, m_recall_max, m_recall_k, m_recall_K, sigah_gt, sigah_curves,
  // sigah_retrieved,
  // pq_distance, block_mb, threads. Unknown keys are errors.
  static EvalOptions from_yaml(hashlab::Section s);
};

// ---------------------------------------------------------------- building blocks
// Which database items each query counts as relevant.
class Relevance {
 public:
  // Labels: int64 [n] (single label) or uint8/bool [n, C] multi-hot (share >= 1 label).
  static Relevance from_labels(const torch::Tensor& query_labels, const torch::Tensor& db_labels);

  int64_t num_queries() const { return query_labels_.size(0); }
  int64_t num_database() const { return n_db_; }
  // uint8 [count, n_db] in database order: 1 where query q0+i finds item j relevant.
  torch::Tensor block(int64_t q0, int64_t count) const;

 private:
  torch::Tensor query_labels_, db_labels_;
  int64_t n_db_ = 0;
  bool multi_label_ = false;
};

// One block of rankings: queries [q0, q0 + b).
struct RankingBlock {
  torch::Tensor indices;       // int32 or int64 [b, n_db], rank order, CPU
  torch::Tensor group_counts;  // int64 [b, G]: items at each distance 0..G-1 (undefined: no groups)
};

// Accumulates label-protocol metrics over ranking blocks, then reports them.
class LabelMetrics {
 public:
  // nbits: the largest distance (G = nbits + 1 groups), or -1 for rankings
  // without distance groups (float distances: no tie-aware AP, P@H<=r, PR curve).
  LabelMetrics(const EvalOptions& opts, int64_t n_db, int nbits);
  // relevance: uint8 [b, n_db] in database order (Relevance::block).
  void add(const RankingBlock& ranking, const torch::Tensor& relevance);
  // Flat JSON: map_all, map_all_tie_aware, map_<K>, p_h<r>, r_h<r>, p_at_n,
  // r_at_n, pr_curve, num_queries, num_database (bits is added by callers).
  nlohmann::json result() const;

 private:
  EvalOptions opts_;
  int64_t n_db_;
  int nbits_;
  int64_t num_queries_ = 0;
  std::vector<double> harmonic_;  // H_n = Σ_{j<=n} 1/j, n = 0..n_db
  // Column sums over queries of each per-query value (see metrics.cpp for the
  // column layout), plus the number of queries counted by each mAP@K.
  std::vector<double> sums_;
  std::vector<int64_t> map_counts_;
};

// E[AP@all] over random orders inside tie groups, given for each group (in
// distance order) its size and how many relevant items it holds. 0 when no
// item is relevant.
double expected_average_precision(const std::vector<int64_t>& group_sizes,
                                  const std::vector<int64_t>& group_relevant);

// True k nearest database vectors of each query by Euclidean distance, ties by
// index. queries float [nq, D], database float [n, D] on any device (matmul
// there, in blocks); the candidates near the k-th distance are rechecked in
// double on the CPU so the order is exact. Returns int64 [nq, k] on the CPU.
torch::Tensor euclidean_knn(const torch::Tensor& queries, const torch::Tensor& database,
                            int64_t k, int threads = 0);

// Euclidean-protocol metrics from the true neighbours (int64 [nq, k_gt],
// k_gt >= max(recall_k, sigah_gt) where those are used; columns in distance
// order) and rankings by a hash/quantizer distance: recall_at_<i> (eq. 6),
// m_recall (eq. 7, K = m_recall_max), m_recall_k<k>_K<K> (the grid), sigah_map, sigah_pre100, sigah_r<n>
// ({T: recall} per n in sigah_curves), num_queries, num_database.
class EuclideanMetrics {
 public:
  EuclideanMetrics(const EvalOptions& opts, int64_t n_db, torch::Tensor true_neighbors);
  void add(int64_t q0, const RankingBlock& ranking);
  nlohmann::json result() const;

 private:
  EvalOptions opts_;
  int64_t n_db_;
  torch::Tensor gt_;  // int64 [nq, k_gt], CPU
  int64_t num_queries_ = 0;
  std::vector<double> sums_;
};

// ---------------------------------------------------------------- top level
// Label protocol on packed binary codes (uint8 [n, ceil(nbits/8)]), ranked by
// search::hamming_rank_all. Adds "bits".
nlohmann::json evaluate_hamming(const torch::Tensor& query_codes, const torch::Tensor& db_codes,
                                int nbits, const torch::Tensor& query_labels,
                                const torch::Tensor& db_labels, const EvalOptions& opts = {});

// Euclidean protocol: ground truth from the raw features, ranking by Hamming
// distance of the codes. Adds "bits". `true_neighbors` (int64 [nq, k], database
// positions in distance order: a benchmark's ground-truth file) replaces the
// computed neighbours when given; the features are then not used, and an
// option needing more than k neighbours (recall_k, sigah_gt, sigah_curves,
// m_recall_k) is an error naming it.
nlohmann::json evaluate_euclidean(const torch::Tensor& query_codes, const torch::Tensor& db_codes,
                                  int nbits, const torch::Tensor& query_features,
                                  const torch::Tensor& db_features, const EvalOptions& opts = {},
                                  const torch::Tensor& true_neighbors = torch::Tensor());

}  // namespace hashlab::eval
