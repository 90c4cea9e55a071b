// hashlab: the command-line entry point. Subcommands live in cmd_*.cpp.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <vector>

#include <c10/util/Exception.h>
#include <fmt/format.h>

#include "csrc/core/device.h"
#include "csrc/core/error.h"
#include "tools/cli/commands.h"

namespace hashlab::cli {
namespace {
std::vector<std::pair<int, CommandAdder>>& registry() {
  static std::vector<std::pair<int, CommandAdder>> r;
  return r;
}
}  // namespace

CommandRegistration::CommandRegistration(int order, CommandAdder adder) {
  registry().emplace_back(order, std::move(adder));
}

CLI::App* group(CLI::App& app, const std::string& name, const std::string& description) {
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
    if (sub->get_name() == name) return sub;
  CLI::App* sub = app.add_subcommand(name, description);
  sub->require_subcommand(1);
  return sub;
}

namespace {
std::vector<std::string>& raw_args_storage() {
  static std::vector<std::string> a;
  return a;
}
}  // namespace

const std::vector<std::string>& raw_args() { return raw_args_storage(); }

void set_raw_args(int argc, char** argv) {
  raw_args_storage().assign(argv + 1, argv + argc);
}

std::vector<std::string> raw_args_without(const std::string& flag) {
  std::vector<std::string> out;
  const auto& a = raw_args();
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == flag) {
      ++i;  // and its value
      continue;
    }
    if (a[i].rfind(flag + "=", 0) == 0) continue;
    out.push_back(a[i]);
  }
  return out;
}

namespace {
// Every command's --out: an output file whose directory must exist (a typo
// in a path must not silently create directories). The file itself is
// written atomically by the command (AtomicFile).
std::string check_output_directory(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) return "";
  std::error_code ec;
  const auto st = fs::status(dir, ec);
  if (!fs::exists(st))
    return "directory " + dir.string() + " of " + path + " does not exist (create it first)";
  if (!fs::is_directory(st)) return dir.string() + " (in " + path + ") is not a directory";
  return "";
}

void check_out_options(CLI::App* app) {
  for (CLI::Option* o : app->get_options())
    if (o->get_name() == "--out")
      o->check(CLI::Validator(check_output_directory, "FILE", "output file"));
  for (CLI::App* sub : app->get_subcommands([](CLI::App*) { return true; }))
    check_out_options(sub);
}
}  // namespace

}  // namespace hashlab::cli

int main(int argc, char** argv) {
  hashlab::tune_host_allocator();
  CLI::App app{"hashlab: deep hashing on LibTorch (train, encode, search, evaluate, export)"};
  app.require_subcommand(1);
  hashlab::cli::set_raw_args(argc, argv);
  app.set_version_flag("--version", "hashlab 0.1.0");
  auto& reg = hashlab::cli::registry();
  std::stable_sort(reg.begin(), reg.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [order, adder] : reg) adder(app);
  hashlab::cli::check_out_options(&app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0: CLI11 prints them.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "hashlab: error: " << e.what() << " (see hashlab [COMMAND] --help)\n";
    return 2;
  } catch (const hashlab::ExitStatus& e) {
    return e.code;
  } catch (const hashlab::Error& e) {
    std::cerr << "hashlab: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "hashlab: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "hashlab: error: " << e.what() << "\n";
    return 1;
  }
  // What went to stdout (JSON results, often redirected to a file) is still
  // buffered: a failed flush (disk full) is an error, not a silent exit 0.
  errno = 0;
  std::cout.flush();
  if (!std::cout) {
    const int err = errno;
    std::cerr << "hashlab: error: standard output: write failed"
              << (err != 0 ? std::string(": ") + std::strerror(err) : std::string()) << "\n";
    return 1;
  }
  return 0;
}
