// The training set as a whole, for methods that need more than the batch
// stream: closed-form fits, codebook refreshes, per-item precomputation.
//
//   TrainingSet ts(train_loader);       // the Trainer builds it: trainer.training_set()
//   ts.x()            float [N, ...]    every training item after the transforms
//                                       (no augmentation), CPU, in split order;
//                                       built on first use and kept
//   ts.features(rows) float [n, ...]    the same for some rows only (nothing kept)
//   ts.labels()       labels of the items (int64 [N] or uint8 [N, C]); undefined if none
//   ts.index()        int64 [N]         each item's index in the dataset pool
//   ts.rows_of(pool)  int64 [n]         row of each pool index, -1 when not in the set
//   ts.epoch_rows(e)  int64 [n]         rows of epoch e of the batch stream, in the
//                                       order the loader yields them (drop_last applied)
//
// Row r of every tensor is the same item; a batch's `index` field maps to rows
// with rows_of, so per-item state computed once (kNN, tangents, assignments)
// is found for any batch.
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "datasets/loader.h"

namespace hashlab::data {

class TrainingSet {
 public:
  // `stream`: the loader over the training items; its dataset, indices and
  // image transforms define the set, its order defines epoch_rows.
  explicit TrainingSet(const Loader& stream);
  explicit TrainingSet(const Loader&& stream) = delete;  // it keeps a reference

  int64_t size() const { return index_.size(0); }
  const torch::Tensor& index() const { return index_; }
  const torch::Tensor& labels() const { return labels_; }
  bool has_labels() const { return labels_.defined(); }
  const torch::Tensor& x() const;
  torch::Tensor features(const torch::Tensor& rows) const;
  torch::Tensor rows_of(const torch::Tensor& pool_index) const;
  torch::Tensor epoch_rows(int64_t epoch) const;

 private:
  const Loader& stream_;
  torch::Tensor index_;
  torch::Tensor labels_;
  torch::Tensor row_of_;   // int64 [max pool index + 1]: row, or -1
  mutable torch::Tensor x_;
};

}  // namespace hashlab::data
