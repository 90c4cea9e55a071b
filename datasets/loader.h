// Batched, deterministic, resumable iteration over a subset of a Dataset.
//
//   Loader train(dataset, split.train, LoaderOptions().batch_size(256).seed(7));
//   train.seek(resumed_step);              // same batches as an uninterrupted run
//   Batch b = train.next();                // b.x float on the device
//
// Step s of the infinite stream is batch b = s % steps_per_epoch() of epoch
// e = s / steps_per_epoch(). The order of epoch e is permutation(n,
// mix(seed, e)) when shuffling (identity otherwise), and the random crops /
// flips of step s come from an engine seeded by mix(seed, e, b): a batch is a
// pure function of (dataset, indices, options, step), whatever the thread
// timing or the order of seek() calls.
//
// Batch.x: images u8 -> float / scale -> transforms (datasets/transforms.h),
// [B, C, h, w]; vectors f32 [B, D] as stored. Image-list datasets decode their
// files with OpenCV in the loader's worker thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

#include <torch/torch.h>

#include "datasets/dataset.h"
#include "datasets/transforms.h"

namespace hashlab::data {

struct LoaderOptions {
  TORCH_ARG(int64_t, batch_size) = 64;
  TORCH_ARG(bool, shuffle) = true;
  // Drop the last, short batch of each epoch (so every batch has batch_size rows).
  TORCH_ARG(bool, drop_last) = false;
  TORCH_ARG(uint64_t, seed) = 0;
  // Batches prepared ahead by a background thread; 0 = prepare inside next().
  TORCH_ARG(int64_t, prefetch) = 2;
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  // Pinned host memory + non_blocking copies; only used when device is CUDA.
  TORCH_ARG(bool, pin_memory) = true;
  // Random crop / flip (training); off gives centred crops, no flips (evaluation).
  TORCH_ARG(bool, augment) = true;
  TORCH_ARG(ImageTransformOptions, images) = {};
  // Data-parallel training: this process is rank `shard_rank` of
  // `shard_count`. Batch s is still built as the whole (global) batch of
  // batch_size rows, the same as one process would draw (order, augmentation
  // draws), and this rank keeps rows [len * r / N, len * (r + 1) / N).
  TORCH_ARG(int64_t, shard_rank) = 0;
  TORCH_ARG(int64_t, shard_count) = 1;
};

struct Batch {
  torch::Tensor x;       // float [B, ...] on the device
  torch::Tensor labels;  // int64 [B] or uint8 [B, C] on the device; undefined if unlabelled
  torch::Tensor index;   // int64 [B]: pool indices (on the device)
  int64_t epoch = 0;
  int64_t step = 0;      // position in the stream (0-based)
};

class Loader {
 public:
  // `indices`: int64 [n] pool indices this loader iterates over.
  Loader(const Dataset& dataset, torch::Tensor indices, LoaderOptions options = {});
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The batch at the current step; then advances by one (epochs never end).
  Batch next();
  // Positions the stream so that the next next() returns batch `step`.
  void seek(int64_t step);
  int64_t step() const { return step_; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  int64_t size() const { return indices_.size(0); }
  const Dataset& dataset() const { return dataset_; }
  const torch::Tensor& indices() const { return indices_; }  // int64 [n], CPU
  const LoaderOptions& options() const { return o_; }

  // The batch at `step`, built on the calling thread, on the CPU (what
  // next() would return for that step, before the device copy).
  Batch batch_at(int64_t step) const;
  // Pool indices of epoch `epoch` in iteration order (int64 [n]).
  torch::Tensor epoch_order(int64_t epoch) const;

 private:
  void start_worker();
  void stop_worker();
  void worker_loop(int64_t first_step);

  Dataset dataset_;
  torch::Tensor indices_;
  // The order of the most recent epoch asked for (one permutation per epoch,
  // not per batch); guarded because batch_at may run on the worker and the
  // caller at once.
  mutable std::mutex order_mu_;
  mutable int64_t order_epoch_ = -1;
  mutable torch::Tensor order_;
  LoaderOptions o_;
  int64_t steps_per_epoch_ = 0;
  int64_t step_ = 0;

  struct Item {
    int64_t step;
    Batch batch;
    std::exception_ptr error;
  };
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;
};

// Rows [lo, hi) of `len` that rank `rank` of `count` keeps (data-parallel
// shards of a global batch; the trainer cuts random draws the same way).
std::pair<int64_t, int64_t> shard_rows(int64_t len, int64_t rank, int64_t count);

// splitmix64-based mixing of a seed with stream coordinates.
uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b = 0);

}  // namespace hashlab::data
