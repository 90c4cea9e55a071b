// hashlab train -c CONFIG [key.path=value ...] [--run-dir DIR] [--resume] [--print-config]
#include <iostream>

#include "csrc/core/logging.h"
#include "tools/cli/commands.h"
#include "app/job.h"

namespace {

void add(CLI::App& app) {
  auto* c = app.add_subcommand(
      "train", "Train a method from a YAML config, then evaluate, save codes and export");
  auto o = std::make_shared<hashlab::TrainJobOptions>();
  c->add_option("-c,--config", o->config_path, "YAML config (with optional _base_ files)");
  c->add_option("overrides", o->overrides,
                "Dotted overrides, values parsed as YAML: model.bits=64 optim.lr=1e-3 "
                "data.files=[a.gz,b.gz]");
  c->add_option("--run-dir", o->run_dir,
                "Run directory (default runs/<name>/<timestamp>; with --resume, the run to "
                "continue)");
  c->add_option("--runs-root", o->runs_root, "Where default run directories go")
      ->capture_default_str();
  c->add_flag("--resume", o->resume,
              "Continue the last run of this config (or --run-dir) from checkpoints/last.pt");
  c->add_flag("--print-config", o->print_config, "Print the resolved config and exit");
  c->callback([o] {
    auto r = hashlab::run_train_job(*o);
    if (!r.empty() && !o->print_config) std::cout << r.dump() << "\n";
  });
}

}  // namespace

HASHLAB_CLI_COMMAND(10, add);
