// Every metric of csrc/eval/metrics.h against a plain brute-force reference
// (loops and std::sort) on small random rankings, heavy ties included.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <random>

#include "csrc/core/config.h"
#include "csrc/eval/metrics.h"

namespace hashlab::eval {
namespace {

// A random retrieval problem: integer distances in 0..nbits, labels.
struct Problem {
  int64_t nq, n;
  int nbits;
  std::vector<std::vector<int>> dist;        // [nq][n]
  torch::Tensor qlabels, dblabels;           // int64 [n] or uint8 [n, C]
  std::vector<std::vector<uint8_t>> rel;     // [nq][n], database order

  std::vector<int64_t> order(int64_t q) const {  // ranking: (distance, index)
    std::vector<int64_t> o(n);
    std::iota(o.begin(), o.end(), 0);
    std::sort(o.begin(), o.end(), [&](int64_t a, int64_t b) {
      return dist[q][a] != dist[q][b] ? dist[q][a] < dist[q][b] : a < b;
    });
    return o;
  }
};

Problem make_problem(int64_t nq, int64_t n, int nbits, int classes, bool multi, uint64_t seed,
                     bool absent_class = false) {
  std::mt19937_64 rng(seed);
  Problem p{nq, n, nbits, {}, {}, {}, {}};
  p.dist.assign(nq, std::vector<int>(n));
  for (auto& row : p.dist)
    for (auto& d : row) d = int(rng() % (nbits + 1));
  if (multi) {
    p.qlabels = torch::zeros({nq, classes}, torch::kUInt8);
    p.dblabels = torch::zeros({n, classes}, torch::kUInt8);
    for (int64_t i = 0; i < nq; ++i)
      for (int c = 0; c < classes; ++c) p.qlabels[i][c] = int(rng() % 4 == 0);
    for (int64_t i = 0; i < n; ++i)
      for (int c = 0; c < classes; ++c) p.dblabels[i][c] = int(rng() % 4 == 0);
  } else {
    p.qlabels = torch::empty({nq}, torch::kLong);
    p.dblabels = torch::empty({n}, torch::kLong);
    // With absent_class, queries may use class `classes`, which no item has.
    for (int64_t i = 0; i < nq; ++i) p.qlabels[i] = int64_t(rng() % (classes + absent_class));
    for (int64_t i = 0; i < n; ++i) p.dblabels[i] = int64_t(rng() % classes);
  }
  p.rel.assign(nq, std::vector<uint8_t>(n));
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t j = 0; j < n; ++j) {
      if (multi) {
        bool share = false;
        for (int c = 0; c < classes; ++c)
          share |= p.qlabels[i][c].item<int>() && p.dblabels[j][c].item<int>();
        p.rel[i][j] = share;
      } else {
        p.rel[i][j] = p.qlabels[i].item<int64_t>() == p.dblabels[j].item<int64_t>();
      }
    }
  return p;
}

// Feeds the problem to LabelMetrics in two uneven blocks.
nlohmann::json run_label_metrics(const Problem& p, const EvalOptions& opts) {
  auto idx = torch::empty({p.nq, p.n}, torch::kInt);
  auto counts = torch::zeros({p.nq, p.nbits + 1}, torch::kLong);
  for (int64_t q = 0; q < p.nq; ++q) {
    auto o = p.order(q);
    for (int64_t j = 0; j < p.n; ++j) {
      idx[q][j] = int(o[j]);
      counts[q][p.dist[q][j]] += 1;
    }
  }
  const auto relevance = Relevance::from_labels(p.qlabels, p.dblabels);
  LabelMetrics m(opts, p.n, p.nbits);
  const int64_t split = p.nq / 3;
  for (auto [q0, q1] : {std::pair<int64_t, int64_t>{0, split}, {split, p.nq}})
    m.add({idx.slice(0, q0, q1), counts.slice(0, q0, q1)}, relevance.block(q0, q1 - q0));
  return m.result();
}

// ---- brute-force references, written out plainly

std::vector<int> ranked_rel(const Problem& p, int64_t q) {
  std::vector<int> r;
  for (int64_t j : p.order(q)) r.push_back(p.rel[q][j]);
  return r;
}

// AP@K; `counted` tells whether R_K > 0.
double ref_ap(const std::vector<int>& rel, int64_t K, bool* counted) {
  double sum = 0;
  int64_t hits = 0;
  for (int64_t k = 0; k < std::min<int64_t>(K, rel.size()); ++k)
    if (rel[k]) {
      ++hits;
      sum += double(hits) / double(k + 1);
    }
  *counted = hits > 0;
  return hits ? sum / hits : 0.0;
}

double ref_map(const Problem& p, int64_t K, bool skip) {
  double sum = 0;
  int64_t counted_queries = 0;
  for (int64_t q = 0; q < p.nq; ++q) {
    bool counted;
    sum += ref_ap(ranked_rel(p, q), K, &counted);
    counted_queries += counted;
  }
  return skip ? (counted_queries ? sum / counted_queries : 0.0) : sum / p.nq;
}

// Expected AP@all by enumerating every distinct order of relevance flags inside each group.
double enumerate_expected_ap(const std::vector<int64_t>& sizes, const std::vector<int64_t>& rels) {
  std::vector<std::vector<int>> groups;
  for (size_t g = 0; g < sizes.size(); ++g) {
    std::vector<int> flags(sizes[g], 0);
    std::fill(flags.end() - rels[g], flags.end(), 1);  // sorted: first permutation
    groups.push_back(flags);
  }
  double total = 0;
  int64_t orders = 0;
  std::function<void(size_t)> walk = [&](size_t g) {
    if (g == groups.size()) {
      std::vector<int> rel;
      for (auto& f : groups) rel.insert(rel.end(), f.begin(), f.end());
      bool counted;
      total += ref_ap(rel, int64_t(rel.size()), &counted);
      ++orders;
      return;
    }
    std::vector<int> start = groups[g];
    do {
      walk(g + 1);
    } while (std::next_permutation(groups[g].begin(), groups[g].end()));
    groups[g] = start;
  };
  walk(0);
  return total / double(orders);
}

double ref_tie_aware_map(const Problem& p) {
  double sum = 0;
  for (int64_t q = 0; q < p.nq; ++q) {
    std::vector<int64_t> sizes(p.nbits + 1, 0), rels(p.nbits + 1, 0);
    for (int64_t j = 0; j < p.n; ++j) {
      sizes[p.dist[q][j]]++;
      rels[p.dist[q][j]] += p.rel[q][j];
    }
    sum += enumerate_expected_ap(sizes, rels);
  }
  return sum / p.nq;
}

// P@N, R@N means.
std::pair<double, double> ref_pn(const Problem& p, int64_t N) {
  double ps = 0, rs = 0;
  for (int64_t q = 0; q < p.nq; ++q) {
    auto rel = ranked_rel(p, q);
    const int64_t total = std::accumulate(rel.begin(), rel.end(), int64_t{0});
    const int64_t n = std::min<int64_t>(N, p.n);
    int64_t hits = 0;
    for (int64_t k = 0; k < n; ++k) hits += rel[k];
    ps += double(hits) / n;
    rs += total ? double(hits) / total : 0.0;
  }
  return {ps / p.nq, rs / p.nq};
}

// P@H<=r, R@H<=r means.
std::pair<double, double> ref_radius(const Problem& p, int r) {
  double ps = 0, rs = 0;
  for (int64_t q = 0; q < p.nq; ++q) {
    int64_t retrieved = 0, hits = 0, total = 0;
    for (int64_t j = 0; j < p.n; ++j) {
      total += p.rel[q][j];
      if (p.dist[q][j] <= r) {
        ++retrieved;
        hits += p.rel[q][j];
      }
    }
    ps += retrieved ? double(hits) / retrieved : 0.0;
    rs += total ? double(hits) / total : 0.0;
  }
  return {ps / p.nq, rs / p.nq};
}

void expect_label_metrics(const Problem& p, const EvalOptions& opts, bool with_tie_aware) {
  const auto j = run_label_metrics(p, opts);
  EXPECT_EQ(j["num_queries"].get<int64_t>(), p.nq);
  EXPECT_EQ(j["num_database"].get<int64_t>(), p.n);
  EXPECT_NEAR(j["map_all"].get<double>(), ref_map(p, p.n, opts.skip_no_relevant), 1e-12);
  for (int64_t K : opts.map_at)
    EXPECT_NEAR(j["map_" + std::to_string(K)].get<double>(), ref_map(p, K, opts.skip_no_relevant),
                1e-12)
        << "K = " << K;
  for (int64_t N : opts.pn) {
    auto [pr, rc] = ref_pn(p, N);
    EXPECT_NEAR(j["p_at_n"][std::to_string(N)].get<double>(), pr, 1e-12) << "N = " << N;
    EXPECT_NEAR(j["r_at_n"][std::to_string(N)].get<double>(), rc, 1e-12) << "N = " << N;
  }
  for (int r : opts.radius) {
    auto [pr, rc] = ref_radius(p, r);
    EXPECT_NEAR(j["p_h" + std::to_string(r)].get<double>(), pr, 1e-12) << "r = " << r;
    EXPECT_NEAR(j["r_h" + std::to_string(r)].get<double>(), rc, 1e-12) << "r = " << r;
  }
  const auto& curve = j["pr_curve"];
  ASSERT_EQ(curve["radius"].size(), size_t(p.nbits + 1));
  for (int r = 0; r <= p.nbits; ++r) {
    auto [pr, rc] = ref_radius(p, r);
    EXPECT_EQ(curve["radius"][r].get<int>(), r);
    EXPECT_NEAR(curve["precision"][r].get<double>(), pr, 1e-12) << "r = " << r;
    EXPECT_NEAR(curve["recall"][r].get<double>(), rc, 1e-12) << "r = " << r;
  }
  if (with_tie_aware)
    EXPECT_NEAR(j["map_all_tie_aware"].get<double>(), ref_tie_aware_map(p), 1e-10);
}

EvalOptions test_options() {
  EvalOptions o;
  o.map_at = {1, 5, 37, 100000};  // the last exceeds every database here
  o.radius = {0, 2, 5, 100};
  o.pn = {1, 10, 50, 100000};
  return o;
}

// ---------------------------------------------------------------- tests

TEST(TieAwareAP, ClosedFormMatchesEveryPermutation) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 60; ++trial) {
    const int groups = 1 + int(rng() % 4);
    std::vector<int64_t> sizes, rels;
    for (int g = 0; g < groups; ++g) {
      sizes.push_back(1 + int64_t(rng() % 5));
      rels.push_back(int64_t(rng() % (sizes.back() + 1)));
    }
    EXPECT_NEAR(expected_average_precision(sizes, rels), enumerate_expected_ap(sizes, rels), 1e-12)
        << "trial " << trial;
  }
}

TEST(TieAwareAP, KnownSmallValues) {
  // One group of 2 with 1 relevant: AP is 1 or 1/2, expected 3/4.
  EXPECT_DOUBLE_EQ(expected_average_precision({2}, {1}), 0.75);
  // No ties: AP of [0, 1, 1] = (1/2 + 2/3) / 2.
  EXPECT_DOUBLE_EQ(expected_average_precision({1, 1, 1}, {0, 1, 1}), (0.5 + 2.0 / 3.0) / 2.0);
  EXPECT_EQ(expected_average_precision({3, 2}, {0, 0}), 0.0);
  EXPECT_THROW(expected_average_precision({1}, {2}), hashlab::Error);
}

TEST(LabelMetrics, SingleLabelMatchesBruteForce) {
  auto p = make_problem(40, 300, 16, 5, false, 1);
  expect_label_metrics(p, test_options(), false);
}

TEST(LabelMetrics, HeavyTiesWithTieAwareAP) {
  // 2 bits over 9 items: groups of ~3, small enough to enumerate every order.
  auto p = make_problem(30, 9, 2, 3, false, 2);
  expect_label_metrics(p, test_options(), true);
}

TEST(LabelMetrics, MultiLabelWithTies) {
  auto p = make_problem(25, 10, 3, 6, true, 3);
  expect_label_metrics(p, test_options(), true);
}

TEST(LabelMetrics, QueriesWithoutRelevantItems) {
  auto p = make_problem(40, 60, 4, 3, false, 4, /*absent_class=*/true);
  bool some_empty = false;
  for (int64_t q = 0; q < p.nq; ++q)
    some_empty |= std::accumulate(p.rel[q].begin(), p.rel[q].end(), 0) == 0;
  ASSERT_TRUE(some_empty);
  auto opts = test_options();
  expect_label_metrics(p, opts, false);
  opts.skip_no_relevant = true;
  expect_label_metrics(p, opts, false);
  EXPECT_GT(run_label_metrics(p, opts)["map_all"].get<double>(),
            run_label_metrics(p, test_options())["map_all"].get<double>());
}

TEST(LabelMetrics, PerfectRankingScoresOne) {
  // Relevant items at distance 0, the rest at 1: every AP is 1.
  Problem p = make_problem(5, 20, 1, 2, false, 5);
  for (int64_t q = 0; q < p.nq; ++q)
    for (int64_t j = 0; j < p.n; ++j) p.dist[q][j] = p.rel[q][j] ? 0 : 1;
  auto j = run_label_metrics(p, test_options());
  EXPECT_DOUBLE_EQ(j["map_all"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["map_all_tie_aware"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["p_h0"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["r_h0"].get<double>(), 1.0);
}

TEST(EvalOptions, FromYamlReadsKeysAndRejectsUnknown) {
  auto cfg = Config::from_string(
      "eval: {map_at: [100, 1000], tie_aware: false, radius: [0, 2], pn: [10], skip_no_relevant: "
      "true, pr_curve: false, map_all: false}\n");
  auto o = EvalOptions::from_yaml(cfg.section("eval"));
  EXPECT_EQ(o.map_at, (std::vector<int64_t>{100, 1000}));
  EXPECT_FALSE(o.tie_aware);
  EXPECT_TRUE(o.skip_no_relevant);
  EXPECT_EQ(o.radius, (std::vector<int>{0, 2}));
  EXPECT_EQ(o.pn, (std::vector<int64_t>{10}));
  EXPECT_FALSE(o.map_all);
  EXPECT_FALSE(o.pr_curve);
  auto bad = Config::from_string("eval: {map_att: [10]}\n");
  EXPECT_THROW(EvalOptions::from_yaml(bad.section("eval")), hashlab::Error);
  auto negative = Config::from_string("eval: {pn: [0]}\n");
  EXPECT_THROW(EvalOptions::from_yaml(negative.section("eval")), hashlab::Error);
}

TEST(EuclideanKnn, MatchesSortWithDuplicateTies) {
  torch::manual_seed(11);
  auto db = torch::randint(0, 3, {200, 4}).to(torch::kFloat);  // many exact ties
  auto q = torch::randint(0, 3, {17, 4}).to(torch::kFloat);
  const int64_t k = 25;
  auto knn = euclidean_knn(q, db, k, 2);
  ASSERT_EQ(knn.sizes(), (std::vector<int64_t>{17, k}));
  for (int64_t i = 0; i < q.size(0); ++i) {
    std::vector<std::pair<double, int64_t>> all;
    for (int64_t j = 0; j < db.size(0); ++j) {
      double s = 0;
      for (int64_t t = 0; t < 4; ++t) {
        double d = q[i][t].item<double>() - db[j][t].item<double>();
        s += d * d;
      }
      all.emplace_back(s, j);
    }
    std::sort(all.begin(), all.end());
    for (int64_t t = 0; t < k; ++t) EXPECT_EQ(knn[i][t].item<int64_t>(), all[t].second);
  }
}

// The first pass is a float GEMM: with a large common offset and small
// differences, |q|^2 - 2 q.x + |x|^2 cancels to a few bits, and only the
// rounding tolerance keeps the true neighbours among the candidates.
TEST(EuclideanKnn, FloatCancellationLosesNoNeighbour) {
  torch::manual_seed(12);
  const int64_t n = 3000, nq = 23, d = 300, k = 40;
  auto offset = torch::full({1, d}, 1000.0f);
  auto db = offset + torch::randn({n, d}) * 0.05f;
  auto q = offset + torch::randn({nq, d}) * 0.05f;
  auto knn = euclidean_knn(q, db, k, 2);
  auto qd = q.to(torch::kDouble), dbd = db.to(torch::kDouble);
  for (int64_t i = 0; i < nq; ++i) {
    // The same double sum, dimension by dimension, that defines the order.
    auto diff = (dbd - qd[i].unsqueeze(0)).contiguous();
    const double* p = diff.data_ptr<double>();
    std::vector<std::pair<double, int64_t>> all;
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t t = 0; t < d; ++t) s += p[j * d + t] * p[j * d + t];
      all.emplace_back(s, j);
    }
    std::partial_sort(all.begin(), all.begin() + k, all.end());
    for (int64_t t = 0; t < k; ++t) ASSERT_EQ(knn[i][t].item<int64_t>(), all[t].second) << i << " " << t;
  }
}

TEST(EuclideanMetrics, MatchesBruteForce) {
  std::mt19937_64 rng(12);
  const int64_t nq = 9, n = 120, kgt = 20;
  EvalOptions o;
  o.recall_k = 10;
  o.recall_at = {1, 5, 50, 500};
  o.m_recall_max = 40;
  o.m_recall_k = {1, 7, 20};
  o.m_recall_K = {3, 40, 90};
  o.sigah_gt = 15;
  o.sigah_curves = {1, 10};
  o.sigah_retrieved = {1, 20, 100};
  // Random true neighbours and random rankings.
  auto gt = torch::empty({nq, kgt}, torch::kLong);
  auto idx = torch::empty({nq, n}, torch::kLong);
  std::vector<std::vector<int64_t>> gts(nq), ranks(nq);
  for (int64_t q = 0; q < nq; ++q) {
    std::vector<int64_t> perm(n);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    gts[q].assign(perm.begin(), perm.begin() + kgt);
    std::shuffle(perm.begin(), perm.end(), rng);
    ranks[q] = perm;
    for (int64_t t = 0; t < kgt; ++t) gt[q][t] = gts[q][t];
    for (int64_t t = 0; t < n; ++t) idx[q][t] = ranks[q][t];
  }
  EuclideanMetrics m(o, n, gt);
  m.add(0, {idx.slice(0, 0, 4), {}});
  m.add(4, {idx.slice(0, 4, nq), {}});
  auto j = m.result();

  // found(q, top, i): how many of the first `top` true neighbours are among the first i ranked.
  auto found = [&](int64_t q, int64_t top, int64_t i) {
    int64_t c = 0;
    for (int64_t t = 0; t < std::min(i, n); ++t)
      for (int64_t g = 0; g < top; ++g) c += ranks[q][t] == gts[q][g];
    return c;
  };
  for (int64_t i : o.recall_at) {
    double s = 0;
    for (int64_t q = 0; q < nq; ++q) s += double(found(q, 10, i)) / 10;
    EXPECT_NEAR(j["recall_at_" + std::to_string(i)].get<double>(), s / nq, 1e-12);
  }
  double mr = 0;
  for (int64_t q = 0; q < nq; ++q)
    for (int64_t i = 1; i <= 40; ++i) mr += double(found(q, 10, i)) / 10 / 40;
  EXPECT_NEAR(j["m_recall"].get<double>(), mr / nq, 1e-12);
  // The grid: eq. 7 by brute force for every (k, K).
  for (int64_t k : o.m_recall_k)
    for (int64_t K : o.m_recall_K) {
      double g = 0;
      for (int64_t q = 0; q < nq; ++q)
        for (int64_t i = 1; i <= K; ++i) g += double(found(q, k, i)) / double(k) / double(K);
      EXPECT_NEAR(j["m_recall_k" + std::to_string(k) + "_K" + std::to_string(K)].get<double>(),
                  g / nq, 1e-12)
          << k << " " << K;
    }
  double map = 0, pre = 0;
  for (int64_t q = 0; q < nq; ++q) {
    std::vector<int> rel;
    for (int64_t t = 0; t < n; ++t) {
      bool r = false;
      for (int64_t g = 0; g < 15; ++g) r |= ranks[q][t] == gts[q][g];
      rel.push_back(r);
    }
    bool counted;
    map += ref_ap(rel, n, &counted);
    pre += double(std::accumulate(rel.begin(), rel.begin() + 100, 0)) / 100;
  }
  EXPECT_NEAR(j["sigah_map"].get<double>(), map / nq, 1e-12);
  EXPECT_NEAR(j["sigah_pre100"].get<double>(), pre / nq, 1e-12);
  for (int64_t top : o.sigah_curves)
    for (int64_t T : o.sigah_retrieved) {
      double s = 0;
      for (int64_t q = 0; q < nq; ++q) s += double(found(q, top, T)) / top;
      EXPECT_NEAR(j["sigah_r" + std::to_string(top)][std::to_string(T)].get<double>(), s / nq,
                  1e-12);
    }
}

}  // namespace
}  // namespace hashlab::eval
