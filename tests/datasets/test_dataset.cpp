// Dataset loading (pooling, labels, options from YAML) and splits.
#include <gtest/gtest.h>

#include <set>

#include "csrc/core/config.h"
#include "datasets/dataset.h"
#include "datasets/splits.h"
#include "tests/datasets/test_util.h"

namespace hashlab::data {
namespace {

using namespace hashlab::data::testing;

// Two idx image files + label files: 30 and 20 images of 4x5, labels i % 5.
DataOptions two_idx_files(const TempDir& dir) {
  std::vector<uint8_t> l1, l2;
  for (int i = 0; i < 30; ++i) l1.push_back(static_cast<uint8_t>(i % 5));
  for (int i = 0; i < 20; ++i) l2.push_back(static_cast<uint8_t>(i % 5));
  write_file(dir.file("a-images.gz"), gzip(idx_images(30, 4, 5)));
  write_file(dir.file("b-images"), idx_images(20, 4, 5));
  write_file(dir.file("a-labels"), idx_labels(l1));
  write_file(dir.file("b-labels.gz"), gzip(idx_labels(l2)));
  DataOptions o;
  o.format = "idx";
  o.files = {dir.file("a-images.gz"), dir.file("b-images")};
  o.labels = {dir.file("a-labels"), dir.file("b-labels.gz")};
  return o;
}

TEST(Dataset, PoolsIdxFilesInOrder) {
  TempDir dir;
  Dataset d = load_dataset(two_idx_files(dir));
  EXPECT_EQ(d.size(), 50);
  EXPECT_EQ(d.features.sizes(), (std::vector<int64_t>{50, 1, 4, 5}));
  EXPECT_EQ(d.features.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(d.is_image());
  EXPECT_EQ(d.labels.scalar_type(), torch::kInt64);
  EXPECT_EQ(d.num_classes, 5);
  EXPECT_FALSE(d.multi_label);
  // Item 30 is the first image of the second file: pixel k = (0 * 7 + k).
  EXPECT_EQ(d.features[30][0][0][3].item<int>(), 3);
  EXPECT_EQ(d.features[29][0][0][0].item<int>(), (29 * 7) % 256);
  EXPECT_EQ(d.labels[32].item<int64_t>(), 2);
}

// data.classes keeps the listed classes' items in pool order, relabelled in
// the order listed (a class-disjoint regime), and names a bad list.
TEST(Dataset, ClassesKeepsAndRelabelsTheListedClasses) {
  TempDir dir;
  DataOptions o = two_idx_files(dir);
  Dataset all = load_dataset(o);
  o.classes = {3, 1};
  Dataset d = load_dataset(o);
  EXPECT_EQ(d.num_classes, 2);
  auto keep = ((all.labels == 3) | (all.labels == 1)).nonzero().flatten();
  ASSERT_EQ(d.size(), keep.size(0));
  EXPECT_TRUE(torch::equal(d.features, all.features.index_select(0, keep)));
  EXPECT_TRUE(torch::equal(d.labels, (all.labels.index_select(0, keep) == 1).to(torch::kLong)));
  o.classes = {3, 7};
  expect_error([&] { load_dataset(o); }, "data.classes: class 7 is not in");
  o.classes = {3, 3};
  expect_error([&] { load_dataset(o); }, "data.classes: class 3 is listed twice");
}

TEST(Dataset, LabelCountMismatchNamesBothFiles) {
  TempDir dir;
  DataOptions o = two_idx_files(dir);
  write_file(dir.file("short-labels"), idx_labels({1, 2, 3}));
  o.labels[1] = dir.file("short-labels");
  expect_error([&] { load_dataset(o); }, "short-labels: 3 labels, but " + dir.file("b-images") +
                                             " has 20 items");
  o.labels.pop_back();
  expect_error([&] { load_dataset(o); }, "2 feature files but 1 label files");
}

TEST(Dataset, ShapesThatCannotBePooled) {
  TempDir dir;
  DataOptions o = two_idx_files(dir);
  write_file(dir.file("other"), idx_images(20, 5, 5));
  o.files[1] = dir.file("other");
  expect_error([&] { load_dataset(o); }, "other: features of shape [20,1,5,5]");
}

TEST(Dataset, VectorsWithNpyLabelsAndTransforms) {
  TempDir dir;
  Buf f;
  for (int r = 0; r < 4; ++r) {
    put_le32(f, 2);
    put_raw(f, float(r));
    put_raw(f, float(2 * r));
  }
  write_file(dir.file("base.fvecs"), f);
  Buf l;
  for (int64_t v : {int64_t{0}, int64_t{1}, int64_t{1}, int64_t{0}}) put_raw(l, v);
  write_file(dir.file("labels.npy"), npy_file("<i8", "(4,)", l));
  DataOptions o;
  o.format = "fvecs";
  o.files = {dir.file("base.fvecs")};
  o.labels = {dir.file("labels.npy")};
  o.vectors.center = true;
  o.vectors.max_norm_scale = 0.8;
  Dataset d = load_dataset(o);
  EXPECT_EQ(d.features.sizes(), (std::vector<int64_t>{4, 2}));
  EXPECT_FALSE(d.is_image());
  EXPECT_EQ(d.num_classes, 2);
  // Centred rows (r - 1.5) * (1, 2), scaled so the largest norm is 0.8.
  torch::Tensor x = torch::tensor({{-1.5f, -3.f}, {-0.5f, -1.f}, {0.5f, 1.f}, {1.5f, 3.f}});
  x = x * (0.8f / x.norm(2, 1).max());
  EXPECT_TRUE(torch::allclose(d.features, x, 1e-5, 1e-6));

  Buf bad;
  for (int64_t v : {int64_t{0}, int64_t{-4}, int64_t{1}, int64_t{0}}) put_raw(bad, v);
  write_file(dir.file("bad.npy"), npy_file("<i8", "(4,)", bad));
  o.labels = {dir.file("bad.npy")};
  expect_error([&] { load_dataset(o); }, "bad.npy: label -4 at index 1 is negative");
}

TEST(Dataset, CifarCarriesItsOwnLabels) {
  TempDir dir;
  Buf b;
  for (int i = 0; i < 6; ++i) {
    b.push_back(static_cast<uint8_t>(i % 3));
    b.insert(b.end(), 3072, static_cast<uint8_t>(i));
  }
  write_file(dir.file("data_batch_1.bin"), b);
  DataOptions o;
  o.format = "cifar10";
  o.files = {dir.file("data_batch_1.bin"), dir.file("data_batch_1.bin")};
  Dataset d = load_dataset(o);
  EXPECT_EQ(d.features.sizes(), (std::vector<int64_t>{12, 3, 32, 32}));
  EXPECT_EQ(d.labels[7].item<int64_t>(), 1);
  EXPECT_EQ(d.num_classes, 3);
  o.labels = {dir.file("data_batch_1.bin")};
  expect_error([&] { load_dataset(o); }, "format cifar10 carries its own labels");
}

TEST(DataOptions, FromYamlReadsKeysAndRejectsUnknownOnes) {
  Config cfg = Config::from_string(R"(
data:
  format: fvecs
  files: [a.fvecs, b.fvecs]
  protocol: euclidean
  num_queries: 10
  split_seed: 3
  center: true
  max_norm_scale: 0.8
  resize: [256]
  crop: 224
  mean: [0.485, 0.456, 0.406]
)");
  DataOptions o = DataOptions::from_yaml(cfg.section("data"));
  EXPECT_EQ(o.format, "fvecs");
  EXPECT_EQ(o.files, (std::vector<std::string>{"a.fvecs", "b.fvecs"}));
  EXPECT_EQ(o.protocol, Protocol::euclidean);
  EXPECT_EQ(o.num_queries, 10);
  EXPECT_EQ(o.split_seed, 3);
  EXPECT_TRUE(o.vectors.center);
  EXPECT_DOUBLE_EQ(o.vectors.max_norm_scale, 0.8);
  EXPECT_EQ(o.images.resize, (std::vector<int64_t>{256}));
  EXPECT_EQ(o.images.crop, (std::vector<int64_t>{224}));
  EXPECT_EQ(o.images.mean.size(), 3u);
  EXPECT_DOUBLE_EQ(o.images.scale, 255);
  EXPECT_EQ(o.queries_per_class, 100);

  Config typo = Config::from_string("data:\n  files: [a]\n  queries_per_clas: 5\n");
  expect_error([&] { DataOptions::from_yaml(typo.section("data")); },
               "unknown key 'data.queries_per_clas' (did you mean 'data.queries_per_class'?)");
  Config fmt = Config::from_string("data:\n  files: [a]\n  format: mnist\n");
  expect_error([&] { DataOptions::from_yaml(fmt.section("data")); }, "'mnist' is not one of");
  Config none = Config::from_string("data:\n  format: idx\n");
  expect_error([&] { DataOptions::from_yaml(none.section("data")); },
               "at least one data file is needed");
}

TEST(DataOptions, GistIsTrueOrAMappingOfItsKeys) {
  Config on = Config::from_string("data:\n  files: [a]\n  gist: true\n");
  DataOptions o = DataOptions::from_yaml(on.section("data"));
  EXPECT_TRUE(o.use_gist);
  EXPECT_EQ(o.gist.dim(), 512);  // 4 scales x 8 orientations x 4 x 4 blocks
  Config rgb = Config::from_string("data:\n  files: [a]\n  gist: {colour: rgb, blocks: 2}\n");
  o = DataOptions::from_yaml(rgb.section("data"));
  EXPECT_TRUE(o.use_gist);
  EXPECT_EQ(o.gist.dim(), 20 * 4 * 3);  // [8, 8, 4] per channel
  EXPECT_FALSE(DataOptions::from_yaml(Config::from_string("data:\n  files: [a]\n").section("data"))
                   .use_gist);
  Config typo = Config::from_string("data:\n  files: [a]\n  gist: {colr: rgb}\n");
  expect_error([&] { DataOptions::from_yaml(typo.section("data")); },
               "unknown key 'data.gist.colr' (did you mean 'data.gist.colour'?)");
  Config big = Config::from_string("data:\n  files: [a]\n  gist: {blocks: 40}\n");
  expect_error([&] { DataOptions::from_yaml(big.section("data")); },
               "40 blocks do not fit an image of side 32");
}

TEST(DataOptions, DefaultConfigFileParses) {
  Config cfg = Config::load(std::string(HASHLAB_SOURCE_DIR) +
                            "/configs/_base_/datasets/fashion_mnist.yaml");
  DataOptions o = DataOptions::from_yaml(cfg.section("data"));
  EXPECT_EQ(o.format, "idx");
  EXPECT_EQ(o.files.size(), 2u);
  EXPECT_EQ(o.labels.size(), 2u);
  EXPECT_EQ(o.queries_per_class, 100);
}

// ---------------------------------------------------------------- splits

// n items with labels drawn at random from c classes, each class at least `min_per_class`.
Dataset labelled(int64_t n, int64_t c, uint64_t seed) {
  Dataset d;
  torch::manual_seed(seed);
  d.features = torch::randn({n, 3});
  d.labels = torch::cat({torch::arange(c).repeat(n / c), torch::randint(c, {n - (n / c) * c})})
                 .index_select(0, torch::randperm(n));
  d.num_classes = c;
  d.name = "synthetic";
  return d;
}

void expect_partition(const Split& s, int64_t n) {
  std::set<int64_t> q(s.query.data_ptr<int64_t>(), s.query.data_ptr<int64_t>() + s.query.numel());
  std::set<int64_t> db(s.database.data_ptr<int64_t>(),
                       s.database.data_ptr<int64_t>() + s.database.numel());
  EXPECT_EQ(static_cast<int64_t>(q.size()), s.query.numel());  // no repeats
  EXPECT_EQ(static_cast<int64_t>(db.size()), s.database.numel());
  EXPECT_EQ(static_cast<int64_t>(q.size() + db.size()), n);
  for (int64_t i : q) EXPECT_EQ(db.count(i), 0u) << i;
  for (int64_t i = 0; i < s.train.numel(); ++i)
    EXPECT_EQ(db.count(s.train[i].item<int64_t>()), 1u);
  EXPECT_TRUE(torch::equal(s.query, std::get<0>(s.query.sort())));
}

TEST(Splits, LabelProtocolPerClassCounts) {
  Dataset d = labelled(1000, 7, 1);
  DataOptions o;
  o.queries_per_class = 10;
  o.split_seed = 5;
  Split s = make_split(d, o);
  EXPECT_EQ(s.query.numel(), 70);
  EXPECT_EQ(s.database.numel(), 930);
  EXPECT_TRUE(torch::equal(s.train, s.database));
  EXPECT_TRUE(torch::equal(torch::bincount(d.labels.index_select(0, s.query)),
                           torch::full({7}, 10, torch::kInt64)));
  expect_partition(s, 1000);

  o.train_per_class = 20;
  Split t = make_split(d, o);
  EXPECT_TRUE(torch::equal(t.query, s.query));  // queries are drawn first
  EXPECT_TRUE(torch::equal(torch::bincount(d.labels.index_select(0, t.train)),
                           torch::full({7}, 20, torch::kInt64)));
  expect_partition(t, 1000);

  o.num_train = 50;
  Split u = make_split(d, o);
  EXPECT_EQ(u.train.numel(), 50);
  expect_partition(u, 1000);
}

TEST(Splits, ValidationSplitNeverReturnsTheTestQueries) {
  Dataset d = labelled(1000, 7, 1);
  DataOptions o;
  o.queries_per_class = 10;
  o.train_per_class = 20;
  o.split_seed = 5;
  Split test = make_split(d, o);
  o.validation = true;
  Split val = make_split(d, o);
  EXPECT_EQ(val.query.numel(), 70);
  EXPECT_EQ(val.database.numel(), 860);  // the test queries are in neither set
  EXPECT_TRUE(torch::equal(torch::bincount(d.labels.index_select(0, val.query)),
                           torch::full({7}, 10, torch::kInt64)));
  std::set<int64_t> test_q(test.query.data_ptr<int64_t>(),
                           test.query.data_ptr<int64_t>() + test.query.numel());
  for (auto* t : {&val.query, &val.database, &val.train})
    for (int64_t i = 0; i < t->numel(); ++i)
      EXPECT_EQ(test_q.count((*t)[i].item<int64_t>()), 0u);
  // Validation queries come from the test split's database.
  std::set<int64_t> test_db(test.database.data_ptr<int64_t>(),
                            test.database.data_ptr<int64_t>() + test.database.numel());
  for (int64_t i = 0; i < val.query.numel(); ++i)
    EXPECT_EQ(test_db.count(val.query[i].item<int64_t>()), 1u);
  EXPECT_TRUE(torch::equal(torch::bincount(d.labels.index_select(0, val.train)),
                           torch::full({7}, 20, torch::kInt64)));
  EXPECT_TRUE(torch::equal(make_split(d, o).query, val.query));  // deterministic
}

TEST(Splits, DeterministicForASeedAndDifferentAcrossSeeds) {
  Dataset d = labelled(500, 5, 2);
  DataOptions o;
  o.queries_per_class = 20;
  o.train_per_class = 30;
  o.split_seed = 11;
  Split a = make_split(d, o), b = make_split(d, o);
  EXPECT_TRUE(torch::equal(a.query, b.query));
  EXPECT_TRUE(torch::equal(a.train, b.train));
  o.split_seed = 12;
  Split c = make_split(d, o);
  EXPECT_FALSE(torch::equal(a.query, c.query));
}

TEST(Splits, PermutationIsFixedAcrossStandardLibraries) {
  // mt19937_64 output is specified by the standard; the shuffle is ours, so
  // this sequence must never change (a changed split would change results).
  std::vector<int64_t> p = permutation(10, 42);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_EQ(p, permutation(10, 42));
  EXPECT_NE(p, permutation(10, 43));
  std::mt19937_64 rng(5489);
  EXPECT_EQ(rng(), 14514284786278117030ull);  // the standard's first output for seed 5489
}

TEST(Splits, EuclideanProtocolAndErrors) {
  Dataset d = labelled(300, 3, 3);
  d.labels = torch::Tensor();
  d.num_classes = 0;
  DataOptions o;
  o.protocol = Protocol::euclidean;
  o.num_queries = 25;
  Split s = make_split(d, o);
  EXPECT_EQ(s.query.numel(), 25);
  EXPECT_EQ(s.database.numel(), 275);
  expect_partition(s, 300);
  o.protocol = Protocol::label;
  expect_error([&] { make_split(d, o); }, "the label protocol needs labels");
  o.protocol = Protocol::euclidean;
  o.num_queries = 301;
  expect_error([&] { make_split(d, o); }, "num_queries = 301 but the pool has only 300 items");

  Dataset l = labelled(30, 3, 4);
  DataOptions q;
  q.queries_per_class = 11;
  expect_error([&] { make_split(l, q); }, "fewer than queries_per_class = 11");
}

TEST(Splits, MultiLabelDrawsRandomQueries) {
  Dataset d;
  d.features = torch::randn({200, 2});
  d.labels = (torch::rand({200, 4}) > 0.5).to(torch::kUInt8);
  d.multi_label = true;
  d.num_classes = 4;
  DataOptions o;
  o.num_queries = 40;
  Split s = make_split(d, o);
  EXPECT_EQ(s.query.numel(), 40);
  expect_partition(s, 200);
}

std::set<int64_t> as_set(const torch::Tensor& t) {
  return {t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel()};
}

TEST(Splits, DatabaseIsTheRestTheRestWithoutTrainOrTheTrainingSet) {
  // DeepHash-pytorch's cifar10 / cifar10-1 / cifar10-2 on 7 classes of 30.
  Dataset d = labelled(210, 7, 1);
  DataOptions o;
  o.queries_per_class = 2;
  o.train_per_class = 5;
  o.split_seed = 3;
  Split rest = make_split(d, o);
  o.database = "rest_without_train";
  Split without = make_split(d, o);
  EXPECT_TRUE(torch::equal(without.query, rest.query));
  EXPECT_TRUE(torch::equal(without.train, rest.train));
  EXPECT_EQ(rest.database.numel(), 210 - 14);
  EXPECT_EQ(without.database.numel(), 210 - 14 - 35);
  auto db = as_set(without.database), tr = as_set(without.train), q = as_set(without.query);
  for (int64_t i : tr) EXPECT_EQ(db.count(i), 0u);
  for (int64_t i : q) EXPECT_EQ(db.count(i) + tr.count(i), 0u);
  o.database = "train";
  Split train = make_split(d, o);
  EXPECT_TRUE(torch::equal(train.database, train.train));
  EXPECT_EQ(train.database.numel(), 35);
  // The whole rest as training set leaves no database.
  o.train_per_class = 0;
  o.database = "rest_without_train";
  expect_error([&] { make_split(d, o); }, "leaves no database item");
}

TEST(Splits, RolesGiveTheSplitAndGroundTruthComesWithIt) {
  // Pool: 6 database items, 2 queries, 3 training items (file order).
  Dataset d;
  d.features = torch::randn({11, 3});
  d.roles = torch::tensor({0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2}, torch::kUInt8);
  d.true_neighbors = torch::tensor({{5, 1}, {0, 2}}, torch::kInt64);
  DataOptions o;
  o.protocol = Protocol::euclidean;
  Split s = make_split(d, o);
  EXPECT_EQ(s.database.numel(), 6);
  EXPECT_TRUE(torch::equal(s.query, torch::tensor({6, 7}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(s.train, torch::tensor({8, 9, 10}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(s.true_neighbors, d.true_neighbors));
  o.num_train = 2;
  EXPECT_EQ(make_split(d, o).train.numel(), 2);
  // Without training files the database trains.
  d.roles = torch::tensor({0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0}, torch::kUInt8);
  o.num_train = 0;
  Split t = make_split(d, o);
  EXPECT_TRUE(torch::equal(t.train, t.database));
  EXPECT_EQ(t.database.numel(), 9);
  // Validation draws its queries from the database; the ground truth is then
  // not the evaluation's (it belongs to the query files).
  o.validation = true;
  o.num_queries = 3;
  Split v = make_split(d, o);
  EXPECT_EQ(v.query.numel(), 3);
  EXPECT_EQ(v.database.numel(), 6);
  EXPECT_FALSE(v.true_neighbors.defined());
  for (int64_t i : as_set(v.query)) EXPECT_TRUE(i < 6 || i > 7);
  // Ground truth naming a database item past the end.
  o.validation = false;
  d.true_neighbors = torch::tensor({{9, 1}, {0, 2}}, torch::kInt64);
  expect_error([&] { make_split(d, o); }, "does not fit the split");
}

// ---------------------------------------------------------------- real data

TEST(FashionMnist, PoolsSeventyThousandWithSevenThousandPerClass) {
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  if (!std::filesystem::exists(dir + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)";
  Config cfg = Config::load(std::string(HASHLAB_SOURCE_DIR) +
                            "/configs/_base_/datasets/fashion_mnist.yaml");
  DataOptions o = DataOptions::from_yaml(cfg.section("data"));
  Dataset d = load_dataset(o);
  EXPECT_EQ(d.features.sizes(), (std::vector<int64_t>{70000, 1, 28, 28}));
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_TRUE(torch::equal(torch::bincount(d.labels), torch::full({10}, 7000, torch::kInt64)));
  Split s = make_split(d, o);
  EXPECT_EQ(s.query.numel(), 1000);
  EXPECT_EQ(s.database.numel(), 69000);
}

}  // namespace
}  // namespace hashlab::data
