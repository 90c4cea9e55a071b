// The checkpoint and model files, in one place: their layout, the build
// record every one carries, and the checks that refuse a file built from
// other settings than the run's.
//
// checkpoints/last.pt (csrc/core/checkpoint.h's framing; written atomically):
//   method          the method's state (Method::save)
//   method_name     its registered name
//   build           the build record (below)
//   step, epoch     where the loop stands (a fit: units done; epoch -1)
//   train_seconds   train() time so far, over every session
//   fit_finished    1 once a fit has run to its end
//   rng_cpu         LibTorch's CPU generator
//   optimizer | optimizer.<name>, optim_stage   (OptimizerSet; step methods)
// model/method.pt: method, method_name, nbits, build.
//
// The build record: what a model was built from (JSON: method, bits, the
// input shape, every model option but the encode-only ones), compared on
// resume, eval and export.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "csrc/core/config.h"
#include "trainers/method.h"

namespace hashlab {

// The build record of `m`, built from `cfg` for input `ctx`.
std::string build_record(const Config& cfg, const Method& m, const MethodContext& ctx);
// `model` (flattened model.* keys) without the options `m` declares encode-only.
std::map<std::string, std::string> without_encode_options(std::map<std::string, std::string> model,
                                                          const Method& m);

class Checkpointer {
 public:
  // `dir` empty: no checkpoints (tests, ranks other than 0).
  Checkpointer(std::string dir, std::string build_record);

  bool enabled() const { return !dir_.empty(); }
  // dir/last.pt ("" when disabled).
  std::string path() const;
  // Writes `state` (what Trainer::save_state gathered) with the build record
  // to path(), atomically; `step` becomes the last good one.
  void write(torch::serialize::OutputArchive& state, int64_t step);
  // Reads `file` (framing and checksums checked) into `state`, for
  // Trainer::load_state; resumed_at(step) then records where it stands.
  void read(const std::string& file, torch::serialize::InputArchive& state) const;
  void resumed_at(int64_t step) { last_good_step_ = step; }
  // The step of the last checkpoint written or loaded (-1: none yet).
  int64_t last_good_step() const { return last_good_step_; }
  // "the last good checkpoint is X (step S)" or "no checkpoint was written yet".
  std::string recovery_hint() const;

  // Before resuming from `file`: it must have been built as the run's
  // config.yaml says (`config_model`: its flattened model.* keys, encode-only
  // ones removed), and the model built now (`build`, `m`) must have its
  // tensor shapes. Refuses naming the fields that differ.
  static void check_resumable(const std::string& file, const std::string& build,
                              const std::map<std::string, std::string>& config_model,
                              const Method& m);

 private:
  std::string dir_;
  std::string build_;
  int64_t last_good_step_ = -1;
};

// model/method.pt: the trained method and its build record (atomic).
void write_model_file(const std::string& path, const Method& m, const std::string& build);
// Loads `m` from a model file, refusing one built differently from `build`
// (`what`: the config it is compared with, for the message).
void read_model_file(const std::string& path, Method& m, const std::string& build,
                     const std::string& what);

}  // namespace hashlab
