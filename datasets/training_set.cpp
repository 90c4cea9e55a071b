#include "datasets/training_set.h"

#include <vector>

#include "csrc/core/error.h"

namespace hashlab::data {

TrainingSet::TrainingSet(const Loader& stream) : stream_(stream) {
  index_ = stream.indices();
  if (stream.dataset().labels.defined())
    labels_ = stream.dataset().labels.index_select(0, index_);
  const int64_t n = index_.size(0);
  row_of_ = torch::full({n > 0 ? index_.max().item<int64_t>() + 1 : 0}, -1, torch::kLong);
  if (n > 0) row_of_.index_put_({index_}, torch::arange(n, torch::kLong));
}

torch::Tensor TrainingSet::features(const torch::Tensor& rows) const {
  HL_CHECK(rows.defined() && rows.dim() == 1 && rows.numel() > 0,
           "training set: features() needs a non-empty 1-D tensor of rows");
  torch::Tensor r = rows.to(torch::kCPU, torch::kLong);
  HL_CHECK(r.min().item<int64_t>() >= 0 && r.max().item<int64_t>() < size(),
           "training set: row {} is outside the {} training items",
           r.min().item<int64_t>() < 0 ? r.min().item<int64_t>() : r.max().item<int64_t>(),
           size());
  // The loader's own transforms, without augmentation, built on this thread.
  LoaderOptions o;
  o.batch_size(4096).shuffle(false).drop_last(false).augment(false).prefetch(0);
  o.images(stream_.options().images()).device(torch::kCPU);
  Loader all(stream_.dataset(), index_.index_select(0, r), o);
  std::vector<torch::Tensor> xs;
  for (int64_t s = 0; s < all.steps_per_epoch(); ++s) xs.push_back(all.batch_at(s).x);
  return torch::cat(xs);
}

const torch::Tensor& TrainingSet::x() const {
  if (!x_.defined()) x_ = features(torch::arange(size(), torch::kLong));
  return x_;
}

torch::Tensor TrainingSet::rows_of(const torch::Tensor& pool_index) const {
  torch::Tensor p = pool_index.to(torch::kCPU, torch::kLong);
  torch::Tensor none = torch::full_like(p, -1);
  if (row_of_.size(0) == 0) return none;
  torch::Tensor known = p.ge(0).logical_and(p.lt(row_of_.size(0)));
  return torch::where(known, row_of_.index_select(0, p.clamp(0, row_of_.size(0) - 1)), none);
}

torch::Tensor TrainingSet::epoch_rows(int64_t epoch) const {
  HL_CHECK(epoch >= 0, "training set: negative epoch {}", epoch);
  torch::Tensor order = stream_.epoch_order(epoch);
  const int64_t used = std::min<int64_t>(
      order.size(0), stream_.steps_per_epoch() * stream_.options().batch_size());
  return rows_of(order.narrow(0, 0, used));
}

}  // namespace hashlab::data
