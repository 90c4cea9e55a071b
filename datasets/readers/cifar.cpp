#include "datasets/readers/cifar.h"

#include <cstring>

#include "csrc/core/error.h"

namespace hashlab::data {

CifarData parse_cifar(const uint8_t* raw, size_t raw_size, const std::string& name,
                      CifarKind kind, uint64_t max_bytes) {
  Bytes in = maybe_gunzip(raw, raw_size, name, max_bytes);
  constexpr size_t kPixels = 3 * 32 * 32;
  const size_t label_bytes = kind == CifarKind::cifar10 ? 1 : 2;
  const size_t record = label_bytes + kPixels;
  const char* kind_name = kind == CifarKind::cifar10 ? "CIFAR-10" : "CIFAR-100";
  if (in.size == 0) fail("{}: empty file{}: no {} records", name, gz_note(in), kind_name);
  if (in.size % record != 0)
    fail("{}: file has {} bytes{}, not a multiple of the {} record size {} ({} whole records "
         "and {} bytes left over)",
         name, in.size, gz_note(in), kind_name, record, in.size / record, in.size % record);
  const int64_t n = static_cast<int64_t>(in.size / record);

  CifarData out;
  out.images.dtype = Array::DType::u8;
  out.images.shape = {n, 3, 32, 32};
  out.images.bytes.resize(static_cast<size_t>(n) * kPixels);
  out.labels.dtype = Array::DType::i64;
  out.labels.shape = {n};
  out.labels.bytes.resize(static_cast<size_t>(n) * 8);
  int64_t* fine = out.labels.data<int64_t>();
  int64_t* coarse = nullptr;
  if (kind == CifarKind::cifar100) {
    out.coarse_labels.dtype = Array::DType::i64;
    out.coarse_labels.shape = {n};
    out.coarse_labels.bytes.resize(static_cast<size_t>(n) * 8);
    coarse = out.coarse_labels.data<int64_t>();
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* rec = in.data + static_cast<size_t>(i) * record;
    const size_t off = static_cast<size_t>(i) * record;
    if (kind == CifarKind::cifar10) {
      if (rec[0] > 9)
        fail("{}: record {} (offset {}): label {} out of range 0..9", name, i, off, rec[0]);
      fine[i] = rec[0];
    } else {
      if (rec[0] > 19)
        fail("{}: record {} (offset {}): coarse label {} out of range 0..19", name, i, off,
             rec[0]);
      if (rec[1] > 99)
        fail("{}: record {} (offset {}): fine label {} out of range 0..99", name, i, off + 1,
             rec[1]);
      coarse[i] = rec[0];
      fine[i] = rec[1];
    }
    std::memcpy(out.images.bytes.data() + static_cast<size_t>(i) * kPixels, rec + label_bytes,
                kPixels);
  }
  return out;
}

CifarData read_cifar(const std::string& path, CifarKind kind, uint64_t max_bytes) {
  std::vector<uint8_t> raw = read_file_bytes(path, max_bytes);
  return parse_cifar(raw.data(), raw.size(), path, kind, max_bytes);
}

}  // namespace hashlab::data
