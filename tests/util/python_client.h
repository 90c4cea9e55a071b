// Runs an exported hasher from Python (Debian's python3-torch), as a user
// would: torch.jit.load, then encode() on the given float inputs. Returns the
// packed codes, or nothing when /usr/bin/python3 lacks torch or numpy (the
// caller then skips the Python half of its check).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include <torch/torch.h>

namespace hashlab::testing {

inline std::optional<torch::Tensor> python_encode(const std::filesystem::path& hasher,
                                                  const torch::Tensor& x, int64_t code_bytes) {
  if (std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0)
    return std::nullopt;
  auto dir = hasher.parent_path();
  auto xc = x.to(torch::kFloat32).contiguous();
  std::ofstream(dir / "x.f32", std::ios::binary)
      .write(static_cast<const char*>(xc.data_ptr()), static_cast<std::streamsize>(xc.nbytes()));
  std::string shape;
  for (int64_t s : xc.sizes()) shape += std::to_string(s) + ",";
  std::ofstream(dir / "client.py")
      << "import sys, numpy as np, torch\n"
         "m = torch.jit.load(sys.argv[1])\n"
         "x = torch.from_numpy(np.fromfile(sys.argv[2], dtype=np.float32).reshape(("
      << shape
      << ")))\n"
         "m.encode(x).numpy().tofile(sys.argv[3])\n";
  std::string cmd = "/usr/bin/python3 " + (dir / "client.py").string() + " " + hasher.string() +
                    " " + (dir / "x.f32").string() + " " + (dir / "codes.u8").string();
  if (std::system(cmd.c_str()) != 0) return torch::Tensor();  // undefined: the client failed
  auto codes = torch::empty({xc.size(0), code_bytes}, torch::kUInt8);
  std::ifstream(dir / "codes.u8", std::ios::binary)
      .read(static_cast<char*>(codes.data_ptr()), static_cast<std::streamsize>(codes.nbytes()));
  return codes;
}

}  // namespace hashlab::testing
