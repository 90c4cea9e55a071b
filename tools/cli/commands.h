// CLI plumbing: each tools/cli/cmd_*.cpp registers its subcommands with
// HASHLAB_CLI_COMMAND; main() builds the CLI11 app from the registrations.
// (These files are compiled straight into the executable, so the static
// registrars always run.)
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace hashlab::cli {

using CommandAdder = std::function<void(CLI::App& app)>;

struct CommandRegistration {
  CommandRegistration(int order, CommandAdder adder);
};

// Returns the subcommand `name` of `app`, creating it on first use (so that
// `bench search` and `bench pq` can live in different files).
CLI::App* group(CLI::App& app, const std::string& name, const std::string& description);

// The command line as given (argv[1..]), for launchers that start copies of
// this program, and the same without `flag` and its value ("--flag V" or
// "--flag=V").
const std::vector<std::string>& raw_args();
void set_raw_args(int argc, char** argv);
std::vector<std::string> raw_args_without(const std::string& flag);

}  // namespace hashlab::cli

#define HL_CLI_CAT2(a, b) a##b
#define HL_CLI_CAT(a, b) HL_CLI_CAT2(a, b)
#define HASHLAB_CLI_COMMAND(order, adder)                           \
  static ::hashlab::cli::CommandRegistration HL_CLI_CAT(            \
      hashlab_cli_registration_, __LINE__)(order, adder)
