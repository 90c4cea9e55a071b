#include "datasets/loader.h"

#include <ATen/Parallel.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "csrc/core/error.h"
#include "datasets/splits.h"

namespace hashlab::data {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

std::pair<int64_t, int64_t> shard_rows(int64_t len, int64_t rank, int64_t count) {
  return {len * rank / count, len * (rank + 1) / count};
}

uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b) {
  return splitmix64(splitmix64(splitmix64(seed) ^ a) ^ (b * 0xD6E8FEB86659FD93ull));
}

Loader::Loader(const Dataset& dataset, torch::Tensor indices, LoaderOptions options)
    : dataset_(dataset), o_(std::move(options)) {
  TORCH_CHECK(indices.defined() && indices.dim() == 1, "Loader: indices must be int64 [n]");
  indices_ = indices.to(torch::kCPU).to(torch::kInt64).contiguous();
  const int64_t n = indices_.size(0);
  if (o_.batch_size() <= 0) fail("loader: batch_size must be positive, got {}", o_.batch_size());
  if (n == 0) fail("loader: no items to iterate over");
  if (n > 0) {
    int64_t lo = indices_.min().item<int64_t>(), hi = indices_.max().item<int64_t>();
    if (lo < 0 || hi >= dataset_.size())
      fail("loader: index {} is outside the dataset of {} items", lo < 0 ? lo : hi,
           dataset_.size());
  }
  if (o_.drop_last() && n < o_.batch_size())
    fail("loader: drop_last with batch_size {} but only {} items: no batch at all",
         o_.batch_size(), n);
  steps_per_epoch_ = o_.drop_last() ? n / o_.batch_size() : (n + o_.batch_size() - 1) / o_.batch_size();
  if (!dataset_.image_paths.empty() && !have_image_decoder())
    fail("loader: {} is an image-list dataset, but hashlab was built without OpenCV "
         "(HASHLAB_WITH_OPENCV) and cannot decode image files",
         dataset_.name);
  if (!dataset_.features.defined() && dataset_.image_paths.empty())
    fail("loader: dataset {} has no features", dataset_.name);
  if (!dataset_.image_paths.empty() && o_.images().resize.empty() && o_.images().crop.empty())
    fail("loader: image files of {} need 'resize' or 'crop' so that batches have one size",
         dataset_.name);
  start_worker();
}

Loader::~Loader() { stop_worker(); }

torch::Tensor Loader::epoch_order(int64_t epoch) const {
  if (!o_.shuffle()) return indices_;
  std::lock_guard<std::mutex> lock(order_mu_);
  if (order_epoch_ != epoch) {
    std::vector<int64_t> perm = permutation(indices_.size(0), mix_seed(o_.seed(), 1, epoch));
    order_ = indices_.index_select(0, torch::tensor(perm, torch::kInt64));
    order_epoch_ = epoch;
  }
  return order_;
}

Batch Loader::batch_at(int64_t step) const {
  TORCH_CHECK(step >= 0, "Loader::batch_at: negative step ", step);
  Batch b;
  b.step = step;
  b.epoch = step / steps_per_epoch_;
  const int64_t in_epoch = step % steps_per_epoch_;
  const int64_t n = indices_.size(0);
  const int64_t begin = in_epoch * o_.batch_size();
  int64_t len = std::min(o_.batch_size(), n - begin);
  b.index = epoch_order(b.epoch).narrow(0, begin, len).clone();
  if (dataset_.labels.defined()) b.labels = dataset_.labels.index_select(0, b.index);

  const bool images = dataset_.is_image();
  std::mt19937_64 rng(mix_seed(o_.seed(), 2 + static_cast<uint64_t>(b.epoch), in_epoch));
  std::vector<ImageAugmentDraw> draws;
  if (images)
    for (int64_t i = 0; i < len; ++i) draws.push_back(draw_augment(o_.images(), o_.augment(), rng));
  if (o_.shard_count() > 1) {
    // This rank's rows of the global batch (index, labels, draws alike).
    const auto [lo, hi] = shard_rows(len, o_.shard_rank(), o_.shard_count());
    b.index = b.index.narrow(0, lo, hi - lo).clone();
    if (b.labels.defined()) b.labels = b.labels.narrow(0, lo, hi - lo).clone();
    if (images) draws = std::vector<ImageAugmentDraw>(draws.begin() + lo, draws.begin() + hi);
    len = hi - lo;
  }

  if (!dataset_.image_paths.empty()) {
#ifdef HASHLAB_WITH_OPENCV
    std::vector<torch::Tensor> decoded(static_cast<size_t>(len));
    const int64_t* idx = b.index.data_ptr<int64_t>();
    at::parallel_for(0, len, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        decoded[i] = decode_image(dataset_.image_paths[idx[i]], o_.images(), draws[i]);
    });
    b.x = torch::stack(decoded);
#endif
  } else if (images) {
    b.x = transform_image_batch(dataset_.features.index_select(0, b.index), o_.images(), draws);
  } else {
    b.x = dataset_.features.index_select(0, b.index).to(torch::kFloat32);
  }
  return b;
}

void Loader::start_worker() {
  stop_ = false;
  queue_.clear();
  if (o_.prefetch() <= 0) return;
  worker_ = std::thread([this, first = step_] { worker_loop(first); });
}

void Loader::stop_worker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  queue_.clear();
}

void Loader::worker_loop(int64_t first_step) {
  // This thread prepares batches on one core. at::parallel_for in a second
  // thread would build an OpenMP team of the global size beside the step's
  // own, competing with it for the same cores, and libgomp stops
  // spin-waiting between parallel regions once it manages more threads than
  // there are cores (the step's regions then pay a futex wake-up each):
  // resnet18 at 2 threads trained 1.3x slower with the worker's team.
  at::internal::lazy_init_num_threads();
#ifdef _OPENMP
  omp_set_num_threads(1);
#endif
  const bool pin = o_.device().is_cuda() && o_.pin_memory();
  for (int64_t s = first_step;; ++s) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || static_cast<int64_t>(queue_.size()) < o_.prefetch(); });
      if (stop_) return;
    }
    Item item{s, {}, nullptr};
    try {
      item.batch = batch_at(s);
      if (pin) {
        item.batch.x = item.batch.x.pin_memory();
        if (item.batch.labels.defined()) item.batch.labels = item.batch.labels.pin_memory();
        item.batch.index = item.batch.index.pin_memory();
      }
    } catch (...) {
      item.error = std::current_exception();
    }
    const bool failed = item.error != nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(item));
    }
    cv_.notify_all();
    if (failed) return;  // the consumer rethrows; nothing after it is valid
  }
}

Batch Loader::next() {
  Batch b;
  if (o_.prefetch() <= 0) {
    b = batch_at(step_);
  } else {
    Item item;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !queue_.empty(); });
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    cv_.notify_all();
    if (item.error) {
      // Keep the loader usable (seek() restarts the worker) and report.
      stop_worker();
      std::exception_ptr e = item.error;
      start_worker();
      std::rethrow_exception(e);
    }
    TORCH_CHECK(item.step == step_, "Loader: worker produced step ", item.step, ", expected ",
                step_);
    b = std::move(item.batch);
  }
  ++step_;
  if (o_.device() != torch::Device(torch::kCPU)) {
    const bool nb = o_.device().is_cuda() && o_.pin_memory();
    b.x = b.x.to(o_.device(), nb);
    if (b.labels.defined()) b.labels = b.labels.to(o_.device(), nb);
    b.index = b.index.to(o_.device(), nb);
  }
  return b;
}

void Loader::seek(int64_t step) {
  if (step < 0) fail("loader: cannot seek to negative step {}", step);
  stop_worker();
  step_ = step;
  start_worker();
}

}  // namespace hashlab::data
