// A torch-free n-dimensional array: what every reader in datasets/readers/
// returns. Readers depend only on the standard library, zlib, fmt and
// csrc/core/error.h so that libFuzzer targets build without LibTorch;
// datasets/dataset.h turns an Array into a torch::Tensor.
//
// Layout: C order (last dimension fastest), native (little-endian) byte order,
// bytes.size() == numel(shape) * dtype_size(dtype) always holds for an Array
// returned by a reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hashlab::data {

struct Array {
  enum class DType { u8, i32, i64, f32 };
  DType dtype = DType::u8;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;

  int64_t numel() const;
  template <typename T>
  const T* data() const { return reinterpret_cast<const T*>(bytes.data()); }
  template <typename T>
  T* data() { return reinterpret_cast<T*>(bytes.data()); }
};

size_t dtype_size(Array::DType t);
const char* dtype_name(Array::DType t);  // "uint8", "int32", "int64", "float32"
std::string shape_string(const std::vector<int64_t>& shape, char sep = 'x');  // "28x28"

}  // namespace hashlab::data
