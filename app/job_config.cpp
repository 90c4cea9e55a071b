#include "app/job_config.h"

#include <filesystem>

#include "app/job.h"
#include "csrc/core/error.h"

namespace hashlab {
namespace fs = std::filesystem;

TopLevel TopLevel::from_yaml(const Config& cfg) {
  TopLevel t;
  Section root = cfg.root();
  std::string stem = cfg.path().empty() ? "run" : fs::path(cfg.path()).stem().string();
  t.name = stem;
  root.get("name", t.name);
  root.get("seed", t.seed, Range{0, 9.2e18});
  // threads: "auto" or an integer.
  if (root.has("threads")) {
    const YAML::Node& n = root.node()["threads"];
    if (!n.IsScalar()) fail("{}: expected 'auto' or an integer", root.where("threads"));
    t.threads = n.Scalar();
  }
  root.known({"threads"});
  root.get("device", t.device);
  t.method = root.require<std::string>("method");
  Section out = root.sub("output");
  out.get("save_codes", t.save_codes);
  out.get("export", t.export_model);
  out.finish();
  root.known({"data", "model", "optim", "train", "eval", "dist"});
  root.finish();
  if (t.name.empty() || t.name.find('/') != std::string::npos || t.name == "." || t.name == "..")
    fail("{}: '{}' is not usable as a directory name", root.where("name"), t.name);
  return t;
}

// Eval section: the metric options plus `batch_size` for encoding.
int64_t eval_batch_size(const Config& cfg) {
  int64_t bs = 256;
  Section e = cfg.section("eval");
  e.get("batch_size", bs, Range{1, 1e7});
  return bs;
}

eval::EvalOptions eval_options(Section s) {
  s.known({"batch_size"});
  return eval::EvalOptions::from_yaml(s);
}

MethodContext make_context(const data::Dataset& ds, const data::DataOptions& dopts,
                           torch::Device device, uint64_t seed, int64_t total_steps) {
  MethodContext ctx;
  ctx.input_shape = item_shape(ds, dopts);
  ctx.num_classes = ds.num_classes;
  ctx.multi_label = ds.multi_label;
  ctx.device = device;
  ctx.seed = seed;
  ctx.total_steps = total_steps;
  if (ds.is_image()) {
    ctx.input_scale = dopts.images.scale;
    ctx.mean = dopts.images.mean;
    ctx.std = dopts.images.std;
  } else {
    ctx.input_scale = 1.0;
  }
  return ctx;
}

}  // namespace hashlab
