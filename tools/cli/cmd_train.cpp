// hashlab train -c CONFIG [key.path=value ...] [--run-dir DIR] [--resume] [--print-config]
//               [--nproc N]   (N local ranks of a data-parallel job, csrc/core/distributed.h)
#include <iostream>

#include "csrc/core/distributed.h"
#include "csrc/core/error.h"
#include "csrc/core/json_text.h"
#include "csrc/core/logging.h"
#include "tools/cli/commands.h"
#include "app/train_job.h"

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
  auto nproc = std::make_shared<int>(1);
  c->add_option("--nproc", *nproc,
                "Start N local processes training one model data-parallel (c10d Gloo; "
                "train.batch_size is the global batch). Under torchrun's RANK/WORLD_SIZE/"
                "MASTER_ADDR/MASTER_PORT this process is one rank")
      ->check(CLI::Range(1, 1024));
  c->callback([o, nproc] {
    if (*nproc > 1 && !o->print_config && !hashlab::dist::DistEnv::from_env().distributed()) {
      const int rc = hashlab::dist::launch_local(*nproc, hashlab::cli::raw_args_without("--nproc"));
      if (rc != 0) throw hashlab::ExitStatus(rc);
      return;
    }
    auto r = hashlab::run_train_job(*o);
    if (!r.empty() && !o->print_config) std::cout << hashlab::json_text(r) << "\n";
  });
}

}  // namespace

HASHLAB_CLI_COMMAND(10, add);
