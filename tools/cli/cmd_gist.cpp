// hashlab data gist INPUT... --format F --out OUT.npy|.fvecs [--image-size 32]
//     [--orientations 8,8,8,8] [--blocks 4] [--colour gray|rgb] [--threads N]
// GIST descriptors (datasets/gist.h) of every image of the inputs (idx,
// CIFAR, npy [N, C, H, W] or [N, H, W], image lists), pooled in order, written
// as float32 [N, dim] (.npy) or .fvecs, with a progress bar.
#include <iostream>
#include <memory>

#include "csrc/core/device.h"
#include "csrc/core/error.h"
#include "csrc/core/strings.h"
#include "datasets/array_files.h"
#include "datasets/dataset.h"
#include "datasets/gist.h"
#include "tools/cli/commands.h"

namespace hashlab::cli {
namespace {

struct GistOpts {
  std::vector<std::string> inputs;
  std::string format = "idx", root, out;
  data::GistOptions gist;
  int threads = 0;
};

void run(const GistOpts& o) {
  if (o.threads > 0) set_threads(o.threads);
  data::DataOptions d;
  d.format = o.format;
  d.files = o.inputs;
  d.root = o.root;
  d.use_gist = true;
  d.gist = o.gist;
  if (o.format == "image_list" && o.root.empty())
    fail("--root: image lists need the directory their paths are relative to");
  if (o.format == "fvecs" || o.format == "bvecs" || o.format == "ivecs")
    fail("--format {}: GIST describes images; {} files hold vectors", o.format, o.format);
  const auto ds = data::load_dataset(d);
  data::write_feature_file(o.out, ds.features);
  std::cout << fmt::format("wrote {} GIST descriptors of {} dimensions to {}\n",
                           ds.features.size(0), ds.features.size(1), o.out);
}


void add(CLI::App& app) {
  auto* g = group(app, "data", "Dataset files: inspect them, compute GIST descriptors");
  auto o = std::make_shared<GistOpts>();
  auto* c = g->add_subcommand(
      "gist", "GIST descriptors (LMgist: prefilter, Gabor bank, block averages) of image files");
  c->add_option("inputs", o->inputs, "image files (pooled in order)")->required();
  c->add_option("--format", o->format, "idx, cifar10, cifar100, npy or image_list")
      ->check(CLI::IsMember({"idx", "cifar10", "cifar100", "npy", "image_list"}))
      ->capture_default_str();
  c->add_option("--root", o->root, "image lists: the directory their paths are relative to");
  c->add_option("--out", o->out, "descriptors: .npy (float32 [N, dim]) or .fvecs")
      ->required()
      ->check(CLI::Validator(
          [](std::string& s) {
            return ends_with(s, ".npy") || ends_with(s, ".fvecs") ? "" : "write .npy or .fvecs";
          },
          "FILE", "npy or fvecs"));
  c->add_option("--image-size", o->gist.image_size, "side the images are resized to")
      ->check(CLI::Range(8, 4096))
      ->capture_default_str();
  c->add_option("--orientations", o->gist.orientations,
                "orientations per scale (default 8,8,8,8 gray; 8,8,4 rgb)")
      ->delimiter(',')
      ->check(CLI::Range(1, 64));
  c->add_option("--blocks", o->gist.blocks, "averaging grid: blocks x blocks")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  c->add_option("--prefilter-fc", o->gist.prefilter_fc, "LMgist's fc_prefilt")
      ->check(CLI::Range(1e-3, 1e3))
      ->capture_default_str();
  c->add_option("--boundary", o->gist.boundary, "symmetric padding before the Gabor filters")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  c->add_option("--colour", o->gist.colour, "gray (channel mean; 512-d) or rgb (960-d)")
      ->check(CLI::IsMember({"gray", "rgb"}))
      ->capture_default_str();
  c->add_option("--threads", o->threads, "CPU threads (0 = all)")->check(CLI::Range(0, 4096));
  c->callback([o] {
    if (o->gist.blocks > o->gist.image_size)
      fail("--blocks {} do not fit --image-size {}", o->gist.blocks, o->gist.image_size);
    run(*o);
  });
}

}  // namespace
}  // namespace hashlab::cli

HASHLAB_CLI_COMMAND(81, hashlab::cli::add);
