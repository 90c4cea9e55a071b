// A dataset in memory: the pool of all items (train + test files
// concatenated in the order given), its labels, and the options that built it.
//
//   DataOptions o = DataOptions::from_yaml(cfg.section("data"));
//   Dataset d = load_dataset(o);           // Fashion-MNIST: u8 [70000, 1, 28, 28]
//   Split s = make_split(d, o);            // datasets/splits.h
//   Loader train(d, s.train, {...});       // datasets/loader.h
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "csrc/core/protocol.h"
#include "csrc/core/config.h"
#include "datasets/readers/array.h"
#include "datasets/readers/bytes.h"
#include "datasets/gist.h"
#include "datasets/transforms.h"

namespace hashlab::data {

// What an item is for when the files give the split (data.roles).
enum class ItemRole : uint8_t { database = 0, query = 1, train = 2 };

struct Dataset {
  torch::Tensor features;  // u8 [N, C, H, W] images, or f32 [N, D] vectors; undefined for
                           // image lists (see image_paths)
  torch::Tensor labels;    // int64 [N] single-label, or uint8 [N, C] multi-hot; undefined
                           // when the data has no labels (Euclidean protocol)
  bool multi_label = false;
  int64_t num_classes = 0;               // 0 when unlabelled
  std::vector<std::string> image_paths;  // image-list datasets: decoded lazily by the Loader
  std::string name;
  torch::Tensor roles;           // uint8 [N] ItemRole per item (data.roles), else undefined
  torch::Tensor true_neighbors;  // int64 [Q, k] (data.ground_truth), else undefined

  int64_t size() const;
  bool is_image() const;  // u8 4-D features or image paths
  bool has_labels() const { return labels.defined(); }
};

struct DataOptions {
  std::string format = "idx";  // idx|cifar10|cifar100|fvecs|bvecs|ivecs|npy|image_list
  std::vector<std::string> files;   // feature files (image lists for image_list), pooled in order
  std::vector<std::string> labels;  // label files (idx or npy, by content), one per feature file
  // The directory relative file names above (and ground_truth) are taken in,
  // and image lists' image paths, which must lie inside it. Empty: the
  // working directory (image lists need one).
  std::string root;
  std::string name;                 // shown in logs; default: derived from the first file
  Protocol protocol = Protocol::label;  // label|euclidean
  int64_t queries_per_class = 100;  // label protocol
  int64_t num_queries = 1000;       // euclidean protocol (and multi-label data)
  int64_t train_per_class = 0;      // 0 = the whole database
  int64_t num_train = 0;            // 0 = all (after train_per_class)
  int64_t split_seed = 0;
  // A drawn split's database: "rest" (every item that is not a query),
  // "rest_without_train" (those minus the training set: DeepHash-pytorch's
  // cifar10) or "train" (the training set: its cifar10-2).
  std::string database = "rest";
  // The split given by the files instead of drawn: roles[i] says what
  // files[i] holds, "query", "database" or "train" (SIFT1M's query / base /
  // learn files; DeepHash-pytorch's test / database / train lists). The
  // training set is the database when no file is "train"; train_per_class and
  // num_train still subsample it.
  std::vector<ItemRole> roles;
  // Each query's nearest database items in distance order, as 0-based
  // positions in the database files taken in order (.ivecs, or an integer
  // .npy [Q, k]: SIFT1M's sift_groundtruth.ivecs). Needs roles and the
  // Euclidean protocol; the evaluation then uses it instead of computing the
  // neighbours (not under validation, whose queries are other items).
  std::string ground_truth;
  // Hold out the query set and evaluate on validation queries drawn from the
  // database instead (datasets/splits.h): for choosing hyperparameters.
  bool validation = false;
  // Keep only the items of these classes (single-label data), relabelled
  // 0..k-1 in the order given: a class-disjoint regime, e.g. choose settings
  // on [0, 1, 2, 3, 4] and check them on [5, 6, 7, 8, 9]. Empty: every class.
  std::vector<int64_t> classes;
  double max_file_gib = 8;          // per-file cap (decompressed), see readers/bytes.h
  VectorTransformOptions vectors;   // keys center, l2_normalize, max_norm_scale
  ImageTransformOptions images;     // keys scale, resize, crop, random_crop, flip, mean, std
  // `gist:` (a mapping of datasets/gist.h's keys, or true): the images are
  // replaced by their GIST descriptors, float [N, dim], when loaded (before
  // the vector transforms). Image lists are decoded for it.
  bool use_gist = false;
  GistOptions gist;

  // Reads the keys above from a `data:` section and rejects unknown ones.
  static DataOptions from_yaml(Section s);
};

// Reads every file, checks counts and label ranges, pools them in order and
// applies the vector transforms. Errors name the file and the problem.
Dataset load_dataset(const DataOptions& o);

// Array -> tensor of the same dtype and shape (copies the bytes).
torch::Tensor to_tensor(const Array& a);

// Reads an idx or npy file (chosen by content: npy magic, else idx), gzip or not.
Array read_array_auto(const std::string& path, uint64_t max_bytes = kDefaultMaxBytes);

// Reads a label file (idx or npy) as training does: int64 class ids [N]
// (integers, 0 <= id < 2^24) or uint8 multi-hot [N, C] (0 or 1); anything
// else (floats, negative or huge ids) is an error naming the file and the item.
torch::Tensor read_labels(const std::string& path, uint64_t max_bytes = kDefaultMaxBytes);

}  // namespace hashlab::data
