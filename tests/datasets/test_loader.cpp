// Loader (determinism, resume by seek, epoch coverage), transforms and
// similarity construction.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "datasets/loader.h"
#include "datasets/similarity.h"
#include "datasets/splits.h"
#include "datasets/transforms.h"
#include "tests/datasets/test_util.h"

#ifdef HASHLAB_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>
#endif

namespace hashlab::data {
namespace {

using namespace hashlab::data::testing;

Dataset images(int64_t n, int64_t c = 1, int64_t h = 6, int64_t w = 6) {
  Dataset d;
  torch::manual_seed(n);
  d.features = torch::randint(256, {n, c, h, w}).to(torch::kUInt8);
  d.labels = torch::arange(n) % 4;
  d.num_classes = 4;
  d.name = "images";
  return d;
}

void expect_same(const Batch& a, const Batch& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_TRUE(torch::equal(a.index, b.index)) << "step " << a.step;
  EXPECT_TRUE(torch::equal(a.x, b.x)) << "step " << a.step;
  EXPECT_TRUE(torch::equal(a.labels, b.labels)) << "step " << a.step;
}

LoaderOptions augmenting(int64_t batch, uint64_t seed, int64_t prefetch) {
  ImageTransformOptions t;
  t.crop = {4};
  t.random_crop = true;
  t.flip = true;
  return LoaderOptions().batch_size(batch).seed(seed).prefetch(prefetch).images(t);
}

TEST(Loader, CoversEveryIndexOncePerEpoch) {
  Dataset d = images(50);
  torch::Tensor idx = torch::arange(3, 40);  // 37 items: 4 batches of 10, the last of 7
  Loader l(d, idx, LoaderOptions().batch_size(10).seed(1));
  EXPECT_EQ(l.steps_per_epoch(), 4);
  for (int64_t e = 0; e < 3; ++e) {
    std::vector<int64_t> seen;
    for (int64_t b = 0; b < 4; ++b) {
      Batch batch = l.next();
      EXPECT_EQ(batch.epoch, e);
      EXPECT_EQ(batch.x.size(0), b < 3 ? 10 : 7);
      EXPECT_EQ(batch.x.scalar_type(), torch::kFloat32);
      EXPECT_TRUE(torch::equal(batch.labels, d.labels.index_select(0, batch.index)));
      for (int64_t i = 0; i < batch.index.numel(); ++i) seen.push_back(batch.index[i].item<int64_t>());
    }
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> want(37);
    std::iota(want.begin(), want.end(), 3);
    EXPECT_EQ(seen, want) << "epoch " << e;
  }
}

TEST(Loader, PixelsAreScaledAndOrderChangesPerEpoch) {
  Dataset d = images(20);
  Loader l(d, torch::arange(20), LoaderOptions().batch_size(20).seed(3).prefetch(0));
  Batch a = l.next(), b = l.next();
  EXPECT_TRUE(torch::allclose(a.x, d.features.index_select(0, a.index).to(torch::kFloat32) / 255));
  EXPECT_FALSE(torch::equal(a.index, b.index));  // reshuffled
  Loader plain(d, torch::arange(20), LoaderOptions().batch_size(8).shuffle(false));
  EXPECT_TRUE(torch::equal(plain.next().index, torch::arange(8)));
}

TEST(Loader, DropLastKeepsFullBatches) {
  Dataset d = images(25);
  Loader l(d, torch::arange(25), LoaderOptions().batch_size(10).drop_last(true));
  EXPECT_EQ(l.steps_per_epoch(), 2);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(l.next().x.size(0), 10);
  expect_error([&] { Loader(d, torch::arange(5), LoaderOptions().batch_size(10).drop_last(true)); },
               "drop_last with batch_size 10 but only 5 items");
}

TEST(Loader, DeterministicWithAndWithoutPrefetch) {
  Dataset d = images(30);
  Loader a(d, torch::arange(30), augmenting(8, 9, 3));
  Loader b(d, torch::arange(30), augmenting(8, 9, 0));
  for (int s = 0; s < 10; ++s) expect_same(a.next(), b.next());
  Loader c(d, torch::arange(30), augmenting(8, 10, 2));
  Loader a2(d, torch::arange(30), augmenting(8, 9, 2));
  EXPECT_FALSE(torch::equal(c.next().x, a2.next().x));
}

TEST(Loader, SeekGivesTheUninterruptedSequence) {
  Dataset d = images(23);
  std::vector<Batch> straight;
  {
    Loader l(d, torch::arange(23), augmenting(5, 4, 2));
    for (int s = 0; s < 17; ++s) straight.push_back(l.next());
  }
  // A "resumed" run: fresh loader, seek to step 7 (mid-epoch 1), continue.
  Loader r(d, torch::arange(23), augmenting(5, 4, 2));
  r.seek(7);
  for (int s = 7; s < 17; ++s) expect_same(r.next(), straight[s]);
  // Seeking backwards on a running loader works too.
  r.seek(2);
  EXPECT_EQ(r.step(), 2);
  expect_same(r.next(), straight[2]);
  expect_same(r.batch_at(12), straight[12]);
}

TEST(Loader, VectorsAndBadIndices) {
  Dataset d;
  d.features = torch::randn({12, 3});
  d.name = "vectors";
  Loader l(d, torch::arange(12), LoaderOptions().batch_size(12).shuffle(false));
  Batch b = l.next();
  EXPECT_TRUE(torch::equal(b.x, d.features));
  EXPECT_FALSE(b.labels.defined());
  expect_error([&] { Loader(d, torch::tensor({0, 12}), LoaderOptions()); },
               "index 12 is outside the dataset of 12 items");
}

// ---------------------------------------------------------------- transforms

TEST(Transforms, CentreCropFlipAndNormalize) {
  torch::Tensor img = torch::arange(2 * 1 * 4 * 4).view({2, 1, 4, 4}).to(torch::kUInt8);
  ImageTransformOptions o;
  o.scale = 1;
  o.crop = {2};
  o.mean = {1.0};
  o.std = {2.0};
  std::vector<ImageAugmentDraw> draws(2);
  draws[1].flip = true;
  torch::Tensor x = transform_image_batch(img, o, draws);
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{2, 1, 2, 2}));
  // Centre crop of the 4x4 ramp: rows 1..2, cols 1..2.
  torch::Tensor want0 = (torch::tensor({5.f, 6.f, 9.f, 10.f}).view({2, 2}) - 1) / 2;
  torch::Tensor want1 = (torch::tensor({22.f, 21.f, 26.f, 25.f}).view({2, 2}) - 1) / 2;
  EXPECT_TRUE(torch::allclose(x[0][0], want0));
  EXPECT_TRUE(torch::allclose(x[1][0], want1));
}

TEST(Transforms, RandomCropStaysInsideAndResizeChangesSize) {
  ImageTransformOptions o;
  o.resize = {8, 10};
  o.crop = {5};
  o.random_crop = true;
  std::mt19937_64 rng(1);
  std::vector<ImageAugmentDraw> draws;
  for (int i = 0; i < 16; ++i) draws.push_back(draw_augment(o, true, rng));
  torch::Tensor x = transform_image_batch(torch::full({16, 3, 4, 4}, 255, torch::kUInt8), o, draws);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{16, 3, 5, 5}));
  EXPECT_TRUE(torch::allclose(x, torch::ones_like(x)));
  std::set<double> offsets;
  for (auto& d : draws) offsets.insert(d.crop_y);
  EXPECT_GT(offsets.size(), 1u);
  ImageTransformOptions small;
  small.crop = {5};
  expect_error([&] { output_size(small, 3, 4); }, "crop 5x5 is larger than the image 3x4");
}

TEST(Transforms, VectorTransformsMatchTheirDefinitions) {
  torch::Tensor x = torch::randn({20, 6}) * 3 + 1;
  VectorTransformOptions o;
  o.center = true;
  o.l2_normalize = true;
  torch::Tensor y = apply_vector_transforms(x, o);
  torch::Tensor c = x - x.mean(0);
  EXPECT_TRUE(torch::allclose(y, c / c.norm(2, 1, true), 1e-5, 1e-6));
  VectorTransformOptions m;
  m.max_norm_scale = 0.8;
  EXPECT_NEAR(apply_vector_transforms(x, m).norm(2, 1).max().item<double>(), 0.8, 1e-6);
  torch::Tensor z = torch::zeros({2, 3});
  EXPECT_TRUE(torch::equal(apply_vector_transforms(z, o), z));  // zero rows stay zero
}

#ifdef HASHLAB_WITH_OPENCV
TEST(Transforms, ImageListDecodesLikeTheTensorPath) {
  TempDir dir;
  torch::Tensor pix = torch::randint(256, {3, 6, 8}).to(torch::kUInt8);  // RGB CHW
  cv::Mat bgr(6, 8, CV_8UC3);
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 8; ++x)
      for (int ch = 0; ch < 3; ++ch)
        bgr.at<cv::Vec3b>(y, x)[2 - ch] = pix[ch][y][x].item<uint8_t>();
  ASSERT_TRUE(cv::imwrite(dir.file("a.png"), bgr));
  write_text(dir.file("list.txt"), "a.png 1\na.png 0\r\n");
  DataOptions o;
  o.format = "image_list";
  o.files = {dir.file("list.txt")};
  o.root = dir.path().string();
  Dataset d = load_dataset(o);
  ASSERT_EQ(d.image_paths.size(), 2u);
  ImageTransformOptions t;
  t.crop = {4, 6};
  t.flip = true;
  t.random_crop = true;
  Loader l(d, torch::arange(2), LoaderOptions().batch_size(2).shuffle(false).images(t).seed(5));
  Batch b = l.next();
  ASSERT_EQ(b.x.sizes(), (std::vector<int64_t>{2, 3, 4, 6}));
  // The same draws on the in-memory tensor give the same pixels (PNG is lossless).
  std::mt19937_64 rng(mix_seed(5, 2, 0));
  std::vector<ImageAugmentDraw> draws = {draw_augment(t, true, rng), draw_augment(t, true, rng)};
  torch::Tensor want = transform_image_batch(torch::stack({pix, pix}), t, draws);
  EXPECT_TRUE(torch::allclose(b.x, want));

  write_text(dir.file("missing.txt"), "nope.png 1\n");
  o.files = {dir.file("missing.txt")};
  Dataset m = load_dataset(o);
  Loader lm(m, torch::arange(1), LoaderOptions().batch_size(1).images(t));
  expect_error([&] { lm.next(); }, "nope.png: cannot read or decode the image");
}
#endif

// ---------------------------------------------------------------- similarity

TEST(Similarity, LabelSimilarityMatchesALoop) {
  torch::Tensor a = torch::randint(5, {13}), b = torch::randint(5, {9});
  torch::Tensor s = label_similarity(a, b);
  for (int i = 0; i < 13; ++i)
    for (int j = 0; j < 9; ++j)
      EXPECT_EQ(s[i][j].item<float>(), a[i].item<int64_t>() == b[j].item<int64_t>() ? 1.f : 0.f);
  torch::Tensor ma = (torch::rand({11, 6}) > 0.7).to(torch::kUInt8);
  torch::Tensor mb = (torch::rand({7, 6}) > 0.7).to(torch::kUInt8);
  torch::Tensor ms = label_similarity(ma, mb);
  EXPECT_EQ(ms.sizes(), (std::vector<int64_t>{11, 7}));
  for (int i = 0; i < 11; ++i)
    for (int j = 0; j < 7; ++j) {
      bool share = false;
      for (int c = 0; c < 6; ++c) share |= ma[i][c].item<int>() && mb[j][c].item<int>();
      EXPECT_EQ(ms[i][j].item<float>(), share ? 1.f : 0.f);
    }
}

TEST(Similarity, KnnGraphMatchesBruteForceAcrossBatches) {
  torch::Tensor X = torch::randn({37, 5});
  const int64_t k = 4;
  KnnGraph g = knn_graph(X, k, /*batch_rows=*/8);
  ASSERT_EQ(g.indices.sizes(), (std::vector<int64_t>{37, k}));
  for (int64_t i = 0; i < 37; ++i) {
    std::vector<std::pair<double, int64_t>> d;
    for (int64_t j = 0; j < 37; ++j)
      if (j != i) d.push_back({(X[i] - X[j]).norm().item<double>(), j});
    std::sort(d.begin(), d.end());
    for (int64_t r = 0; r < k; ++r) {
      EXPECT_EQ(g.indices[i][r].item<int64_t>(), d[r].second) << "row " << i << " rank " << r;
      EXPECT_NEAR(g.distances[i][r].item<double>(), d[r].first, 1e-4);
    }
  }
  // Duplicated rows: self is still excluded, the twin comes first at distance 0.
  KnnGraph dup = knn_graph(torch::cat({X, X}), 1, 16);
  EXPECT_EQ(dup.indices[3][0].item<int64_t>(), 37 + 3);
  EXPECT_NEAR(dup.distances[3][0].item<double>(), 0.0, 1e-3);
}

TEST(Similarity, HeatKernel) {
  torch::Tensor d = torch::tensor({0.f, 1.f, 2.f});
  EXPECT_TRUE(torch::allclose(heat_kernel(d, 2.0), torch::exp(-d.pow(2) / 2)));
  double t = (0 + 1 + 4) / 3.0;
  EXPECT_TRUE(torch::allclose(heat_kernel(d), torch::exp(-d.pow(2) / t)));
}

}  // namespace
}  // namespace hashlab::data
