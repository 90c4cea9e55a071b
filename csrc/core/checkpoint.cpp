#include "csrc/core/checkpoint.h"


#include <cstring>

#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"

namespace hashlab {
namespace {

constexpr char kMagic[8] = {'H', 'L', 'C', 'K', 'P', 'T', '\r', '\n'};
constexpr size_t kHeader = 32;

template <typename T>
void put(std::string& s, size_t off, T v) {
  std::memcpy(&s[off], &v, sizeof(T));
}
template <typename T>
T get(const std::string& s, size_t off) {
  T v;
  std::memcpy(&v, &s[off], sizeof(T));
  return v;
}

}  // namespace

void write_checkpoint(const std::string& path, torch::serialize::OutputArchive& archive) {
  std::string payload;
  archive.save_to([&](const void* data, size_t n) -> size_t {
    payload.append(static_cast<const char*>(data), n);
    return n;
  });
  std::string out(kHeader, '\0');
  std::memcpy(&out[0], kMagic, 8);
  put<uint32_t>(out, 8, kCheckpointVersion);
  put<uint32_t>(out, 12, 0);
  put<uint64_t>(out, 16, payload.size());
  put<uint32_t>(out, 24, crc32_of(payload.data(), payload.size()));
  put<uint32_t>(out, 28, crc32_of(out.data(), 24));
  out += payload;
  atomic_write(path, out);
}

void read_checkpoint(const std::string& path, torch::serialize::InputArchive& archive) {
  std::string data = read_file(path);
  if (data.size() < kHeader)
    fail("{}: not a hashlab checkpoint: {} bytes, shorter than the {}-byte header", path,
         data.size(), kHeader);
  if (std::memcmp(data.data(), kMagic, 8) != 0)
    fail("{}: not a hashlab checkpoint (bad magic at offset 0)", path);
  if (get<uint32_t>(data, 28) != crc32_of(data.data(), 24))
    fail("{}: checkpoint header is corrupted (header checksum mismatch)", path);
  uint32_t version = get<uint32_t>(data, 8);
  if (version != kCheckpointVersion)
    fail("{}: checkpoint format version {} is not supported (this build reads version {})", path,
         version, kCheckpointVersion);
  uint64_t size = get<uint64_t>(data, 16);
  if (data.size() - kHeader != size)
    fail("{}: truncated or padded checkpoint: header says {} payload bytes, file has {}", path,
         size, data.size() - kHeader);
  if (get<uint32_t>(data, 24) != crc32_of(data.data() + kHeader, size))
    fail("{}: checkpoint payload is corrupted (crc32 mismatch)", path);
  try {
    archive.load_from(data.data() + kHeader, size);
  } catch (const c10::Error& e) {
    fail("{}: checkpoint payload cannot be read: {}", path, e.what_without_backtrace());
  }
}

void archive_write(torch::serialize::OutputArchive& a, const std::string& key, int64_t v) {
  a.write(key, torch::tensor({v}, torch::kInt64));
}
void archive_write(torch::serialize::OutputArchive& a, const std::string& key, double v) {
  a.write(key, torch::tensor({v}, torch::kFloat64));
}
void archive_write(torch::serialize::OutputArchive& a, const std::string& key,
                   const std::string& v) {
  auto t = torch::empty({static_cast<int64_t>(v.size())}, torch::kUInt8);
  if (!v.empty()) std::memcpy(t.data_ptr(), v.data(), v.size());
  a.write(key, t);
}

namespace {
torch::Tensor read_tensor(torch::serialize::InputArchive& a, const std::string& key) {
  torch::Tensor t;
  if (!a.try_read(key, t)) fail("checkpoint: missing entry '{}'", key);
  return t;
}
}  // namespace

int64_t archive_read_int(torch::serialize::InputArchive& a, const std::string& key) {
  return read_tensor(a, key).item<int64_t>();
}
double archive_read_double(torch::serialize::InputArchive& a, const std::string& key) {
  return read_tensor(a, key).item<double>();
}
std::string archive_read_string(torch::serialize::InputArchive& a, const std::string& key) {
  auto t = read_tensor(a, key).contiguous();
  return std::string(static_cast<const char*>(t.data_ptr()), t.numel());
}

bool archive_try_read_string(torch::serialize::InputArchive& a, const std::string& key,
                             std::string& out) {
  torch::Tensor t;
  if (!a.try_read(key, t)) return false;
  t = t.contiguous();
  out.assign(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()));
  return true;
}

}  // namespace hashlab
