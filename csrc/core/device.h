// Devices, threads, seeds and what the machine offers.
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>
#include <string>

#include <torch/torch.h>

namespace hashlab {

// "auto" -> CUDA when LibTorch has it and a GPU is present, else CPU;
// "cpu"; "cuda" or "cuda:N" (error when unavailable). `where` names the
// config key for error messages.
torch::Device resolve_device(const std::string& spec, const std::string& where = "device");

// Sets LibTorch's intra-op thread count (Debian's LibTorch defaults to 1).
void set_threads(int n);

// Keeps the host allocator (glibc malloc) from handing tensor memory back to
// the kernel between steps: by default blocks above a threshold that starts
// at 128 KiB are mmap'ed and the heap top is trimmed on free, so every
// training step's activations fault their pages in again (clear_page and page
// faults were 13-17% of a resnet18 step). Blocks up to 32 MiB come from the
// heap and freed memory stays with the process (up to 1 GiB is not trimmed).
// Called once at program start; no effect on other C libraries.
void tune_host_allocator();

// Sets the intra-op thread count for the guard's lifetime (threads <= 0: unchanged).
class ThreadsGuard {
 public:
  explicit ThreadsGuard(int threads) : saved_(at::get_num_threads()) {
    if (threads > 0 && threads != saved_) at::set_num_threads(threads);
  }
  ~ThreadsGuard() {
    if (at::get_num_threads() != saved_) at::set_num_threads(saved_);
  }
  ThreadsGuard(const ThreadsGuard&) = delete;
  ThreadsGuard& operator=(const ThreadsGuard&) = delete;

 private:
  int saved_;
};

// Seeds every generator we use: LibTorch CPU (and CUDA when present).
void seed_everything(uint64_t seed);

// Seeds the LibTorch CPU generator alone (per-rank dropout streams).
void seed_cpu_generator(uint64_t seed);

// Serialises / restores the LibTorch generator states (checkpoints).
torch::Tensor cpu_rng_state();
void set_cpu_rng_state(const torch::Tensor& state);

// Human-readable facts for `hashlab info`.
struct SystemInfo {
  std::string torch_version;
  bool cuda_built = false;
  bool cuda_available = false;
  int gpu_count = 0;
  std::string gpu_name;
  std::string cpu_simd;  // e.g. "avx512f avx512vpopcntdq avx2 popcnt"
  int threads = 1;
  int hardware_threads = 1;
  bool opencv = false;
  bool faiss = false;
  bool cuda_kernels = false;
};
SystemInfo system_info();
// Name of GPU `index` (needs a CUDA LibTorch; "" otherwise).
std::string gpu_name(int index);

}  // namespace hashlab
