#include "csrc/core/device.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <thread>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#ifdef HASHLAB_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#include "csrc/core/error.h"

namespace hashlab {

torch::Device resolve_device(const std::string& spec, const std::string& where) {
  if (spec == "auto") {
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0)
                                       : torch::Device(torch::kCPU);
  }
  if (spec == "cpu") return torch::Device(torch::kCPU);
  if (spec.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      fail("{}: '{}' requested but {}", where, spec,
           torch::hasCUDA() ? "no GPU is visible" : "this LibTorch was built without CUDA");
    try {
      torch::Device d(spec);
      if (d.index() >= static_cast<int>(torch::cuda::device_count()))
        fail("{}: '{}': only {} GPU(s) present", where, spec, torch::cuda::device_count());
      return d;
    } catch (const c10::Error&) {
      fail("{}: '{}' is not a device (use auto, cpu, cuda or cuda:N)", where, spec);
    }
  }
  fail("{}: '{}' is not a device (use auto, cpu, cuda or cuda:N)", where, spec);
}

void set_threads(int n) {
  if (n < 1) n = 1;
  at::set_num_threads(n);
}

void tune_host_allocator() {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

void seed_everything(uint64_t seed) {
  torch::manual_seed(seed);  // CPU and, when present, all CUDA generators
}

void seed_cpu_generator(uint64_t seed) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
}

torch::Tensor cpu_rng_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_cpu_rng_state(const torch::Tensor& state) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

std::string gpu_name(int index) {
#ifdef HASHLAB_TORCH_CUDA
  return at::cuda::getDeviceProperties(index)->name;
#else
  (void)index;
  return "";
#endif
}

SystemInfo system_info() {
  SystemInfo s;
  s.torch_version = fmt::format("{}.{}.{}", TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR,
                                TORCH_VERSION_PATCH);
  s.cuda_built = torch::hasCUDA();
  s.cuda_available = torch::cuda::is_available();
  s.gpu_count = s.cuda_available ? static_cast<int>(torch::cuda::device_count()) : 0;
  std::string simd;
  __builtin_cpu_init();
  auto add = [&](bool ok, const char* name) {
    if (ok) simd += (simd.empty() ? "" : " ") + std::string(name);
  };
  add(__builtin_cpu_supports("avx512f"), "avx512f");
  add(__builtin_cpu_supports("avx512bw"), "avx512bw");
  add(__builtin_cpu_supports("avx512vpopcntdq"), "avx512vpopcntdq");
  add(__builtin_cpu_supports("avx2"), "avx2");
  add(__builtin_cpu_supports("fma"), "fma");
  add(__builtin_cpu_supports("popcnt"), "popcnt");
  s.cpu_simd = simd.empty() ? "none" : simd;
  s.threads = at::get_num_threads();
  unsigned hw = std::thread::hardware_concurrency();
  s.hardware_threads = hw == 0 ? 1 : static_cast<int>(hw);
#ifdef HASHLAB_WITH_FAISS
  s.faiss = true;
#endif
  // opencv / cuda_kernels are filled in by the CLI, which links those parts.
  return s;
}

}  // namespace hashlab
