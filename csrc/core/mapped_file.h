// A file memory-mapped whole (copy-on-write, MAP_PRIVATE) that survives being
// changed on disk while it is read.
//
// A mapping reads the file's pages as they are now, not as they were when it
// was made: when another process truncates the file (`truncate`, or `cp NEW
// FILE`, which truncates the same inode and rewrites it), every access to a
// page past the new end raises SIGBUS, which kills the process without a
// message; a page rewritten in place is read with its new bytes, silently
// mixing two files. (Writers that replace files by rename, as every hashlab
// writer does, leave the old inode and so the mapping intact.)
//
// So every MappedFile is registered with a process-wide SIGBUS handler. When a
// read faults inside a registered mapping, the handler maps anonymous zero
// pages over the rest of it (mmap MAP_FIXED | MAP_ANONYMOUS: the faulting read
// is retried and reads zeros), marks the mapping as changed and returns; the
// code that reads the mapping (a search scanning it on many threads) needs no
// change and never dies of the signal. A fault outside every registered
// mapping is handed to the previous handler (by default: the process dies as
// it would have). Readers then ask changed() (or check_unchanged()) after
// they are done: it is true after such a fault, or when the file's size or
// modification time differ from when it was mapped (a rewrite in place that
// did not fault), and the reader fails naming the file instead of returning
// what it computed from a file that changed under it.
//
// Limits: a rewrite in place that keeps the size and lands within the same
// file-system timestamp tick as the file's previous modification is not seen
// (the payload checksum is checked at load, not after every search).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace hashlab {

class MappedFile {
 public:
  // Maps `path` whole (an empty file maps nothing: size() 0). Errors
  // (hashlab::Error) start with "`what` `path`: ".
  static std::shared_ptr<MappedFile> open(const std::string& path, const std::string& what);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // The bytes; writable (copy-on-write: writes never reach the file).
  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Whether the file changed on disk since it was mapped: a read faulted past
  // its end (those reads saw zeros), or its size or modification time differ.
  bool changed() const;
  // hashlab::Error "`what` `path`: changed on disk while it was read ..."
  // when changed(); `during` says what was going on ("during the search").
  void check_unchanged(const std::string& during) const;

 private:
  MappedFile() = default;
  std::string path_, what_;
  void* addr_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;
  int slot_ = -1;  // in the SIGBUS registry; -1: read into memory, not mapped
  int64_t mtime_ns_at_open_ = 0;
  // changed(), with the file's size now (-1: fstat failed).
  bool changed(int64_t& size_now) const;
};

}  // namespace hashlab
