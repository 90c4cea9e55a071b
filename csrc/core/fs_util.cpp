#include "csrc/core/fs_util.h"

#include <zlib.h>

#include <algorithm>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "csrc/core/error.h"

namespace hashlab {

AtomicFile::AtomicFile(std::string path, Parents parents) : path_(std::move(path)) {
  namespace fs = std::filesystem;
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    // A device, FIFO or terminal: nothing to rename over; written in place.
    fd_ = ::open(path_.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd_ < 0) fail("{}: cannot open for writing: {}", path_, std::strerror(errno));
    return;
  }
  // A symlink to a file (results.json -> /data/r.json, /dev/stdout redirected
  // to a file) is followed: the file it names is replaced, the link kept (and
  // nothing is created beside the link, which may be in /dev).
  target_ = path_;
  std::error_code lec;
  if (fs::is_symlink(fs::symlink_status(path_, lec))) {
    const fs::path resolved = fs::canonical(path_, lec);
    if (!lec) target_ = resolved.string();
  }
  fs::path target(target_);
  if (parents == Parents::create && target.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    if (ec)
      fail("{}: cannot create its directory {}: {}", path_, target.parent_path().string(),
           ec.message());
  }
  tmp_ = target_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("{}: cannot create temp file {}: {}", path_, tmp_, std::strerror(errno));
}

AtomicFile::~AtomicFile() { abandon(); }

void AtomicFile::abandon() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t n) {
  if (fd_ < 0) fail("{}: write after the file was committed or abandoned", path_);
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      abandon();
      fail("{}: write failed: {}", path_, std::strerror(err));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicFile::commit() {
  if (fd_ < 0) fail("{}: commit after the file was committed or abandoned", path_);
  const int fd = fd_;
  fd_ = -1;
  // close(2) reports what the file system deferred (NFS, quotas): checked.
  if (tmp_.empty()) {
    if (::close(fd) != 0) fail("{}: close failed: {}", path_, std::strerror(errno));
    return;
  }
  int err = ::fsync(fd) != 0 ? errno : 0;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(tmp_.c_str());
    fail("{}: fsync/close failed: {}", path_, std::strerror(err));
  }
  if (::rename(tmp_.c_str(), target_.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    fail("{}: rename from {} failed: {}", path_, tmp_, std::strerror(err));
  }
}

void atomic_write(const std::string& path, std::string_view data) {
  AtomicFile f(path, AtomicFile::Parents::create);
  f.write(data);
  f.commit();
}

uint32_t crc32_of(const void* data, size_t n, uint32_t crc) {
  uLong c = crc;
  const auto* b = static_cast<const Bytef*>(data);
  while (n > 0) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n, size_t{1} << 30));
    c = ::crc32(c, b, chunk);
    b += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(c);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open file", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: read error", path);
  return ss.str();
}

std::string timestamp_now() {
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%d-%H%M%S", &tm);
  return buf;
}

std::string make_unique_directory(const std::string& base) {
  namespace fs = std::filesystem;
  fs::path b(base);
  if (b.has_parent_path()) fs::create_directories(b.parent_path());
  for (int i = 1; i < 10000; ++i) {
    std::string p = i == 1 ? base : fmt::format("{}-{}", base, i);
    if (::mkdir(p.c_str(), 0755) == 0) return p;
    if (errno != EEXIST) fail("{}: cannot create directory: {}", p, std::strerror(errno));
  }
  fail("{}: 10,000 directories of that name exist already", base);
}

namespace {
bool process_alive(long pid) {
  if (pid <= 0) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}
}  // namespace

DirLock::DirLock(const std::string& dir, Mode mode, const std::string& what) {
  std::string path = (std::filesystem::path(dir) / ".lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0 && mode == Mode::shared) fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail("{}: cannot open the lock file: {}", path, std::strerror(errno));
  int op = (mode == Mode::exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB;
  int rc;
  while ((rc = ::flock(fd_, op)) != 0 && errno == EINTR) {
  }
  if (rc != 0) {
    int err = errno;
    std::string holder;
    if (err == EWOULDBLOCK) {
      char buf[512] = {0};
      ssize_t n = ::pread(fd_, buf, sizeof(buf) - 1, 0);
      holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    }
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK) fail("{}: cannot lock: {}", path, std::strerror(err));
    fail("{} is in use by another hashlab process ({}); {} refused: wait for it to finish or "
         "use another directory",
         dir, holder.empty() ? "a reader" : holder, what);
  }
  if (mode == Mode::exclusive) {
    std::string me = fmt::format("pid {}: {}\n", ::getpid(), what);
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) < 0) {
      // The lock holds regardless; only the message of a refused process suffers.
    }
  }
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

std::vector<std::string> remove_stale_temp_files(const std::string& dir) {
  namespace fs = std::filesystem;
  static const std::regex tmp_name(R"(.*\.tmp\.([0-9]{1,9})$)");
  std::vector<std::string> removed;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    std::string name = it->path().filename().string();
    std::smatch m;
    if (!std::regex_match(name, m, tmp_name)) continue;
    long pid = std::stol(m[1].str());
    if (pid == ::getpid() || process_alive(pid)) continue;
    if (fs::remove(it->path(), ec)) removed.push_back(it->path().string());
  }
  return removed;
}

}  // namespace hashlab
