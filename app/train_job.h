// The job behind `hashlab train`: config -> data -> split -> method ->
// train/fit -> evaluate -> codes -> TorchScript export -> report, recorded
// in a run directory (app/run_dir.h). app/train_job.cpp runs it as named
// stages, in this order:
//
//   resolve_config   the config (and on --resume the run's config.yaml with
//                    the overrides, refusing changes to method/data/seed)
//   read_options     every section this job owns, validated before any data
//   join_group       this process's rank in a data-parallel job (`dist:`)
//   open_run_dir     created and locked by rank 0 (nothing written yet)
//   build_data       dataset and split
//   build_method     the method, and a checkpoint of another build refused
//   agree            the ranks compare what they are about to train
//   start_records    config.yaml, log.txt, metrics.jsonl's "start"
//   train            the Trainer, resumed from the last checkpoint or new
//   finish           model file, final evaluation, codes, export, report
//
// Top-level config keys: app/job_config.h.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hashlab {

struct TrainJobOptions {
  std::string config_path;
  // Instead of config_path: the config itself as YAML (or JSON) text, named
  // `config_name` in messages (Python's hashlab.train with a dict). No `_base_`.
  std::string config_text, config_name = "<config>";
  std::vector<std::string> overrides;
  std::string run_dir;      // empty: runs/<name>/<timestamp>, or the latest one on resume
  std::string runs_root = "runs";
  bool resume = false;
  bool print_config = false;
};

// Runs `hashlab train`. Returns the final evaluation (empty when the method
// produced no evaluation, on ranks other than 0 and with print_config).
// Throws hashlab::Error on bad input. `run_dir` (when given) is set to the
// run directory as soon as it is chosen, so a caller knows it also when the
// job fails or is interrupted (ExitStatus(130)) afterwards.
nlohmann::json run_train_job(const TrainJobOptions& opts, std::string* run_dir = nullptr);

}  // namespace hashlab
