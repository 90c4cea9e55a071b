// A run directory: its layout, in one place, for the train job, the report
// and the CLI.
//
//   runs/<name>/<timestamp>/
//     .lock                flock(2)ed by the process writing the directory
//     config.yaml          resolved config (after _base_ and overrides)
//     log.txt              console log
//     metrics.jsonl        {"event": "train"|"eval"|"fit"|..., ...} per line
//     checkpoints/last.pt  trainer checkpoint (atomic; trainers/checkpointer.h)
//     model/method.pt      trained method state (atomic)
//     model/hasher.pt      TorchScript hasher
//     codes/query.hlc, codes/database.hlc
//     report.html          curves and tables (app/report.h), rewritten at the end
#pragma once

#include <string>

namespace hashlab {

class RunDir {
 public:
  explicit RunDir(std::string dir) : dir_(std::move(dir)) {}

  const std::string& dir() const { return dir_; }
  std::string config() const { return file("config.yaml"); }
  std::string log() const { return file("log.txt"); }
  std::string metrics() const { return file("metrics.jsonl"); }
  std::string checkpoints() const { return file("checkpoints"); }
  std::string last_checkpoint() const { return file("checkpoints/last.pt"); }
  std::string model_dir() const { return file("model"); }
  std::string method_file() const { return file("model/method.pt"); }
  std::string hasher() const { return file("model/hasher.pt"); }
  std::string codes_dir() const { return file("codes"); }
  std::string query_codes() const { return file("codes/query.hlc"); }
  std::string database_codes() const { return file("codes/database.hlc"); }
  std::string report() const { return file("report.html"); }

  // Whether a run was started here (a config or metrics were written).
  bool holds_run() const;
  // Creates checkpoints/ and model/ (codes/ is made when codes are written).
  void create_layout() const;

  // The newest run of `name` under `root` (timestamps sort by name); "" if none.
  static std::string latest(const std::string& root, const std::string& name);

 private:
  std::string file(const char* rel) const;
  std::string dir_;
};

}  // namespace hashlab
