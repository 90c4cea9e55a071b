#include "datasets/readers/vecs.h"

#include <cstring>

#include "csrc/core/error.h"

namespace hashlab::data {

const char* vecs_extension(VecsKind kind) {
  switch (kind) {
    case VecsKind::fvecs: return "fvecs";
    case VecsKind::bvecs: return "bvecs";
    case VecsKind::ivecs: return "ivecs";
  }
  return "?";
}

Array parse_vecs(const uint8_t* raw, size_t raw_size, const std::string& name, VecsKind kind,
                 uint64_t max_bytes) {
  Bytes in = maybe_gunzip(raw, raw_size, name, max_bytes);
  const char* ext = vecs_extension(kind);
  if (in.size == 0) fail("{}: empty file{}: no {} records", name, gz_note(in), ext);
  if (in.size < 4)
    fail("{}: truncated: {} bytes{}, too short for the 4-byte dimension header", name, in.size,
         gz_note(in));
  const int32_t dim = static_cast<int32_t>(load_le32(in.data));
  if (dim <= 0 || static_cast<uint32_t>(dim) > kMaxVecsDim)
    fail("{}: offset 0: bad {} dimension {} (expected 1..{})", name, ext, dim, kMaxVecsDim);
  const size_t elem = kind == VecsKind::bvecs ? 1 : 4;
  const size_t row = static_cast<size_t>(dim) * elem;
  const size_t record = 4 + row;
  if (in.size % record != 0)
    fail("{}: file has {} bytes{}, not a multiple of the record size {} (4 + {} x {}) for "
         "dimension {}: truncated or mixed dimensions ({} whole records, {} bytes left over)",
         name, in.size, gz_note(in), record, dim, elem, dim, in.size / record, in.size % record);
  const int64_t n = static_cast<int64_t>(in.size / record);

  Array a;
  a.dtype = kind == VecsKind::fvecs   ? Array::DType::f32
            : kind == VecsKind::bvecs ? Array::DType::u8
                                      : Array::DType::i32;
  a.shape = {n, dim};
  a.bytes.resize(static_cast<size_t>(n) * row);
  for (int64_t i = 0; i < n; ++i) {
    const size_t off = static_cast<size_t>(i) * record;
    const int32_t d = static_cast<int32_t>(load_le32(in.data + off));
    if (d != dim)
      fail("{}: record {} (offset {}): dimension {} differs from the first record's {}", name, i,
           off, d, dim);
    std::memcpy(a.bytes.data() + static_cast<size_t>(i) * row, in.data + off + 4, row);
  }
  return a;
}

Array read_vecs(const std::string& path, VecsKind kind, uint64_t max_bytes) {
  std::vector<uint8_t> raw = read_file_bytes(path, max_bytes);
  return parse_vecs(raw.data(), raw.size(), path, kind, max_bytes);
}

}  // namespace hashlab::data
