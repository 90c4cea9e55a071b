#include "app/run_dir.h"

#include <algorithm>
#include <filesystem>
#include <vector>

namespace hashlab {
namespace fs = std::filesystem;

std::string RunDir::file(const char* rel) const { return (fs::path(dir_) / rel).string(); }

bool RunDir::holds_run() const { return fs::exists(metrics()) || fs::exists(config()); }

void RunDir::create_layout() const {
  fs::create_directories(checkpoints());
  fs::create_directories(model_dir());
}

std::string RunDir::latest(const std::string& root, const std::string& name) {
  fs::path dir = fs::path(root) / name;
  if (!fs::is_directory(dir)) return "";
  std::vector<std::string> runs;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && fs::exists(RunDir(e.path().string()).config()))
      runs.push_back(e.path().string());
  if (runs.empty()) return "";
  std::sort(runs.begin(), runs.end());
  return runs.back();
}

}  // namespace hashlab
