// Training helpers shared by the method tests: an uninterrupted run, or a run
// interrupted (as by SIGINT) after a given step and resumed by a freshly built
// method from its checkpoint, so a test can compare the two bit for bit.
#pragma once

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>

#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "csrc/core/device.h"
#include "csrc/core/error.h"
#include "csrc/core/signals.h"
#include "datasets/loader.h"
#include "trainers/trainer.h"

namespace hashlab::testing {

// 200 Gaussian 16-dim items with labels in 0..7 (seed 5): the trainer tests' data.
inline data::Dataset toy_dataset() {
  data::Dataset d;
  auto g = at::make_generator<at::CPUGeneratorImpl>(5);
  d.features = at::randn({200, 16}, g, torch::TensorOptions().dtype(torch::kFloat32));
  d.labels = at::randint(0, 8, {200}, g, torch::TensorOptions().dtype(torch::kLong));
  d.num_classes = 8;
  d.name = "toy";
  return d;
}

// Requests an interrupt after step `at` (the trainer then checkpoints and exits 130).
struct InterruptAt : TrainerHook {
  int64_t at;
  explicit InterruptAt(int64_t a) : at(a) {}
  void after_step(Trainer& t, const LossMap&) override {
    if (t.step() == at) request_interrupt(SIGINT);
  }
};

// Trains make() on `items` of `ds` in `dir`: straight through when
// interrupt_at <= 0; else interrupted after step interrupt_at, then a new
// make() resumes from dir/last.pt (with another global seed, so nothing but
// the checkpoint carries the state) and finishes. Returns the method that
// finished.
inline std::unique_ptr<Method> train_or_resume(const std::function<std::unique_ptr<Method>()>& make,
                                               const data::Dataset& ds, const torch::Tensor& items,
                                               const data::LoaderOptions& loader,
                                               const TrainOptions& train, const OptimOptions& optim,
                                               const std::filesystem::path& dir,
                                               int64_t interrupt_at) {
  seed_everything(0);
  auto m = make();
  {
    data::Loader l(ds, items, loader);
    Trainer t(*m, &l, train, optim, torch::kCPU, dir.string(), nullptr);
    if (interrupt_at > 0) t.add_hook(std::make_shared<InterruptAt>(interrupt_at));
    try {
      t.train();
    } catch (const ExitStatus& e) {
      EXPECT_EQ(e.code, 130);
    }
  }
  if (interrupt_at <= 0) return m;
  seed_everything(99);
  auto r = make();
  data::Loader l(ds, items, loader);
  Trainer t(*r, &l, train, optim, torch::kCPU, dir.string(), nullptr);
  t.resume((dir / "last.pt").string());
  EXPECT_EQ(t.step(), interrupt_at);
  t.train();
  return r;
}

// Loads the archive `out` into `m` through memory, as a checkpoint file would
// (a method's saved state, or one a test wrote by hand, e.g. an older format).
inline void load_archive(torch::serialize::OutputArchive& out, Method& m) {
  std::ostringstream buf;
  out.save_to(buf);
  torch::serialize::InputArchive in;
  std::istringstream ibuf(buf.str());
  in.load_from(ibuf);
  m.load(in);
}

}  // namespace hashlab::testing
