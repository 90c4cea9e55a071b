// Metric maths (see metrics.h for the definitions). Every per-query metric is
// computed from the sorted rank positions of the query's relevant items, so a
// query costs one pass over its ranking plus O(R log R) binary searches.
#include "csrc/eval/metrics.h"

#include "csrc/core/device.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <ATen/Parallel.h>

#include "csrc/core/error.h"
#include "csrc/search/binary_index.h"
#include "csrc/search/hamming.h"

namespace hashlab::eval {

namespace {

int64_t hits_before(const std::vector<int64_t>& pos, int64_t n) {
  return std::lower_bound(pos.begin(), pos.end(), n) - pos.begin();
}

// Σ_{t < count} (t+1)/(pos[t]+1) for every count: prefix sums of precision at the hits.
std::vector<double> precision_at_hits_prefix(const std::vector<int64_t>& pos) {
  std::vector<double> prefix(pos.size() + 1, 0.0);
  for (size_t t = 0; t < pos.size(); ++t)
    prefix[t + 1] = prefix[t] + double(t + 1) / double(pos[t] + 1);
  return prefix;
}

// One group's contribution to the expected Σ P@j·rel_j (metrics.h derivation).
// `harmonic` holds H_0..H_{N+n}.
double expected_group_gain(int64_t before, int64_t hits_before_group, int64_t n, int64_t r,
                           const std::vector<double>& harmonic) {
  if (r == 0) return 0.0;
  const double s = harmonic[before + n] - harmonic[before];
  double inner = double(hits_before_group + 1) * s;
  if (n > 1) inner += double(r - 1) / double(n - 1) * (double(n) - double(before + 1) * s);
  return double(r) / double(n) * inner;
}

std::vector<double> harmonic_table(int64_t n) {
  std::vector<double> h(n + 1, 0.0);
  for (int64_t i = 1; i <= n; ++i) h[i] = h[i - 1] + 1.0 / double(i);
  return h;
}

// Positions (0-based ranks) of relevant items along a ranking row.
template <typename Index>
void relevant_positions(const Index* ranked, const uint8_t* relevant_db, int64_t n,
                        std::vector<int64_t>& pos) {
  pos.clear();
  for (int64_t j = 0; j < n; ++j)
    if (relevant_db[ranked[j]]) pos.push_back(j);
}

// Column layout of the per-query values of LabelMetrics.
struct LabelLayout {
  int64_t map_all, map_all_counted, tie, map_at, map_at_counted, radius, pn, pr, cols;
  int groups;
  LabelLayout(const EvalOptions& o, int nbits) {
    groups = nbits >= 0 ? nbits + 1 : 0;
    map_all = 0;
    map_all_counted = 1;
    tie = 2;
    map_at = 3;
    map_at_counted = map_at + int64_t(o.map_at.size());
    radius = map_at_counted + int64_t(o.map_at.size());
    pn = radius + 2 * int64_t(o.radius.size());
    pr = pn + 2 * int64_t(o.pn.size());
    cols = pr + 2 * int64_t(o.pr_curve ? groups : 0);
  }
};

double safe_div(double a, double b) { return b > 0 ? a / b : 0.0; }

}  // namespace

// ---------------------------------------------------------------- options

EvalOptions EvalOptions::from_yaml(hashlab::Section s) {
  EvalOptions o;
  s.get("map_at", o.map_at);
  s.get("map_all", o.map_all);
  s.get("tie_aware", o.tie_aware);
  s.get("skip_no_relevant", o.skip_no_relevant);
  s.get("radius", o.radius);
  s.get("pn", o.pn);
  s.get("pr_curve", o.pr_curve);
  s.get("recall_k", o.recall_k, Range{1, 1e12});
  s.get("recall_at", o.recall_at);
  s.get("m_recall_max", o.m_recall_max, Range{1, 1e12});
  s.get("m_recall_k", o.m_recall_k);
  s.get("m_recall_K", o.m_recall_K);
  s.get("sigah_gt", o.sigah_gt, Range{1, 1e12});
  s.get("sigah_curves", o.sigah_curves);
  s.get("sigah_retrieved", o.sigah_retrieved);
  std::string pq = pq_distance_name(o.pq_distance);
  s.get_choice("pq_distance", pq, {"sdc", "adc"});
  o.pq_distance = pq == "adc" ? PQDistance::adc : PQDistance::sdc;
  int64_t block_mb = o.block_bytes >> 20;
  s.get("block_mb", block_mb, Range{1, 1 << 20});
  o.block_bytes = block_mb << 20;
  s.get("threads", o.threads, Range{0, 4096});
  auto positive = [&](const char* key, const std::vector<int64_t>& v) {
    for (int64_t x : v) HL_CHECK(x >= 1, "{}: values must be >= 1, got {}", s.where(key), x);
  };
  positive("map_at", o.map_at);
  positive("pn", o.pn);
  positive("recall_at", o.recall_at);
  positive("m_recall_k", o.m_recall_k);
  positive("m_recall_K", o.m_recall_K);
  positive("sigah_curves", o.sigah_curves);
  positive("sigah_retrieved", o.sigah_retrieved);
  for (int r : o.radius) HL_CHECK(r >= 0, "{}: radius must be >= 0, got {}", s.where("radius"), r);
  s.finish();
  return o;
}

// ---------------------------------------------------------------- relevance

Relevance Relevance::from_labels(const torch::Tensor& query_labels,
                                 const torch::Tensor& db_labels) {
  HL_CHECK(query_labels.dim() == db_labels.dim() && (db_labels.dim() == 1 || db_labels.dim() == 2),
           "labels: query labels {} and database labels {} must both be [n] (single label) or "
           "[n, C] (multi-hot)",
           c10::str(query_labels.sizes()), c10::str(db_labels.sizes()));
  Relevance r;
  r.n_db_ = db_labels.size(0);
  r.multi_label_ = db_labels.dim() == 2;
  if (r.multi_label_) {
    HL_CHECK(query_labels.size(1) == db_labels.size(1),
             "labels: queries have {} classes, database {}", query_labels.size(1),
             db_labels.size(1));
    // Shared-label counts are small integers: exact in float.
    r.query_labels_ = query_labels.cpu().to(torch::kFloat);
    r.db_labels_ = db_labels.cpu().to(torch::kFloat);
  } else {
    r.query_labels_ = query_labels.cpu().to(torch::kLong);
    r.db_labels_ = db_labels.cpu().to(torch::kLong);
  }
  return r;
}

torch::Tensor Relevance::block(int64_t q0, int64_t count) const {
  auto q = query_labels_.slice(0, q0, q0 + count);
  if (multi_label_) return torch::matmul(q, db_labels_.t()).gt(0).to(torch::kUInt8).contiguous();
  return q.unsqueeze(1).eq(db_labels_.unsqueeze(0)).to(torch::kUInt8).contiguous();
}

// ---------------------------------------------------------------- tie-aware AP

double expected_average_precision(const std::vector<int64_t>& group_sizes,
                                  const std::vector<int64_t>& group_relevant) {
  HL_CHECK(group_sizes.size() == group_relevant.size(),
           "expected_average_precision: {} group sizes but {} relevant counts",
           group_sizes.size(), group_relevant.size());
  int64_t n = 0, total_relevant = 0;
  for (size_t g = 0; g < group_sizes.size(); ++g) {
    HL_CHECK(group_relevant[g] >= 0 && group_relevant[g] <= group_sizes[g],
             "expected_average_precision: group {} holds {} relevant of {} items", g,
             group_relevant[g], group_sizes[g]);
    n += group_sizes[g];
    total_relevant += group_relevant[g];
  }
  if (total_relevant == 0) return 0.0;
  const auto harmonic = harmonic_table(n);
  double gain = 0.0;
  int64_t before = 0, hits = 0;
  for (size_t g = 0; g < group_sizes.size(); ++g) {
    gain += expected_group_gain(before, hits, group_sizes[g], group_relevant[g], harmonic);
    before += group_sizes[g];
    hits += group_relevant[g];
  }
  return gain / double(total_relevant);
}

// ---------------------------------------------------------------- label metrics

LabelMetrics::LabelMetrics(const EvalOptions& opts, int64_t n_db, int nbits)
    : opts_(opts), n_db_(n_db), nbits_(nbits) {
  HL_CHECK(n_db > 0, "evaluation: empty database");
  if (nbits >= 0 && opts.tie_aware && opts.map_all) harmonic_ = harmonic_table(n_db);
  sums_.assign(LabelLayout(opts_, nbits_).cols, 0.0);
}

void LabelMetrics::add(const RankingBlock& ranking, const torch::Tensor& relevance) {
  const LabelLayout L(opts_, nbits_);
  auto idx = ranking.indices.cpu().contiguous();
  auto rel = relevance.cpu().to(torch::kUInt8).contiguous();
  const int64_t b = idx.size(0);
  TORCH_CHECK(idx.dim() == 2 && idx.size(1) == n_db_, "ranking: expected [b, ", n_db_, "], got ",
              idx.sizes());
  TORCH_CHECK(rel.sizes() == idx.sizes(), "relevance ", rel.sizes(), " vs ranking ", idx.sizes());
  TORCH_CHECK(idx.scalar_type() == torch::kInt || idx.scalar_type() == torch::kLong,
              "ranking indices must be int32 or int64, got ", idx.scalar_type());
  torch::Tensor counts;
  const bool grouped = nbits_ >= 0;
  if (grouped) {
    counts = ranking.group_counts.cpu().to(torch::kLong).contiguous();
    TORCH_CHECK(counts.dim() == 2 && counts.size(0) == b && counts.size(1) == L.groups,
                "group counts: expected [", b, ", ", L.groups, "], got ", counts.sizes());
  }

  std::vector<double> values(size_t(b * L.cols), 0.0);
  at::parallel_for(0, b, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> pos;
    std::vector<int64_t> cum(size_t(std::max(L.groups, 1)));
    for (int64_t i = begin; i < end; ++i) {
      const uint8_t* rel_db = rel.data_ptr<uint8_t>() + i * n_db_;
      if (idx.scalar_type() == torch::kInt)
        relevant_positions(idx.data_ptr<int32_t>() + i * n_db_, rel_db, n_db_, pos);
      else
        relevant_positions(idx.data_ptr<int64_t>() + i * n_db_, rel_db, n_db_, pos);
      double* v = values.data() + i * L.cols;
      const auto prefix = precision_at_hits_prefix(pos);
      const int64_t R = int64_t(pos.size());

      if (opts_.map_all) {
        v[L.map_all] = safe_div(prefix[R], double(R));
        v[L.map_all_counted] = R > 0;
      }
      for (size_t t = 0; t < opts_.map_at.size(); ++t) {
        const int64_t hits = hits_before(pos, std::min(opts_.map_at[t], n_db_));
        v[L.map_at + t] = safe_div(prefix[hits], double(hits));
        v[L.map_at_counted + t] = hits > 0;
      }
      for (size_t t = 0; t < opts_.pn.size(); ++t) {
        const int64_t n = std::min(opts_.pn[t], n_db_);
        const int64_t hits = hits_before(pos, n);
        v[L.pn + 2 * t] = double(hits) / double(n);
        v[L.pn + 2 * t + 1] = safe_div(double(hits), double(R));
      }
      if (!grouped) continue;
      const int64_t* c = counts.data_ptr<int64_t>() + i * L.groups;
      std::partial_sum(c, c + L.groups, cum.begin());
      TORCH_CHECK(cum[L.groups - 1] == n_db_, "group counts of query ", i, " sum to ",
                  cum[L.groups - 1], ", not ", n_db_);
      if (opts_.map_all && opts_.tie_aware && R > 0) {
        double gain = 0.0;
        for (int g = 0; g < L.groups; ++g) {
          const int64_t before = g ? cum[g - 1] : 0;
          const int64_t h0 = hits_before(pos, before);
          const int64_t r = hits_before(pos, cum[g]) - h0;
          gain += expected_group_gain(before, h0, c[g], r, harmonic_);
        }
        v[L.tie] = gain / double(R);
      }
      for (size_t t = 0; t < opts_.radius.size(); ++t) {
        const int64_t within = cum[std::min(opts_.radius[t], L.groups - 1)];
        const int64_t hits = hits_before(pos, within);
        v[L.radius + 2 * t] = safe_div(double(hits), double(within));
        v[L.radius + 2 * t + 1] = safe_div(double(hits), double(R));
      }
      if (opts_.pr_curve) {
        for (int g = 0; g < L.groups; ++g) {
          const int64_t hits = hits_before(pos, cum[g]);
          v[L.pr + 2 * g] = safe_div(double(hits), double(cum[g]));
          v[L.pr + 2 * g + 1] = safe_div(double(hits), double(R));
        }
      }
    }
  });
  // Summed in query order, so results do not depend on the thread count.
  for (int64_t i = 0; i < b; ++i)
    for (int64_t col = 0; col < L.cols; ++col) sums_[col] += values[i * L.cols + col];
  num_queries_ += b;
}

nlohmann::json LabelMetrics::result() const {
  const LabelLayout L(opts_, nbits_);
  const double nq = double(num_queries_);
  auto map_mean = [&](int64_t col, int64_t counted_col) {
    return opts_.skip_no_relevant ? safe_div(sums_[col], sums_[counted_col])
                                  : safe_div(sums_[col], nq);
  };
  nlohmann::json j;
  j["num_queries"] = num_queries_;
  j["num_database"] = n_db_;
  if (opts_.map_all) {
    j["map_all"] = map_mean(L.map_all, L.map_all_counted);
    if (nbits_ >= 0 && opts_.tie_aware) j["map_all_tie_aware"] = map_mean(L.tie, L.map_all_counted);
  }
  for (size_t t = 0; t < opts_.map_at.size(); ++t)
    j[fmt::format("map_{}", opts_.map_at[t])] = map_mean(L.map_at + t, L.map_at_counted + t);
  nlohmann::json pn = nlohmann::json::object(), rn = nlohmann::json::object();
  for (size_t t = 0; t < opts_.pn.size(); ++t) {
    pn[std::to_string(opts_.pn[t])] = safe_div(sums_[L.pn + 2 * t], nq);
    rn[std::to_string(opts_.pn[t])] = safe_div(sums_[L.pn + 2 * t + 1], nq);
  }
  j["p_at_n"] = pn;
  j["r_at_n"] = rn;
  if (nbits_ >= 0) {
    for (size_t t = 0; t < opts_.radius.size(); ++t) {
      j[fmt::format("p_h{}", opts_.radius[t])] = safe_div(sums_[L.radius + 2 * t], nq);
      j[fmt::format("r_h{}", opts_.radius[t])] = safe_div(sums_[L.radius + 2 * t + 1], nq);
    }
    if (opts_.pr_curve) {
      std::vector<int> radius(L.groups);
      std::vector<double> p(L.groups), r(L.groups);
      for (int g = 0; g < L.groups; ++g) {
        radius[g] = g;
        p[g] = safe_div(sums_[L.pr + 2 * g], nq);
        r[g] = safe_div(sums_[L.pr + 2 * g + 1], nq);
      }
      j["pr_curve"] = {{"radius", radius}, {"precision", p}, {"recall", r}};
    }
  }
  return j;
}

// ---------------------------------------------------------------- Euclidean ground truth

namespace {
// The k-th smallest value of each row of float [b, n] (k >= 1): one
// std::nth_element per row on the CPU (ATen's kthvalue copies and sorts
// more than it needs), kthvalue on another device.
torch::Tensor kth_smallest(const torch::Tensor& dist, int64_t k) {
  if (!dist.device().is_cpu()) return std::get<0>(dist.kthvalue(k, 1));
  const torch::Tensor d = dist.contiguous();
  const int64_t b = d.size(0), n = d.size(1);
  auto out = torch::empty({b}, torch::kFloat);
  float* o = out.data_ptr<float>();
  const float* p = d.data_ptr<float>();
  at::parallel_for(0, b, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(n));
    for (int64_t i = begin; i < end; ++i) {
      std::copy(p + i * n, p + (i + 1) * n, row.begin());
      std::nth_element(row.begin(), row.begin() + (k - 1), row.end());
      o[i] = row[static_cast<size_t>(k - 1)];
    }
  });
  return out.to(dist.device());
}
}  // namespace

torch::Tensor euclidean_knn(const torch::Tensor& queries, const torch::Tensor& database,
                            int64_t k, int threads) {
  TORCH_CHECK(queries.dim() == 2 && database.dim() == 2 && queries.size(1) == database.size(1),
              "euclidean_knn: queries ", queries.sizes(), " and database ", database.sizes(),
              " must be [nq, D] and [n, D]");
  const int64_t nq = queries.size(0), n = database.size(0), d = queries.size(1);
  TORCH_CHECK(k >= 1 && k <= n, "euclidean_knn: k = ", k, " must lie in [1, ", n, "]");
  ThreadsGuard guard(threads);
  const auto dev = database.device();
  // Pass 1, every pair: ||q - x||^2 = ||q||^2 - 2 q.x + ||x||^2 by a float
  // GEMM (half the time and memory traffic of double). Its error is at most
  // e = (d + 4) u (||q||^2 + ||x||^2) (u = 2^-24: |q.x| error <= d u ||q|| ||x||,
  // plus the roundings of the norms and the two additions), so the float k-th
  // distance K is within e of the exact one, and every item tied with or
  // beating the exact k-th has a float distance <= K + 2e: with tol = 4e (a
  // factor 2 to spare) no item of the true top k is missed.
  auto q = queries.to(dev, torch::kFloat).contiguous();
  auto x = database.to(torch::kFloat).contiguous();
  // Squared norms summed in double (squares rounded to float: within e).
  auto xn_d = x.square().sum(1, /*keepdim=*/false, torch::kDouble);  // [n]
  auto qn_d = q.square().sum(1, /*keepdim=*/false, torch::kDouble);  // [nq]
  const double xn_max = xn_d.max().item<double>();
  auto xn = xn_d.to(torch::kFloat);
  auto qn_all = qn_d.to(torch::kFloat);
  const double rel = 4.0 * (double(d) + 4.0) * std::ldexp(1.0, -24);
  auto tol_all = ((qn_d + xn_max) * rel).to(torch::kFloat);
  auto q_cpu = queries.cpu().to(torch::kFloat).contiguous();
  auto x_cpu = database.cpu().to(torch::kFloat).contiguous();
  auto out = torch::empty({nq, k}, torch::kLong);
  const int64_t block = std::max<int64_t>(1, (int64_t{256} << 20) / (4 * n));

  for (int64_t q0 = 0; q0 < nq; q0 += block) {
    const int64_t b = std::min(block, nq - q0);
    auto qb = q.slice(0, q0, q0 + b);
    auto dist = torch::addmm(xn.unsqueeze(0), qb, x.t(), 1.0, -2.0)
                    .add_(qn_all.slice(0, q0, q0 + b).unsqueeze(1));
    auto kth = kth_smallest(dist, k);  // [b]
    auto cand = dist.le((kth + tol_all.slice(0, q0, q0 + b)).unsqueeze(1)).nonzero().cpu();
    dist = torch::Tensor();
    auto cand_a = cand.accessor<int64_t, 2>();  // [m, 2] row-major
    // Row start offsets into the candidate list.
    std::vector<int64_t> start(b + 1, cand.size(0));
    for (int64_t m = cand.size(0) - 1; m >= 0; --m) start[cand_a[m][0]] = m;
    for (int64_t i = b - 1; i >= 0; --i) start[i] = std::min(start[i], start[i + 1]);
    // Pass 2, the candidates: the distance in double, summed over dimensions
    // in order (the value ties are broken on), eight candidates at a time so
    // that eight independent sums run side by side.
    at::parallel_for(0, b, 1, [&](int64_t begin, int64_t end) {
      constexpr int kLanes = 8;
      std::vector<std::pair<double, int64_t>> scored;
      for (int64_t i = begin; i < end; ++i) {
        scored.clear();
        const float* qi = q_cpu.data_ptr<float>() + (q0 + i) * d;
        for (int64_t m = start[i]; m < start[i + 1]; m += kLanes) {
          const int lanes = static_cast<int>(std::min<int64_t>(kLanes, start[i + 1] - m));
          const float* xs[kLanes];
          for (int c = 0; c < kLanes; ++c)
            xs[c] = x_cpu.data_ptr<float>() + cand_a[m + std::min(c, lanes - 1)][1] * d;
          double s[kLanes] = {};
          for (int64_t t = 0; t < d; ++t) {
            const double qt = double(qi[t]);
            for (int c = 0; c < kLanes; ++c) {
              const double diff = qt - double(xs[c][t]);
              s[c] += diff * diff;
            }
          }
          for (int c = 0; c < lanes; ++c) scored.emplace_back(s[c], cand_a[m + c][1]);
        }
        TORCH_CHECK(int64_t(scored.size()) >= k, "euclidean_knn: lost candidates");
        std::partial_sort(scored.begin(), scored.begin() + k, scored.end());
        int64_t* o = out.data_ptr<int64_t>() + (q0 + i) * k;
        for (int64_t t = 0; t < k; ++t) o[t] = scored[t].second;
      }
    });
  }
  return out;
}

// ---------------------------------------------------------------- Euclidean metrics

namespace {
struct EuclideanLayout {
  int64_t recall_at, m_recall, sigah_map, sigah_pre100, sigah_curves, grid, cols;
  EuclideanLayout(const EvalOptions& o) {
    recall_at = 0;
    m_recall = recall_at + int64_t(o.recall_at.size());
    sigah_map = m_recall + 1;
    sigah_pre100 = sigah_map + 1;
    sigah_curves = sigah_pre100 + 1;
    grid = sigah_curves + int64_t(o.sigah_curves.size() * o.sigah_retrieved.size());
    cols = grid + int64_t(o.m_recall_k.size() * o.m_recall_K.size());
  }
};
}  // namespace

EuclideanMetrics::EuclideanMetrics(const EvalOptions& opts, int64_t n_db,
                                   torch::Tensor true_neighbors)
    : opts_(opts), n_db_(n_db), gt_(true_neighbors.cpu().to(torch::kLong).contiguous()) {
  HL_CHECK(gt_.dim() == 2 && gt_.size(1) >= 1, "Euclidean metrics: true neighbours must be [nq, k], got {}",
           c10::str(gt_.sizes()));
  sums_.assign(EuclideanLayout(opts_).cols, 0.0);
}

void EuclideanMetrics::add(int64_t q0, const RankingBlock& ranking) {
  const EuclideanLayout L(opts_);
  auto idx = ranking.indices.cpu().to(torch::kLong).contiguous();
  const int64_t b = idx.size(0), kgt = gt_.size(1);
  TORCH_CHECK(idx.dim() == 2 && idx.size(1) == n_db_ && q0 + b <= gt_.size(0), "ranking ",
              idx.sizes(), " at query ", q0, " does not fit ", gt_.size(0), " x ", n_db_);
  const int64_t recall_k = std::min(opts_.recall_k, kgt);
  const int64_t sigah_gt = std::min(opts_.sigah_gt, kgt);
  std::vector<double> values(size_t(b * L.cols), 0.0);
  at::parallel_for(0, b, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> gt_rank(size_t(n_db_), -1);  // database index -> rank among true neighbours
    std::vector<int64_t> pos(static_cast<size_t>(kgt));            // Hamming position of true neighbour g
    std::vector<int64_t> sorted;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t* g = gt_.data_ptr<int64_t>() + (q0 + i) * kgt;
      for (int64_t t = 0; t < kgt; ++t) gt_rank[g[t]] = t;
      const int64_t* row = idx.data_ptr<int64_t>() + i * n_db_;
      for (int64_t j = 0; j < n_db_; ++j)
        if (gt_rank[row[j]] >= 0) pos[gt_rank[row[j]]] = j;
      for (int64_t t = 0; t < kgt; ++t) gt_rank[g[t]] = -1;
      double* v = values.data() + i * L.cols;

      // Recall@i (eq. 6) and m-Recall (eq. 7): a neighbour at position p counts
      // for every i > p, i.e. for K - p of the i = 1..K.
      sorted.assign(pos.begin(), pos.begin() + recall_k);
      std::sort(sorted.begin(), sorted.end());
      for (size_t t = 0; t < opts_.recall_at.size(); ++t)
        v[L.recall_at + t] = double(hits_before(sorted, opts_.recall_at[t])) / double(recall_k);
      double m = 0.0;
      for (int64_t p : sorted) m += double(std::max<int64_t>(0, opts_.m_recall_max - p));
      v[L.m_recall] = m / (double(opts_.m_recall_max) * double(recall_k));

      // The m-Recall grid: the same sum for other k and K.
      for (size_t a = 0; a < opts_.m_recall_k.size(); ++a) {
        const int64_t k = std::min(opts_.m_recall_k[a], kgt);
        sorted.assign(pos.begin(), pos.begin() + k);
        for (size_t c = 0; c < opts_.m_recall_K.size(); ++c) {
          const int64_t K = opts_.m_recall_K[c];
          double mk = 0.0;
          for (int64_t p : sorted) mk += double(std::max<int64_t>(0, K - p));
          v[L.grid + a * opts_.m_recall_K.size() + c] = mk / (double(K) * double(k));
        }
      }

      // SiGAH: relevant = the true top-sigah_gt.
      sorted.assign(pos.begin(), pos.begin() + sigah_gt);
      std::sort(sorted.begin(), sorted.end());
      v[L.sigah_map] = precision_at_hits_prefix(sorted).back() / double(sigah_gt);
      const int64_t n100 = std::min<int64_t>(100, n_db_);
      v[L.sigah_pre100] = double(hits_before(sorted, n100)) / double(n100);
      for (size_t c = 0; c < opts_.sigah_curves.size(); ++c) {
        const int64_t n = std::min(opts_.sigah_curves[c], kgt);
        sorted.assign(pos.begin(), pos.begin() + n);
        std::sort(sorted.begin(), sorted.end());
        for (size_t t = 0; t < opts_.sigah_retrieved.size(); ++t)
          v[L.sigah_curves + c * opts_.sigah_retrieved.size() + t] =
              double(hits_before(sorted, opts_.sigah_retrieved[t])) / double(n);
      }
    }
  });
  for (int64_t i = 0; i < b; ++i)
    for (int64_t col = 0; col < L.cols; ++col) sums_[col] += values[i * L.cols + col];
  num_queries_ += b;
}

nlohmann::json EuclideanMetrics::result() const {
  const EuclideanLayout L(opts_);
  const double nq = double(num_queries_);
  nlohmann::json j;
  j["num_queries"] = num_queries_;
  j["num_database"] = n_db_;
  j["recall_k"] = std::min(opts_.recall_k, gt_.size(1));
  for (size_t t = 0; t < opts_.recall_at.size(); ++t)
    j[fmt::format("recall_at_{}", opts_.recall_at[t])] = safe_div(sums_[L.recall_at + t], nq);
  j["m_recall"] = safe_div(sums_[L.m_recall], nq);
  j["m_recall_max"] = opts_.m_recall_max;
  for (size_t a = 0; a < opts_.m_recall_k.size(); ++a)
    for (size_t c = 0; c < opts_.m_recall_K.size(); ++c)
      j[fmt::format("m_recall_k{}_K{}", opts_.m_recall_k[a], opts_.m_recall_K[c])] =
          safe_div(sums_[L.grid + a * opts_.m_recall_K.size() + c], nq);
  j["sigah_gt"] = std::min(opts_.sigah_gt, gt_.size(1));
  j["sigah_map"] = safe_div(sums_[L.sigah_map], nq);
  j["sigah_pre100"] = safe_div(sums_[L.sigah_pre100], nq);
  for (size_t c = 0; c < opts_.sigah_curves.size(); ++c) {
    nlohmann::json curve = nlohmann::json::object();
    for (size_t t = 0; t < opts_.sigah_retrieved.size(); ++t)
      curve[std::to_string(opts_.sigah_retrieved[t])] =
          safe_div(sums_[L.sigah_curves + c * opts_.sigah_retrieved.size() + t], nq);
    j[fmt::format("sigah_r{}", opts_.sigah_curves[c])] = curve;
  }
  return j;
}

// ---------------------------------------------------------------- top level

namespace {
int64_t query_block(const EvalOptions& opts, int64_t n_db) {
  // int32 ranking + uint8 relevance per (query, item).
  return std::max<int64_t>(1, opts.block_bytes / (5 * std::max<int64_t>(n_db, 1)));
}
}  // namespace

nlohmann::json evaluate_hamming(const torch::Tensor& query_codes, const torch::Tensor& db_codes,
                                int nbits, const torch::Tensor& query_labels,
                                const torch::Tensor& db_labels, const EvalOptions& opts) {
  HL_CHECK(query_codes.size(0) == query_labels.size(0),
           "evaluate: {} query codes but {} query labels", query_codes.size(0),
           query_labels.size(0));
  HL_CHECK(db_codes.size(0) == db_labels.size(0), "evaluate: {} database codes but {} labels",
           db_codes.size(0), db_labels.size(0));
  ThreadsGuard guard(opts.threads);
  const auto relevance = Relevance::from_labels(query_labels, db_labels);
  const int64_t nq = query_codes.size(0), n_db = db_codes.size(0);
  LabelMetrics metrics(opts, n_db, nbits);
  const auto index = search::BinaryIndex::from_codes(db_codes, nbits);
  const int64_t block = query_block(opts, n_db);
  for (int64_t q0 = 0; q0 < nq; q0 += block) {
    const int64_t b = std::min(block, nq - q0);
    auto ranked = index.rank_all(query_codes.slice(0, q0, q0 + b), opts.threads);
    metrics.add({ranked.indices.cpu(), ranked.counts.cpu()}, relevance.block(q0, b));
  }
  auto j = metrics.result();
  j["bits"] = nbits;
  return j;
}

namespace {
// The Euclidean options that read true neighbours, and how many each reads.
std::vector<std::pair<const char*, int64_t>> neighbours_needed(const EvalOptions& o) {
  std::vector<std::pair<const char*, int64_t>> need{{"recall_k", o.recall_k},
                                                    {"sigah_gt", o.sigah_gt}};
  for (int64_t v : o.sigah_curves) need.emplace_back("sigah_curves", v);
  for (int64_t v : o.m_recall_k) need.emplace_back("m_recall_k", v);
  return need;
}
}  // namespace

nlohmann::json evaluate_euclidean(const torch::Tensor& query_codes, const torch::Tensor& db_codes,
                                  int nbits, const torch::Tensor& query_features,
                                  const torch::Tensor& db_features, const EvalOptions& opts,
                                  const torch::Tensor& true_neighbors) {
  ThreadsGuard guard(opts.threads);
  const int64_t nq = query_codes.size(0), n_db = db_codes.size(0);
  torch::Tensor gt;
  if (true_neighbors.defined()) {
    HL_CHECK(true_neighbors.dim() == 2 && true_neighbors.size(0) == nq && true_neighbors.size(1) >= 1,
             "evaluate: the ground truth is [{}] but there are {} queries (expected [{}, k])",
             c10::str(true_neighbors.sizes()), nq, nq);
    gt = true_neighbors.cpu().to(torch::kLong).contiguous();
    const int64_t lo = gt.min().item<int64_t>(), hi = gt.max().item<int64_t>(), k = gt.size(1);
    HL_CHECK(lo >= 0 && hi < n_db,
             "evaluate: the ground truth lists database items {}..{}, but the database has {}", lo,
             hi, n_db);
    for (const auto& [key, v] : neighbours_needed(opts))
      HL_CHECK(v <= k,
               "evaluate: eval.{} = {} needs {} true neighbours per query, but the ground truth "
               "gives {} (set eval.{} to at most {})",
               key, v, v, k, key, k);
  } else {
    HL_CHECK(nq == query_features.size(0) && n_db == db_features.size(0),
             "evaluate: codes ({} queries, {} database) and features ({}, {}) disagree", nq, n_db,
             query_features.size(0), db_features.size(0));
    int64_t k_gt = 1;
    for (const auto& need : neighbours_needed(opts)) k_gt = std::max(k_gt, need.second);
    gt = euclidean_knn(query_features, db_features, std::min(k_gt, n_db), opts.threads);
  }
  EuclideanMetrics metrics(opts, n_db, gt);
  const auto index = search::BinaryIndex::from_codes(db_codes, nbits);
  const int64_t block = query_block(opts, n_db);
  for (int64_t q0 = 0; q0 < nq; q0 += block) {
    const int64_t b = std::min(block, nq - q0);
    auto ranked = index.rank_all(query_codes.slice(0, q0, q0 + b), opts.threads);
    metrics.add(q0, {ranked.indices.cpu(), ranked.counts.cpu()});
  }
  auto j = metrics.result();
  j["bits"] = nbits;
  return j;
}

}  // namespace hashlab::eval
