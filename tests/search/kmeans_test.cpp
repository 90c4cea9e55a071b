// k-means: brute-force nearest centroids, Lloyd fixed point, seeding, repair.
#include <gtest/gtest.h>

#include "csrc/core/error.h"
#include "csrc/search/kmeans.h"

namespace hashlab::search {
namespace {

int64_t distinct(const torch::Tensor& t) { return std::get<0>(torch::_unique(t)).numel(); }

TEST(KMeans, NearestCentroidsMatchesBruteForce) {
  torch::manual_seed(1);
  auto X = torch::randn({300, 5}), C = torch::randn({17, 5});
  auto [assign, dist] = nearest_centroids(X, C);
  auto full = torch::cdist(X, C).pow(2);  // [300, 17]
  for (int64_t i = 0; i < 300; ++i) {
    const float best = full[i].min().item<float>();
    EXPECT_LE(full[i][assign[i].item<int64_t>()].item<float>(), best + 1e-4f);
    EXPECT_NEAR(dist[i].item<float>(), best, 1e-4f * (1 + best));
  }
}

TEST(KMeans, RecoversSeparatedBlobs) {
  torch::manual_seed(2);
  const int64_t per = 50;
  auto centers = torch::tensor({{0.f, 0.f}, {100.f, 0.f}, {0.f, 100.f}, {100.f, 100.f}});
  auto X = (centers.repeat_interleave(per, 0) + torch::randn({4 * per, 2}));
  auto res = kmeans(X, 4, {50, 0.0, 3});
  // Every blob lands in one cluster, each cluster holds one blob.
  for (int b = 0; b < 4; ++b) {
    auto a = res.assignments.slice(0, b * per, (b + 1) * per);
    EXPECT_EQ(distinct(a), 1) << "blob " << b;
  }
  EXPECT_EQ(distinct(res.assignments), 4);
  EXPECT_NEAR(res.inertia, (X - res.centroids.index_select(0, res.assignments)).pow(2).sum().item<double>(),
              1e-3 * res.inertia);
}

TEST(KMeans, ConvergedResultIsALloydFixedPoint) {
  torch::manual_seed(3);
  auto X = torch::randn({400, 3});
  auto res = kmeans(X, 8, {100, 0.0, 4});
  // Centroids are the means of their points; points sit at their nearest centroid.
  for (int64_t c = 0; c < 8; ++c) {
    auto members = X.index_select(0, res.assignments.eq(c).nonzero().flatten());
    ASSERT_GT(members.size(0), 0);
    EXPECT_TRUE(torch::allclose(res.centroids[c], members.mean(0), 1e-4, 1e-4)) << "cluster " << c;
  }
  EXPECT_TRUE(torch::equal(nearest_centroids(X, res.centroids).first, res.assignments));
}

TEST(KMeans, SeededAndRepairsEmptyClusters) {
  torch::manual_seed(5);
  auto X = torch::randn({40, 2});
  auto a = kmeans(X, 30, {20, 0.0, 11}), b = kmeans(X, 30, {20, 0.0, 11});
  EXPECT_TRUE(torch::equal(a.centroids, b.centroids));
  // 30 clusters over 40 distinct points: none may stay empty.
  EXPECT_EQ(distinct(a.assignments), 30);
  // Duplicated points: k-means++ runs out of positive weights and still works.
  auto dup = torch::cat({torch::zeros({20, 2}), torch::ones({20, 2})});
  auto d = kmeans(dup, 3, {5, 0.0, 1});
  EXPECT_NEAR(d.inertia, 0.0, 1e-6);
  EXPECT_THROW(kmeans(X, 41), hashlab::Error);
}

}  // namespace
}  // namespace hashlab::search
