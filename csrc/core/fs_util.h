// Small filesystem helpers shared by everything that writes results.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace hashlab {

// Writes `data` to `path` atomically: a temp file beside it, fsync, rename.
// Readers never see a half-written file, and a crash leaves the old one.
void atomic_write(const std::string& path, std::string_view data);

// Reads a whole file; errors name the file.
std::string read_file(const std::string& path);

// "20261122-231501" in local time (run directory names).
std::string timestamp_now();

// Creates a new directory named `base`, or `base-2`, `base-3`, ... when that
// exists, with mkdir(2) (atomic: two processes never get the same one), and
// returns its path. Parents are created as needed.
std::string make_unique_directory(const std::string& base);

// An advisory lock on a directory (flock(2) on DIR/.lock) held for the life of
// the object; the kernel drops it when the process dies, so a killed run never
// leaves a stale lock. An exclusive holder writes its pid and `what` into the
// file, so a refused process can say who holds the directory. Writers take it
// exclusive, readers shared; a conflict fails at once (no waiting) with an
// error naming the directory and the holder.
class DirLock {
 public:
  enum class Mode { exclusive, shared };
  DirLock(const std::string& dir, Mode mode, const std::string& what);
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

// Removes the temp files of atomic writes ("NAME.tmp.PID") under `dir` whose
// process no longer runs (a SIGKILLed writer leaves them). Returns their paths.
// Call it with the directory's exclusive lock held.
std::vector<std::string> remove_stale_temp_files(const std::string& dir);

}  // namespace hashlab
