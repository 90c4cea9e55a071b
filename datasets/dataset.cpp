#include "datasets/dataset.h"

#include <chrono>
#include <algorithm>
#include <cstring>
#include <filesystem>

#include "csrc/core/error.h"
#include "csrc/core/logging.h"
#include "csrc/core/progress.h"
#include "csrc/core/strings.h"
#include "datasets/readers/cifar.h"
#include "datasets/readers/idx.h"
#include "datasets/readers/image_list.h"
#include "datasets/readers/npy.h"
#include "datasets/readers/vecs.h"

namespace hashlab::data {

int64_t Dataset::size() const {
  if (features.defined()) return features.size(0);
  return static_cast<int64_t>(image_paths.size());
}

bool Dataset::is_image() const {
  return !image_paths.empty() ||
         (features.defined() && features.dim() == 4 && features.scalar_type() == torch::kUInt8);
}

DataOptions DataOptions::from_yaml(Section s) {
  DataOptions o;
  s.get_choice("format", o.format,
               {"idx", "cifar10", "cifar100", "fvecs", "bvecs", "ivecs", "npy", "image_list"});
  s.get("files", o.files);
  s.get("labels", o.labels);
  s.get("root", o.root);
  s.get("name", o.name);
  std::string protocol = protocol_name(o.protocol);
  s.get_choice("protocol", protocol, {"label", "euclidean"});
  o.protocol = *parse_protocol(protocol);
  s.get("queries_per_class", o.queries_per_class, Range{0, 1e9});
  s.get("num_queries", o.num_queries, Range{0, 1e12});
  s.get("train_per_class", o.train_per_class, Range{0, 1e9});
  s.get("num_train", o.num_train, Range{0, 1e12});
  s.get("split_seed", o.split_seed);
  s.get_choice("database", o.database, {"rest", "rest_without_train", "train"});
  std::vector<std::string> roles;
  s.get("roles", roles);
  for (const auto& r : roles) {
    if (r != "query" && r != "database" && r != "train")
      fail("{}: unknown role '{}' (query, database or train)", s.where("roles"), r);
    o.roles.push_back(r == "query" ? ItemRole::query
                      : r == "train" ? ItemRole::train
                                     : ItemRole::database);
  }
  s.get("ground_truth", o.ground_truth);
  s.get("validation", o.validation);
  s.get("classes", o.classes, Range{0, (1 << 24) - 1});
  s.get("max_file_gib", o.max_file_gib, Range{1e-6, 1024});
  s.get("center", o.vectors.center);
  s.get("l2_normalize", o.vectors.l2_normalize);
  s.get("max_norm_scale", o.vectors.max_norm_scale, Range{0, 1e30});
  s.get("scale", o.images.scale, Range{1e-30, 1e30});
  s.get("resize", o.images.resize, Range{1, 1 << 16});
  s.get("crop", o.images.crop, Range{1, 1 << 16});
  s.get("random_crop", o.images.random_crop);
  s.get("flip", o.images.flip);
  s.get("mean", o.images.mean);
  s.get("std", o.images.std, Range{1e-30, 1e30});
  if (s.has("gist")) {
    if (s.node()["gist"].IsScalar()) {
      s.get("gist", o.use_gist);
    } else {
      o.use_gist = true;
      o.gist = GistOptions::from_yaml(s.sub("gist"));
    }
  }
  s.finish();
  if (o.files.empty()) fail("{}: at least one data file is needed", s.where("files"));
  // Relative file names are relative to root when one is given, so that a
  // benchmark's config names its files and one override moves them all.
  if (!o.root.empty()) {
    auto under_root = [&](std::string& f) {
      if (!f.empty() && std::filesystem::path(f).is_relative())
        f = (std::filesystem::path(o.root) / f).string();
    };
    for (auto& f : o.files) under_root(f);
    for (auto& f : o.labels) under_root(f);
    under_root(o.ground_truth);
  }
  if (o.images.resize.size() > 2 || o.images.crop.size() > 2)
    fail("{}: resize and crop take [size] or [height, width]", s.where("resize"));
  if (o.format == "image_list" && o.root.empty())
    fail("{}: format image_list needs a root directory", s.where("root"));
  if (!o.roles.empty()) {
    if (o.roles.size() != o.files.size())
      fail("{}: {} roles for {} files (one of query, database, train per file)", s.where("roles"),
           o.roles.size(), o.files.size());
    for (const auto& [role, name] : {std::pair{ItemRole::query, "query"},
                                     std::pair{ItemRole::database, "database"}})
      if (std::find(o.roles.begin(), o.roles.end(), role) == o.roles.end())
        fail("{}: no file has the role {}", s.where("roles"), name);
    if (s.has("database"))
      fail("{}: the files give the database (data.roles); remove it", s.where("database"));
    if (!o.validation)
      for (const char* k : {"queries_per_class", "num_queries"})
        if (s.has(k))
          fail("{}: the query files give the queries (data.roles); it is used only with "
               "validation: true",
               s.where(k));
  }
  if (!o.ground_truth.empty()) {
    if (o.roles.empty())
      fail("{}: a ground-truth file names database positions, so it needs data.roles (which "
           "files are the queries and the database)",
           s.where("ground_truth"));
    if (o.protocol != Protocol::euclidean)
      fail("{}: ground truth is for the Euclidean protocol (data.protocol: euclidean)",
           s.where("ground_truth"));
    if (!o.classes.empty())
      fail("{}: data.classes would renumber the database the ground truth refers to",
           s.where("ground_truth"));
  }
  return o;
}

torch::Tensor to_tensor(const Array& a) {
  torch::ScalarType t = torch::kUInt8;
  switch (a.dtype) {
    case Array::DType::u8: t = torch::kUInt8; break;
    case Array::DType::i32: t = torch::kInt32; break;
    case Array::DType::i64: t = torch::kInt64; break;
    case Array::DType::f32: t = torch::kFloat32; break;
  }
  torch::Tensor out = torch::empty(a.shape, torch::TensorOptions().dtype(t));
  TORCH_CHECK(static_cast<size_t>(out.nbytes()) == a.bytes.size(), "to_tensor: ", a.bytes.size(),
              " bytes for shape ", out.sizes());
  if (!a.bytes.empty()) std::memcpy(out.data_ptr(), a.bytes.data(), a.bytes.size());
  return out;
}

Array read_array_auto(const std::string& path, uint64_t max_bytes) {
  std::vector<uint8_t> raw = read_file_bytes(path, max_bytes);
  Bytes b = maybe_gunzip(raw.data(), raw.size(), path, max_bytes);
  if (b.size >= 6 && std::memcmp(b.data, "\x93NUMPY", 6) == 0)
    return parse_npy(b.data, b.size, path, max_bytes);
  return parse_idx(b.data, b.size, path, max_bytes);
}

namespace {

// Features of one file as the Dataset stores them.
torch::Tensor as_features(const Array& a, const std::string& file) {
  torch::Tensor t = to_tensor(a);
  if (a.dtype == Array::DType::u8 && a.shape.size() == 3) return t.unsqueeze(1);  // [N,1,H,W]
  if (a.dtype == Array::DType::u8 && a.shape.size() == 4) return t;               // [N,C,H,W]
  if (a.shape.size() == 2) return t.to(torch::kFloat32);                          // vectors
  fail("{}: features of type {} and shape [{}] are neither images (uint8 [N,H,W] or "
       "[N,C,H,W]) nor vectors ([N,D])",
       file, dtype_name(a.dtype), shape_string(a.shape, ','));
}

// Hashing needs finite features: NaN or inf would give identical or
// arbitrary codes far from where they came from. Named by file and item.
torch::Tensor checked_finite(torch::Tensor t, const std::string& file) {
  if (!t.is_floating_point() || t.numel() == 0) return t;
  auto bad = ~torch::isfinite(t.reshape({t.size(0), -1}));
  const int64_t nbad = bad.sum().item<int64_t>();
  if (nbad == 0) return t;
  auto rows = bad.any(1).nonzero().flatten();
  const int64_t item = rows[0].item<int64_t>();
  const int64_t col = bad[item].nonzero().flatten()[0].item<int64_t>();
  fail("{}: {} non-finite value{} (NaN or inf) in {} item{}; the first is item {}, component {} "
       "(= {}). Hashing needs finite features: fix or drop those items",
       file, nbad, nbad == 1 ? "" : "s", rows.size(0), rows.size(0) == 1 ? "" : "s", item, col,
       t.reshape({t.size(0), -1})[item][col].item<double>());
}

// Class ids beyond this are refused before anything is sized by them.
constexpr int64_t kMaxClasses = int64_t{1} << 24;  // as image lists

torch::Tensor checked_class_ids(torch::Tensor t, const std::string& file) {
  if (t.dim() != 1 || t.numel() == 0) return t;
  const int64_t mx = t.max().item<int64_t>();
  if (mx >= kMaxClasses)
    fail("{}: label {} at index {} is beyond the limit of {} classes (class ids are 0..C-1)",
         file, mx, t.argmax().item<int64_t>(), kMaxClasses);
  return t;
}

// int64 [N] or uint8 multi-hot [N, C], checked.
torch::Tensor as_labels(const Array& a, const std::string& file) {
  if (a.dtype == Array::DType::f32)
    fail("{}: labels must be integers, got float32", file);
  torch::Tensor t = to_tensor(a);
  if (a.shape.size() == 1) {
    t = t.to(torch::kInt64);
    if (t.numel() > 0 && t.min().item<int64_t>() < 0)
      fail("{}: label {} at index {} is negative", file, t.min().item<int64_t>(),
           t.argmin().item<int64_t>());
    return checked_class_ids(t, file);
  }
  if (a.shape.size() == 2) {
    if (t.numel() > 0 && (t.min().item<int64_t>() < 0 || t.max().item<int64_t>() > 1))
      fail("{}: multi-hot labels must be 0 or 1, found values in [{}, {}]", file,
           t.min().item<int64_t>(), t.max().item<int64_t>());
    return t.to(torch::kUInt8);
  }
  fail("{}: labels must be [N] or multi-hot [N, C], got shape [{}]", file,
       shape_string(a.shape, ','));
}

torch::Tensor pool(std::vector<torch::Tensor>& parts, const std::vector<std::string>& files,
                   const char* what) {
  for (size_t i = 1; i < parts.size(); ++i) {
    if (parts[i].dim() != parts[0].dim() ||
        parts[i].sizes().slice(1) != parts[0].sizes().slice(1) ||
        parts[i].scalar_type() != parts[0].scalar_type())
      fail("{}: {} of shape [{}] ({}) cannot be pooled with {} of shape [{}] ({})", files[i],
           what, shape_string(parts[i].sizes().vec(), ','), c10::toString(parts[i].scalar_type()),
           files[0], shape_string(parts[0].sizes().vec(), ','),
           c10::toString(parts[0].scalar_type()));
  }
  return parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
}

// data.classes: keeps the items of the listed classes, relabelled 0..k-1 in
// the order listed. A class that has no item is an error (a typo would
// otherwise leave a silently smaller problem).
void keep_classes(Dataset& d, const std::vector<int64_t>& classes, const std::string& file) {
  if (!d.labels.defined() || d.multi_label)
    fail("data.classes: needs single-label data, but {} {}", file,
         d.labels.defined() ? "has multi-hot labels" : "has no labels");
  std::vector<int64_t> map(static_cast<size_t>(d.num_classes), -1);
  for (size_t k = 0; k < classes.size(); ++k) {
    const int64_t c = classes[k];
    if (c >= d.num_classes)
      fail("data.classes: class {} is not in {} (its classes are 0..{})", c, file,
           d.num_classes - 1);
    if (map[static_cast<size_t>(c)] >= 0) fail("data.classes: class {} is listed twice", c);
    map[static_cast<size_t>(c)] = static_cast<int64_t>(k);
  }
  torch::Tensor new_label = torch::tensor(map).index_select(0, d.labels);
  torch::Tensor keep = (new_label >= 0).nonzero().flatten();
  torch::Tensor counts = torch::bincount(new_label.index_select(0, keep), {},
                                         static_cast<int64_t>(classes.size()));
  for (size_t k = 0; k < classes.size(); ++k)
    if (counts[static_cast<int64_t>(k)].item<int64_t>() == 0)
      fail("data.classes: class {} has no item in {}", classes[k], file);
  d.labels = new_label.index_select(0, keep).contiguous();
  d.num_classes = static_cast<int64_t>(classes.size());
  if (d.features.defined()) d.features = d.features.index_select(0, keep).contiguous();
  if (d.roles.defined()) d.roles = d.roles.index_select(0, keep).contiguous();
  if (!d.image_paths.empty()) {
    std::vector<std::string> paths;
    paths.reserve(static_cast<size_t>(keep.size(0)));
    for (int64_t i : std::vector<int64_t>(keep.data_ptr<int64_t>(),
                                          keep.data_ptr<int64_t>() + keep.size(0)))
      paths.push_back(std::move(d.image_paths[static_cast<size_t>(i)]));
    d.image_paths = std::move(paths);
  }
}

}  // namespace

torch::Tensor read_labels(const std::string& path, uint64_t max_bytes) {
  return as_labels(read_array_auto(path, max_bytes), path);
}

// data.ground_truth: int64 [Q, k], every id checked against `n_db`.
static torch::Tensor read_ground_truth(const std::string& path, int64_t n_query, int64_t n_db,
                                       uint64_t cap) {
  const Array a = ends_with(path, ".ivecs") ? read_vecs(path, VecsKind::ivecs, cap)
                                             : read_array_auto(path, cap);
  if (a.dtype == Array::DType::f32 || a.dtype == Array::DType::u8 || a.shape.size() != 2)
    fail("{}: ground truth must be integer ids [queries, k] (.ivecs, or an int32/int64 .npy), "
         "got {} [{}]",
         path, dtype_name(a.dtype), shape_string(a.shape, ','));
  torch::Tensor t = to_tensor(a).to(torch::kInt64);
  if (t.size(0) != n_query)
    fail("{}: ground truth for {} queries, but the query files hold {}", path, t.size(0), n_query);
  if (t.size(1) == 0) fail("{}: ground truth with no neighbours per query", path);
  const int64_t lo = t.min().item<int64_t>(), hi = t.max().item<int64_t>();
  if (lo < 0 || hi >= n_db) {
    const int64_t bad = (lo < 0 ? t.argmin() : t.argmax()).item<int64_t>();
    fail("{}: query {} lists database item {}, but the database files hold {} items (0..{})",
         path, bad / t.size(1), lo < 0 ? lo : hi, n_db, n_db - 1);
  }
  return t;
}

// data.gist: the images (in memory, or decoded from an image list) replaced
// by their GIST descriptors.
static void gist_features(Dataset& d, const DataOptions& o) {
  const std::string what = o.files[0];
  torch::Tensor images = d.features;
  if (!d.image_paths.empty()) {
#ifndef HASHLAB_WITH_OPENCV
    fail("{}: data.gist on an image list decodes the images, which needs OpenCV (not built in)",
         what);
#else
    ImageTransformOptions decode;
    decode.resize = {o.gist.image_size, o.gist.image_size};
    std::vector<torch::Tensor> all;
    all.reserve(d.image_paths.size());
    for (const auto& p : d.image_paths) all.push_back(decode_image(p, decode, {}));
    images = torch::stack(all);
    d.image_paths.clear();
#endif
  }
  if (!images.defined() || images.dim() != 4)
    fail("{}: data.gist computes descriptors of images [N, C, H, W], but the data are {}", what,
         images.defined() ? fmt::format("[{}]", fmt::join(images.sizes(), ", ")) : "not images");
  const int64_t n = images.size(0);
  // Updated per chunk: plain (non-terminal) lines about every tenth of the way.
  Progress bar(0, n, "img", 1, kGistChunk * std::max<int64_t>(1, n / (10 * kGistChunk)));
  const auto t0 = std::chrono::steady_clock::now();
  d.features = compute_gist(images, o.gist, [&](int64_t done) { bar.update(done, "GIST"); });
  bar.finish();
  log().info("GIST of {} images: {} dimensions in {:.1f} s", n, d.features.size(1),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

Dataset load_dataset(const DataOptions& o) {
  if (o.files.empty()) fail("data: no files given");
  const uint64_t cap = static_cast<uint64_t>(o.max_file_gib * double(uint64_t{1} << 30));
  Dataset d;
  d.name = !o.name.empty() ? o.name : std::filesystem::path(o.files[0]).parent_path().filename().string();
  if (d.name.empty()) d.name = o.files[0];
  std::vector<torch::Tensor> feats, labs;

  const bool own_labels = o.format == "cifar10" || o.format == "cifar100" ||
                          o.format == "image_list";
  if (own_labels && !o.labels.empty())
    fail("data: format {} carries its own labels; remove 'labels'", o.format);
  if (!own_labels && !o.labels.empty() && o.labels.size() != o.files.size())
    fail("data: {} feature files but {} label files (give one label file per feature file)",
         o.files.size(), o.labels.size());

  if (!o.roles.empty() && o.roles.size() != o.files.size())
    fail("data: {} roles for {} files", o.roles.size(), o.files.size());
  std::vector<torch::Tensor> roles;
  int64_t items_before = 0;
  for (size_t i = 0; i < o.files.size(); ++i) {
    const std::string& f = o.files[i];
    if (o.format == "idx" || o.format == "npy") {
      feats.push_back(checked_finite(
          as_features(o.format == "idx" ? read_idx(f, cap) : read_npy(f, cap), f), f));
    } else if (o.format == "cifar10" || o.format == "cifar100") {
      CifarData c = read_cifar(f, o.format == "cifar10" ? CifarKind::cifar10 : CifarKind::cifar100,
                               cap);
      feats.push_back(to_tensor(c.images));
      labs.push_back(to_tensor(c.labels));
    } else if (o.format == "fvecs" || o.format == "bvecs" || o.format == "ivecs") {
      VecsKind k = o.format == "fvecs"   ? VecsKind::fvecs
                   : o.format == "bvecs" ? VecsKind::bvecs
                                         : VecsKind::ivecs;
      feats.push_back(checked_finite(to_tensor(read_vecs(f, k, cap)).to(torch::kFloat32), f));
    } else if (o.format == "image_list") {
      ImageList l = read_image_list(f, o.root, int64_t{1} << 24, cap);
      if (!labs.empty() && (labs[0].dim() == 2) != l.multi_label)
        fail("{}: {} labels, but {} has {}", f, l.multi_label ? "multi-hot" : "single",
             o.files[0], labs[0].dim() == 2 ? "multi-hot" : "single");
      d.image_paths.insert(d.image_paths.end(), l.paths.begin(), l.paths.end());
      labs.push_back(checked_class_ids(to_tensor(l.labels), f));
    } else {
      fail("data: unknown format '{}'", o.format);
    }
    if (!own_labels && !o.labels.empty()) {
      torch::Tensor l = read_labels(o.labels[i], cap);
      if (l.size(0) != feats.back().size(0))
        fail("{}: {} labels, but {} has {} items", o.labels[i], l.size(0), f,
             feats.back().size(0));
      labs.push_back(l);
    }
    const int64_t items = feats.empty() ? static_cast<int64_t>(d.image_paths.size())
                                        : items_before + feats.back().size(0);
    if (!o.roles.empty())
      roles.push_back(torch::full({items - items_before}, static_cast<int64_t>(o.roles[i]),
                                  torch::kUInt8));
    items_before = items;
  }
  if (!roles.empty()) d.roles = torch::cat(roles);
  if (!feats.empty()) d.features = pool(feats, o.files, "features");
  if (!labs.empty()) {
    d.labels = pool(labs, own_labels ? o.files : o.labels, "labels");
    d.multi_label = d.labels.dim() == 2;
    d.num_classes = d.multi_label ? d.labels.size(1)
                    : d.labels.numel() ? d.labels.max().item<int64_t>() + 1
                                       : 0;
  }
  if (!o.classes.empty()) keep_classes(d, o.classes, o.labels.empty() ? o.files[0] : o.labels[0]);
  if (!o.ground_truth.empty()) {
    if (!d.roles.defined()) fail("data.ground_truth: needs data.roles");
    d.true_neighbors = read_ground_truth(
        o.ground_truth, (d.roles == static_cast<int64_t>(ItemRole::query)).sum().item<int64_t>(),
        (d.roles == static_cast<int64_t>(ItemRole::database)).sum().item<int64_t>(), cap);
  }
  if (o.use_gist) gist_features(d, o);
  if (d.features.defined() && d.features.dim() == 2) {
    const auto& v = o.vectors;
    if (v.center || v.l2_normalize || v.max_norm_scale > 0)
      d.features = apply_vector_transforms(d.features, v);
  }
  return d;
}

}  // namespace hashlab::data
