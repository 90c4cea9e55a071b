// Small filesystem helpers shared by everything that writes results.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hashlab {

// An output file written atomically, in pieces: a temp file NAME.tmp.PID
// beside it, then in commit() fsync, a checked close and rename over NAME.
// Readers never see a half-written file (a reader that mapped the old file
// keeps it: rename gives NAME a new inode), and a crash leaves the old one.
// Missing parent directories are an error unless `parents` is create (the
// command line refuses an --out in a missing directory before that:
// tools/cli/main.cpp).
//
// A path that exists and is not a regular file (a character device such as
// /dev/null or /dev/full, a FIFO, a terminal) cannot be renamed over: it is
// written in place, every write and the close checked. A symlink to a regular
// file is followed: the file is replaced, the link kept.
//
// Every failure (disk full, no permission) is a hashlab::Error naming NAME;
// destroyed without commit() (an exception on the way), the temp file is
// removed and NAME is untouched.
class AtomicFile {
 public:
  enum class Parents { must_exist, create };
  explicit AtomicFile(std::string path, Parents parents = Parents::must_exist);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  void commit();
  const std::string& path() const { return path_; }

 private:
  void abandon();
  std::string path_, target_, tmp_;  // target_: path_ with symlinks followed; tmp_ empty: in place
  int fd_ = -1;
};

// Writes `data` to `path` atomically (an AtomicFile written at once),
// creating missing parent directories.
void atomic_write(const std::string& path, std::string_view data);

// Reads a whole file; errors name the file.
std::string read_file(const std::string& path);

// zlib's crc32 of `n` bytes, continuing from `crc` (0 starts one); any size
// (zlib's own takes at most 4 GiB a call on some builds).
uint32_t crc32_of(const void* data, size_t n, uint32_t crc = 0);

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
