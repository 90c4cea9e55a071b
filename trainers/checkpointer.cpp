#include "trainers/checkpointer.h"

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <vector>

#include <fmt/ranges.h>

#include "csrc/core/checkpoint.h"
#include "csrc/core/error.h"
#include "csrc/core/json_text.h"
#include "csrc/core/logging.h"

namespace hashlab {
namespace fs = std::filesystem;

std::map<std::string, std::string> without_encode_options(std::map<std::string, std::string> model,
                                                          const Method& m) {
  for (const auto& k : m.encode_options()) model.erase("model." + k);
  return model;
}

std::string build_record(const Config& cfg, const Method& m, const MethodContext& ctx) {
  nlohmann::json j;
  j["method"] = m.name();
  j["bits"] = m.nbits();
  j["input_shape"] = ctx.input_shape;
  nlohmann::json model = nlohmann::json::object();
  for (const auto& [k, v] : without_encode_options(flat_keys(cfg, {"model"}), m)) model[k] = v;
  j["model"] = model;
  return json_text(j);
}

namespace {

std::map<std::string, std::string> build_fields(const nlohmann::json& j) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : j.items()) {
    if (k == "model" && v.is_object()) {
      for (const auto& [mk, mv] : v.items()) out[mk] = mv.is_string() ? mv.get<std::string>() : json_text(mv);
    } else {
      out[k] = v.is_string() ? v.get<std::string>() : json_text(v);
    }
  }
  return out;
}

nlohmann::json parse_build(const std::string& file, const std::string& saved) {
  try {
    return nlohmann::json::parse(saved);
  } catch (const nlohmann::json::exception&) {
    fail("{}: its build record is not valid JSON (damaged file?)", file);
  }
}

[[noreturn]] void refuse(const std::string& file, const std::string& what,
                         const std::vector<std::string>& d) {
  fail("{} was built with other settings than {} ({} field{} differ{}, file -> config): {}", file,
       what, d.size(), d.size() == 1 ? "" : "s", d.size() == 1 ? "s" : "",
       fmt::format("{}", fmt::join(d, "; ")));
}

// The fields of a build record that fix the model's shape: method, bits,
// input shape (the model options are compared separately).
std::map<std::string, std::string> shape_fields(const nlohmann::json& j) {
  auto all = build_fields(j);
  std::map<std::string, std::string> out;
  for (const char* k : {"method", "bits", "input_shape"})
    if (all.count(k)) out[k] = all[k];
  return out;
}

// The shape of every tensor in a method's archive (nested archives included).
void collect_shapes(torch::serialize::InputArchive& a, const std::string& prefix,
                    std::map<std::string, std::vector<int64_t>>& out) {
  for (const auto& key : a.keys()) {
    torch::Tensor t;
    torch::serialize::InputArchive sub;
    if (a.try_read(key, t)) {
      out[prefix + key] = t.sizes().vec();
    } else if (a.try_read(key, sub)) {
      collect_shapes(sub, prefix + key + ".", out);
    }
  }
}

// Every tensor that the freshly built `m` already has (parameters, fixed
// buffers: non-empty before training) must have the same shape in `saved`:
// an option that changes a parameter's shape is caught even where no record
// names it. Tensors a fit fills in (codebooks, projections, per-item state)
// are empty or absent in a fresh model and sized by the data: not compared.
void check_state_shapes(const std::string& file, torch::serialize::InputArchive& saved,
                        const Method& m, const std::string& what) {
  torch::serialize::InputArchive fresh;
  try {
    torch::serialize::OutputArchive fresh_out;
    m.save(fresh_out);
    std::stringstream buf;
    fresh_out.save_to(buf);
    fresh.load_from(buf);
  } catch (const c10::Error&) {
    // A fit method's state is undefined until it is fitted (ITQ, LSH): it has
    // no shapes to compare; its build record was checked.
    return;
  }
  std::map<std::string, std::vector<int64_t>> a, b;
  collect_shapes(saved, "", a);
  collect_shapes(fresh, "", b);
  std::map<std::string, std::string> in_file, in_config;
  auto show = [](const std::vector<int64_t>& v) { return fmt::format("[{}]", fmt::join(v, ", ")); };
  for (const auto& [k, shape] : b) {
    auto it = a.find(k);
    const bool empty = std::find(shape.begin(), shape.end(), 0) != shape.end();
    if (it == a.end() || empty) continue;
    in_file[k] = show(it->second);
    in_config[k] = show(shape);
  }
  auto d = key_differences(in_file, in_config);
  if (!d.empty()) refuse(file, what, d);
}

}  // namespace

Checkpointer::Checkpointer(std::string dir, std::string build_record)
    : dir_(std::move(dir)), build_(std::move(build_record)) {}

std::string Checkpointer::path() const {
  return dir_.empty() ? "" : (fs::path(dir_) / "last.pt").string();
}

void Checkpointer::write(torch::serialize::OutputArchive& state, int64_t step) {
  if (!build_.empty()) archive_write(state, "build", build_);
  write_checkpoint(path(), state);
  last_good_step_ = step;
}

void Checkpointer::read(const std::string& file, torch::serialize::InputArchive& state) const {
  read_checkpoint(file, state);
}

std::string Checkpointer::recovery_hint() const {
  return last_good_step_ >= 0 ? fmt::format("the last good checkpoint is {} (step {})", path(),
                                            last_good_step_)
                              : std::string("no checkpoint was written yet");
}

void Checkpointer::check_resumable(const std::string& file, const std::string& build,
                                   const std::map<std::string, std::string>& config_model,
                                   const Method& m) {
  torch::serialize::InputArchive a, state;
  read_checkpoint(file, a);
  if (!a.try_read("method", state)) fail("{}: checkpoint has no method state", file);
  std::string saved;
  archive_try_read_string(a, "build", saved);
  if (saved.empty()) {
    log().warn("{}: written by an older hashlab without a build record; only its tensor shapes "
               "are checked",
               file);
  } else {
    nlohmann::json js = parse_build(file, saved);
    auto d = key_differences(shape_fields(js), shape_fields(nlohmann::json::parse(build)));
    if (!d.empty()) refuse(file, "this run", d);
    std::map<std::string, std::string> ckpt_model;
    for (const auto& [k, v] : build_fields(js))
      if (k.rfind("model.", 0) == 0) ckpt_model[k] = v;
    d = key_differences(ckpt_model, config_model);
    if (!d.empty())
      refuse(file, "this run directory's config.yaml (a checkpoint of another run?)", d);
  }
  check_state_shapes(file, state, m, "this run");
}

void write_model_file(const std::string& path, const Method& m, const std::string& build) {
  torch::serialize::OutputArchive a, inner;
  m.save(inner);
  a.write("method", inner);
  archive_write(a, "method_name", m.name());
  archive_write(a, "nbits", static_cast<int64_t>(m.nbits()));
  archive_write(a, "build", build);
  write_checkpoint(path, a);
}

void read_model_file(const std::string& path, Method& m, const std::string& build,
                     const std::string& what) {
  torch::serialize::InputArchive a, inner;
  read_checkpoint(path, a);
  std::string name = archive_read_string(a, "method_name");
  if (name != m.name())
    fail("{}: holds a '{}' model but the run's config builds '{}'", path, name, m.name());
  std::string saved;
  archive_try_read_string(a, "build", saved);
  if (!a.try_read("method", inner)) fail("{}: no method state inside", path);
  // A file built differently from the run's config is refused: method, bits,
  // input shape, any model option, or any tensor's shape. A file written
  // before records existed is checked by its tensor shapes alone.
  if (saved.empty()) {
    log().warn("{}: written by an older hashlab without a build record; only its tensor shapes "
               "are checked against the config",
               path);
  } else {
    auto d = key_differences(build_fields(parse_build(path, saved)),
                             build_fields(nlohmann::json::parse(build)));
    if (!d.empty()) refuse(path, what, d);
  }
  check_state_shapes(path, inner, m, what);
  m.load(inner);
}

}  // namespace hashlab
