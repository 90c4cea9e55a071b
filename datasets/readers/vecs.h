// TEXMEX vector files (SIFT1M, GIST1M, Deep1M, BIGANN), plain or gzip.
//
// Every record is a little-endian int32 dimension d followed by d elements:
//   .fvecs: float32 -> f32 [N, d]   .bvecs: uint8 -> u8 [N, d]
//   .ivecs: int32 (ground-truth ids) -> i32 [N, d]
// All records must have the same d (1 <= d <= kMaxVecsDim) and the file size
// must be an exact multiple of the record size 4 + d * element size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "datasets/readers/array.h"
#include "datasets/readers/bytes.h"

namespace hashlab::data {

enum class VecsKind { fvecs, bvecs, ivecs };

inline constexpr uint32_t kMaxVecsDim = 1u << 20;

Array parse_vecs(const uint8_t* data, size_t size, const std::string& name, VecsKind kind,
                 uint64_t max_bytes = kDefaultMaxBytes);
Array read_vecs(const std::string& path, VecsKind kind, uint64_t max_bytes = kDefaultMaxBytes);

const char* vecs_extension(VecsKind kind);  // "fvecs", "bvecs", "ivecs"

}  // namespace hashlab::data
