// hashlab info: what this build and this machine offer.
#include <iostream>

#include "app/builtin_methods.h"
#include "csrc/core/device.h"
#include "csrc/search/hamming.h"
#include "tools/cli/commands.h"
#include "trainers/method.h"

namespace {

void add(CLI::App& app) {
  auto* c = app.add_subcommand("info", "Print LibTorch, CUDA, GPU, SIMD and thread facts");
  auto threads = std::make_shared<std::string>("auto");
  c->add_option("--threads", *threads, "Thread count to report as in use (auto = all cores)")
      ->capture_default_str();
  c->callback([threads] {
    hashlab::set_threads(hashlab::resolve_threads(*threads, "--threads"));
    auto s = hashlab::system_info();
#ifdef HASHLAB_WITH_OPENCV
    s.opencv = true;
#endif
#ifdef HASHLAB_WITH_CUDA
    s.cuda_kernels = true;
#endif
    hashlab::register_builtin_methods();
    std::cout << "hashlab 0.1.0\n"
              << "LibTorch:          " << s.torch_version << "\n"
              << "CUDA in LibTorch:  " << (s.cuda_built ? "yes" : "no") << "\n"
              << "CUDA available:    " << (s.cuda_available ? "yes" : "no") << "\n"
              << "GPUs:              " << s.gpu_count << "\n";
    if (s.cuda_available) {
      for (int i = 0; i < s.gpu_count; ++i) std::cout << "GPU " << i << ":             " << hashlab::gpu_name(i) << "\n";
    }
    std::cout << "CUDA kernels:      " << (s.cuda_kernels ? "linked" : "not linked") << "\n"
              << "CPU SIMD:          " << s.cpu_simd << "\n"
              << "Hamming kernel:    " << hashlab::search::cpu_kernel_name() << "\n"
              << "Threads in use:    " << s.threads << " (hardware: " << s.hardware_threads
              << ")\n"
              << "OpenCV:            " << (s.opencv ? "yes" : "no") << "\n"
              << "FAISS:             " << (s.faiss ? "yes" : "no") << "\n"
              << "Methods:           ";
    auto names = hashlab::method_registry().names();
    for (size_t i = 0; i < names.size(); ++i) std::cout << (i ? ", " : "") << names[i];
    std::cout << "\n";
  });
}

}  // namespace

HASHLAB_CLI_COMMAND(90, add);
