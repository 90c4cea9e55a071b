// Small filesystem helpers shared by everything that writes results.
#pragma once

#include <string>
#include <string_view>

namespace hashlab {

// Writes `data` to `path` atomically: a temp file beside it, fsync, rename.
// Readers never see a half-written file, and a crash leaves the old one.
void atomic_write(const std::string& path, std::string_view data);

// Reads a whole file; errors name the file.
std::string read_file(const std::string& path);

// "20261122-231501" in local time (run directory names).
std::string timestamp_now();

}  // namespace hashlab
