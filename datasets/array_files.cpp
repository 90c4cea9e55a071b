#include "datasets/array_files.h"

#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"
#include "csrc/core/strings.h"

namespace hashlab::data {

void write_npy(const std::string& path, const torch::Tensor& t) {
  const torch::Tensor c = t.cpu().contiguous();
  const char* descr = nullptr;
  switch (c.scalar_type()) {
    case torch::kInt64: descr = "<i8"; break;
    case torch::kInt32: descr = "<i4"; break;
    case torch::kFloat32: descr = "<f4"; break;
    case torch::kUInt8: descr = "|u1"; break;
    default: fail("{}: cannot write a {} array as .npy", path, c10::toString(c.scalar_type()));
  }
  std::string shape = "(";
  for (int64_t d : c.sizes()) shape += std::to_string(d) + ",";
  if (c.dim() > 1) shape.pop_back();
  shape += ")";
  std::string header =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", descr, shape);
  // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char preamble[10] = {'\x93', 'N', 'U', 'M', 'P', 'Y', '\x01', '\x00',
                             static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  AtomicFile f(path);
  f.write(preamble, sizeof preamble);
  f.write(header);
  f.write(c.data_ptr(), c.nbytes());
  f.commit();
}

void write_fvecs(const std::string& path, const torch::Tensor& t) {
  HL_CHECK(t.dim() == 2, "{}: .fvecs holds rows of floats, got an array of shape [{}]", path,
           fmt::join(t.sizes(), ", "));
  const torch::Tensor c = t.cpu().to(torch::kFloat32).contiguous();
  const int32_t d = static_cast<int32_t>(c.size(1));
  AtomicFile f(path);
  const float* p = c.data_ptr<float>();
  for (int64_t i = 0; i < c.size(0); ++i) {
    f.write(&d, sizeof d);
    f.write(p + i * d, sizeof(float) * d);
  }
  f.commit();
}

void write_feature_file(const std::string& path, const torch::Tensor& t) {
  if (ends_with(path, ".npy")) return write_npy(path, t);
  if (ends_with(path, ".fvecs")) return write_fvecs(path, t);
  fail("{}: write .npy or .fvecs", path);
}

}  // namespace hashlab::data
