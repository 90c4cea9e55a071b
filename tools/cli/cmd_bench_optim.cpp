// hashlab bench optim: the SGD step (momentum 0.9, weight decay 5e-4) on a
// backbone's parameters, LibTorch's torch::optim::SGD (what the Python peer of
// tools/bench_train.sh runs: the same per-tensor ops) against hashlab's
// FusedSGD (trainers/fused_sgd.h), in one process, alternated round by round,
// with the same random gradients; then the two parameter sets are compared.
#include <chrono>
#include <iostream>
#include <limits>
#include <memory>

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "csrc/core/error.h"
#include "csrc/core/json_text.h"
#include "models/backbones/backbone.h"
#include "tools/cli/commands.h"
#include "trainers/fused_sgd.h"

namespace {

struct Opts {
  std::string backbone = "resnet34";
  int64_t input_size = 64;
  int threads = 2, rounds = 5, steps = 10;
  bool json = false;
};

void run(const Opts& o) {
  HL_CHECK(o.threads >= 1 && o.rounds >= 1 && o.steps >= 1,
           "bench optim: --threads, --rounds and --steps must be >= 1");
  at::set_num_threads(o.threads);
  torch::manual_seed(0);
  hashlab::models::BackboneOptions bo;
  bo.name = o.backbone;
  bo.input_size = o.input_size;
  const auto net = hashlab::models::make_backbone(bo, {3, o.input_size, o.input_size});
  std::vector<torch::Tensor> ref, ours;
  int64_t numel = 0;
  for (const auto& p : net->parameters()) {
    ref.push_back(p.detach().clone().requires_grad_(true));
    ours.push_back(p.detach().clone().requires_grad_(true));
    ref.back().mutable_grad() = torch::randn_like(p);
    ours.back().mutable_grad() = ref.back().grad().clone();
    numel += p.numel();
  }
  torch::optim::SGDOptions so(0.003);
  so.momentum(0.9).weight_decay(5e-4);
  torch::optim::SGD torch_sgd(ref, so);
  hashlab::FusedSGD fused(ours, so);
  torch_sgd.step();  // first steps: the momentum buffers are allocated
  fused.step();
  auto timed = [&](torch::optim::Optimizer& opt) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < o.steps; ++s) opt.step();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / o.steps;
  };
  double best_torch = std::numeric_limits<double>::infinity(), best_fused = best_torch;
  for (int r = 0; r < o.rounds; ++r) {
    best_torch = std::min(best_torch, timed(torch_sgd));
    best_fused = std::min(best_fused, timed(fused));
  }
  double max_rel = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    max_rel = std::max(max_rel, ((ref[i] - ours[i]).abs().max() / ref[i].abs().max().clamp_min(1e-30))
                                    .item<double>());
  // Bytes each must move per step: FusedSGD reads p, g, b and writes b, p.
  const double fused_gb_s = 5.0 * 4 * numel / best_fused / 1e9;
  if (o.json) {
    nlohmann::json j = {{"backbone", o.backbone}, {"input_size", o.input_size},
                        {"threads", o.threads}, {"parameters", numel},
                        {"tensors", ref.size()}, {"torch_sgd_ms", best_torch * 1e3},
                        {"fused_sgd_ms", best_fused * 1e3}, {"ratio", best_torch / best_fused},
                        {"fused_gb_s", fused_gb_s}, {"max_relative_difference", max_rel}};
    std::cout << hashlab::json_text(j) << "\n";
  } else {
    std::cout << fmt::format(
        "SGD step (momentum 0.9, weight decay 5e-4), {} ({} parameters in {} tensors), {} threads, "
        "best of {} rounds of {} steps:\n"
        "  torch::optim::SGD  {:8.2f} ms/step\n"
        "  FusedSGD           {:8.2f} ms/step   {:.2f}x faster, {:.1f} GB/s of its 5 passes\n"
        "  parameters after {} steps each: max relative difference {:.2e}\n",
        o.backbone, numel, ref.size(), o.threads, o.rounds, o.steps, best_torch * 1e3,
        best_fused * 1e3, best_torch / best_fused, fused_gb_s, 1 + o.rounds * o.steps, max_rel);
  }
}

void add(CLI::App& app) {
  auto* g = hashlab::cli::group(app, "bench", "Benchmarks");
  auto* c = g->add_subcommand("optim", "The SGD step on a backbone's parameters: "
                                       "torch::optim::SGD vs hashlab's FusedSGD");
  auto o = std::make_shared<Opts>();
  c->add_option("--backbone", o->backbone, "backbone whose parameters are stepped")
      ->check(CLI::IsMember(hashlab::models::backbone_names()))
      ->capture_default_str();
  c->add_option("--input-size", o->input_size, "the backbone's input size")->capture_default_str();
  c->add_option("--threads", o->threads, "CPU threads")->check(CLI::Range(1, 4096))->capture_default_str();
  c->add_option("--rounds", o->rounds, "alternated rounds; the best of each is reported")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  c->add_option("--steps", o->steps, "steps per round")->check(CLI::Range(1, 100000))->capture_default_str();
  c->add_flag("--json", o->json, "one JSON object instead of text");
  c->callback([o] { run(*o); });
}

}  // namespace

HASHLAB_CLI_COMMAND(52, add);
