// What the jobs (app/train_job.h, app/job.h) read from a run's config besides
// the sections their owners read (data, model, optim, train, eval, dist), and
// the MethodContext they build from the data.
#pragma once

#include <cstdint>
#include <string>

#include "csrc/core/config.h"
#include "csrc/eval/metrics.h"
#include "datasets/dataset.h"
#include "trainers/method.h"

namespace hashlab {

// Top-level keys: name, seed, threads, device, method, output.
struct TopLevel {
  std::string name;  // default: the config file's stem
  int64_t seed = 0;
  std::string threads = "auto";  // "auto" or an integer
  std::string device = "auto";
  std::string method;
  bool save_codes = true;    // output.save_codes
  bool export_model = true;  // output.export
  // Strict: an unknown top-level key is an error naming it.
  static TopLevel from_yaml(const Config& cfg);
};

// `eval:` is the metric options (eval::EvalOptions) plus `batch_size` for encoding.
int64_t eval_batch_size(const Config& cfg);
eval::EvalOptions eval_options(Section s);

// What a method knows about its input, from the data it will see.
MethodContext make_context(const data::Dataset& ds, const data::DataOptions& dopts,
                           torch::Device device, uint64_t seed, int64_t total_steps);

}  // namespace hashlab
