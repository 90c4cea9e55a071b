#include "datasets/readers/bytes.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include <zlib.h>

#include "csrc/core/error.h"

namespace hashlab::data {

int64_t Array::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t dtype_size(Array::DType t) {
  switch (t) {
    case Array::DType::u8: return 1;
    case Array::DType::i32: return 4;
    case Array::DType::i64: return 8;
    case Array::DType::f32: return 4;
  }
  return 1;
}

const char* dtype_name(Array::DType t) {
  switch (t) {
    case Array::DType::u8: return "uint8";
    case Array::DType::i32: return "int32";
    case Array::DType::i64: return "int64";
    case Array::DType::f32: return "float32";
  }
  return "?";
}

std::string shape_string(const std::vector<int64_t>& shape, char sep) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += sep;
    s += std::to_string(shape[i]);
  }
  return s.empty() ? "scalar" : s;
}

uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& name, const char* what) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) fail("{}: {}: size overflows 64 bits", name, what);
  return r;
}

uint64_t checked_add(uint64_t a, uint64_t b, const std::string& name, const char* what) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) fail("{}: {}: size overflows 64 bits", name, what);
  return r;
}

bool is_gzip(const uint8_t* data, size_t size) {
  return size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
}

Bytes maybe_gunzip(const uint8_t* data, size_t size, const std::string& name,
                   uint64_t max_bytes) {
  Bytes out;
  if (!is_gzip(data, size)) {
    out.data = data;
    out.size = size;
    return out;
  }
  out.gunzipped = true;
  std::vector<uint8_t>& buf = out.owned;
  // The gzip trailer's ISIZE (size mod 2^32) is only a hint; deflate cannot
  // expand more than ~1032x, which bounds the first allocation too.
  uint64_t hint = size >= 4 ? load_le32(data + size - 4) : 0;
  uint64_t ratio_bound = size > max_bytes / 1032 ? max_bytes : uint64_t{size} * 1032;
  buf.reserve(static_cast<size_t>(std::min({hint, ratio_bound, max_bytes})));

  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) fail("{}: cannot initialise zlib", name);
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&zs, inflateEnd);
  const uint8_t* end = data + size;
  const uint8_t* in = data;
  uint8_t chunk[1 << 16];
  auto refill = [&] {
    // zlib counts input in uInt; feed very large inputs in 1 GiB pieces.
    size_t avail = std::min<size_t>(end - in, size_t{1} << 30);
    zs.next_in = const_cast<Bytef*>(in);
    zs.avail_in = static_cast<uInt>(avail);
  };
  refill();
  while (true) {
    zs.next_out = chunk;
    zs.avail_out = sizeof chunk;
    const Bytef* before = zs.next_in;
    int rc = inflate(&zs, Z_NO_FLUSH);
    in += zs.next_in - before;
    if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_MEM_ERROR || rc == Z_STREAM_ERROR)
      fail("{}: corrupt gzip data near compressed offset {}: {}", name, in - data,
           zs.msg ? zs.msg : "inflate failed");
    size_t produced = sizeof chunk - zs.avail_out;
    if (buf.size() + produced > max_bytes)
      fail("{}: gunzipped data exceeds the limit of {} bytes (gzip bomb or file too large)",
           name, max_bytes);
    buf.insert(buf.end(), chunk, chunk + produced);
    if (rc == Z_STREAM_END) {
      if (in == end) break;
      if (!is_gzip(in, end - in))
        fail("{}: {} bytes of trailing data after the gzip stream at compressed offset {}",
             name, end - in, in - data);
      inflateReset(&zs);  // the next concatenated member
      refill();
      continue;
    }
    if (zs.avail_in == 0 && zs.avail_out != 0) {
      if (in == end)
        fail("{}: truncated gzip stream ({} compressed bytes, {} bytes decoded)", name, size,
             buf.size());
      refill();
    } else if (rc == Z_BUF_ERROR && produced == 0) {
      fail("{}: gzip stream makes no progress at compressed offset {}", name, in - data);
    }
  }
  out.data = buf.data();
  out.size = buf.size();
  return out;
}

std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t max_bytes) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::vector<uint8_t> buf;
  if (std::fseek(f.get(), 0, SEEK_END) == 0) {
    long end = std::ftell(f.get());
    if (end > 0) {
      if (static_cast<uint64_t>(end) > max_bytes)
        fail("{}: file has {} bytes, more than the limit of {}", path, end, max_bytes);
      buf.reserve(static_cast<size_t>(end));
    }
    std::rewind(f.get());
  }
  uint8_t chunk[1 << 16];
  size_t got;
  while ((got = std::fread(chunk, 1, sizeof chunk, f.get())) > 0) {
    if (buf.size() + got > max_bytes)
      fail("{}: file exceeds the limit of {} bytes", path, max_bytes);
    buf.insert(buf.end(), chunk, chunk + got);
  }
  if (std::ferror(f.get())) fail("{}: read error: {}", path, std::strerror(errno));
  return buf;
}

}  // namespace hashlab::data
