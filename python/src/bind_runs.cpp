// Runs from Python: a run directory read back (app/report.h's reader, the
// run's split and saved-code evaluation from app/job.h) and training in
// process (app/train_job.h, the job behind `hashlab train`).
//
// Ctrl-C: train() holds an InterruptGuard (csrc/core/signals.h) for the whole
// job, so SIGINT, at any point of it, is the CLI's first interrupt: the
// trainer finishes its step and writes the checkpoint, and the Python layer
// then raises KeyboardInterrupt naming the run directory.
#include <torch/extension.h>

#include <optional>

#include <yaml-cpp/yaml.h>

#include "app/job.h"
#include "app/report.h"
#include "app/train_job.h"
#include "csrc/core/config.h"
#include "csrc/core/error.h"
#include "csrc/core/signals.h"
#include "python/src/common.h"

namespace hashlab::python {

namespace {

// A YAML value as JSON, scalars typed as the config readers type them: a
// quoted scalar stays a string; otherwise null, bool, integer, float, string.
nlohmann::json yaml_to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Sequence: {
      auto a = nlohmann::json::array();
      for (const auto& e : n) a.push_back(yaml_to_json(e));
      return a;
    }
    case YAML::NodeType::Map: {
      auto o = nlohmann::json::object();
      for (const auto& kv : n) o[kv.first.Scalar()] = yaml_to_json(kv.second);
      return o;
    }
    case YAML::NodeType::Scalar:
      break;
  }
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;  // quoted
  if (s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  int64_t i;
  if (YAML::convert<int64_t>::decode(n, i)) return i;
  double d;
  if (YAML::convert<double>::decode(n, d)) return d;
  return s;
}

py::dict read_run(const std::string& dir) {
  report::RunData r;
  {
    py::gil_scoped_release release;
    r = report::read_run(dir);
  }
  py::dict d;
  d["dir"] = r.dir;
  d["method"] = r.method;
  d["bits"] = r.bits;
  d["protocol"] = r.protocol;
  d["status"] = r.status;
  d["starts"] = r.starts;
  d["final"] = to_python(r.final_eval);
  nlohmann::json config = nullptr;
  if (!r.config_text.empty()) {
    try {
      config = yaml_to_json(Config::from_string(r.config_text, dir + "/config.yaml").node());
    } catch (const Error& e) {
      r.notices.push_back(e.what());  // the report's reader says it too; config stays None
    }
  }
  d["config"] = to_python(config);
  d["notices"] = r.notices;
  return d;
}

py::dict run_split(const std::string& dir, const std::vector<std::string>& overrides) {
  RunSplit s;
  {
    py::gil_scoped_release release;
    s = load_run_split(dir, overrides, "Run.split()");
  }
  py::dict d;
  d["query"] = s.split.query;
  d["database"] = s.split.database;
  d["train"] = s.split.train;
  d["true_neighbors"] =
      s.split.true_neighbors.defined() ? py::cast(s.split.true_neighbors) : py::none();
  d["labels"] = s.dataset.labels.defined() ? py::cast(s.dataset.labels) : py::none();
  d["features"] = s.dataset.features.defined() ? py::cast(s.dataset.features) : py::none();
  d["protocol"] = s.data_options.protocol == Protocol::euclidean ? "euclidean" : "label";
  return d;
}

// (final metrics as JSON text or "", run directory, interrupted)
py::tuple train(const std::string& config_path, const std::string& config_text,
                const std::string& config_name, const std::vector<std::string>& overrides,
                const std::string& run_dir, const std::string& runs_root, bool resume) {
  TrainJobOptions o;
  o.config_path = config_path;
  o.config_text = config_text;
  o.config_name = config_name;
  o.overrides = overrides;
  o.run_dir = run_dir;
  o.runs_root = runs_root;
  o.resume = resume;
  std::string dir;
  nlohmann::json final;
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    InterruptGuard guard;  // the whole job: a Ctrl-C during setup is not lost
    try {
      final = run_train_job(o, &dir);
    } catch (const ExitStatus& e) {
      if (e.code != 130) throw;
      interrupted = true;
    }
    // An interrupt after the last step: the run finished, and Python still
    // hears of the Ctrl-C.
    interrupted = interrupted || interrupt_requested();
  }
  return py::make_tuple(final.is_null() ? py::object(py::none()) : to_python(final), dir,
                        interrupted);
}

}  // namespace

void bind_runs(py::module_& m) {
  m.def("read_run", &read_run, py::arg("dir"));
  m.def("run_split", &run_split, py::arg("dir"), py::arg("overrides"));
  m.def(
      "evaluate_run_codes",
      [](const std::string& dir, const std::vector<std::string>& overrides) {
        nlohmann::json r;
        {
          py::gil_scoped_release release;
          r = evaluate_saved_codes(dir, overrides, "Run.evaluate()");
        }
        return to_python(r);
      },
      py::arg("dir"), py::arg("overrides"));
  m.def("train", &train, py::arg("config_path"), py::arg("config_text"), py::arg("config_name"),
        py::arg("overrides"), py::arg("run_dir"), py::arg("runs_root"), py::arg("resume"));
}

}  // namespace hashlab::python
