// hashlab error type: every user-facing failure (bad config, bad data file,
// bad CLI input) is a hashlab::Error whose message names the file, the
// field or offset, and the problem. The CLI prints it and exits non-zero.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace hashlab {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// Thrown by a command that has already reported what happened and only
// needs the process to exit with `code` (e.g. an interrupted training run).
struct ExitStatus : std::exception {
  explicit ExitStatus(int c) : code(c) {}
  int code;
  const char* what() const noexcept override { return "exit"; }
};

// fail("file {}: bad magic {:#x}", path, magic)
template <typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

#define HL_CHECK(cond, ...)              \
  do {                                   \
    if (!(cond)) ::hashlab::fail(__VA_ARGS__); \
  } while (0)

}  // namespace hashlab
