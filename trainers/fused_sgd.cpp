#include "trainers/fused_sgd.h"

#include <ATen/Parallel.h>

namespace hashlab {
namespace {

// A dense contiguous float32 CPU tensor of n elements: what the fused pass reads.
bool flat_cpu_float(const torch::Tensor& t, int64_t n) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat &&
         t.layout() == torch::kStrided && t.is_contiguous() && t.numel() == n;
}

// p -= lr * d over [i0, i1), where, with g' = g + wd p:
//   momentum == 0: d = g'
//   first step:    b = g'                      (the buffer starts as g')
//   later steps:   b = momentum b + (1 - dampening) g'
//   d = nesterov ? g' + momentum b : b
// Inlined into one function per instruction set (below), where the compiler
// vectorizes it: the baseline x86-64 build alone runs it at SSE2 width, below
// the memory bandwidth the update is bound by.
template <bool kWeightDecay, bool kMomentum, bool kFirst, bool kNesterov>
inline __attribute__((always_inline)) void update_range(float* __restrict p,
                                                        const float* __restrict g,
                                                        float* __restrict b, int64_t i0,
                                                        int64_t i1, float lr, float wd,
                                                        float momentum, float dampening) {
  for (int64_t i = i0; i < i1; ++i) {
    float d = g[i];
    if constexpr (kWeightDecay) d = d + wd * p[i];
    if constexpr (kMomentum) {
      const float buf = kFirst ? d : momentum * b[i] + (1 - dampening) * d;
      b[i] = buf;
      d = kNesterov ? d + momentum * buf : buf;
    }
    p[i] = p[i] + -lr * d;
  }
}

#define HL_UPDATE_ARGS                                                                        \
  float *__restrict p, const float *__restrict g, float *__restrict b, int64_t i0, int64_t i1, \
      float lr, float wd, float momentum, float dampening
#define HL_UPDATE_CALL p, g, b, i0, i1, lr, wd, momentum, dampening

template <bool... kFlags>
void range_base(HL_UPDATE_ARGS) {
  update_range<kFlags...>(HL_UPDATE_CALL);
}
template <bool... kFlags>
__attribute__((target("avx2,fma"))) void range_avx2(HL_UPDATE_ARGS) {
  update_range<kFlags...>(HL_UPDATE_CALL);
}
template <bool... kFlags>
__attribute__((target("avx512f,avx512vl,fma"))) void range_avx512(HL_UPDATE_ARGS) {
  update_range<kFlags...>(HL_UPDATE_CALL);
}

using RangeFn = void (*)(HL_UPDATE_ARGS);

template <bool... kFlags>
RangeFn range_for_cpu() {
  static const RangeFn fn = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
      return static_cast<RangeFn>(range_avx512<kFlags...>);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return static_cast<RangeFn>(range_avx2<kFlags...>);
    return static_cast<RangeFn>(range_base<kFlags...>);
  }();
  return fn;
}

template <bool kWeightDecay, bool kMomentum, bool kFirst, bool kNesterov>
void update(float* p, const float* g, float* b, int64_t n, float lr, float wd, float momentum,
            float dampening) {
  constexpr int64_t kGrain = 1 << 15;  // floats per task: 128 KB per array
  const RangeFn fn = range_for_cpu<kWeightDecay, kMomentum, kFirst, kNesterov>();
  at::parallel_for(0, n, kGrain, [&](int64_t i0, int64_t i1) {
    fn(p, g, b, i0, i1, lr, wd, momentum, dampening);
  });
}

using UpdateFn = void (*)(float*, const float*, float*, int64_t, float, float, float, float);

template <bool kWeightDecay>
UpdateFn pick(bool momentum, bool first, bool nesterov) {
  if (!momentum) return update<kWeightDecay, false, false, false>;
  if (first) return nesterov ? update<kWeightDecay, true, true, true> : update<kWeightDecay, true, true, false>;
  return nesterov ? update<kWeightDecay, true, false, true> : update<kWeightDecay, true, false, false>;
}

}  // namespace

torch::Tensor FusedSGD::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  // The closure first: it makes the gradients the checks below look at.
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (const auto& group : param_groups_)
    for (const auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto it = state_.find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      const bool buffer_ok =
          it == state_.end() ||
          flat_cpu_float(static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer(),
                         p.numel());
      if (!flat_cpu_float(p, p.numel()) || !flat_cpu_float(p.grad(), p.numel()) || !buffer_ok) {
        torch::optim::SGD::step();  // the closure has run
        return loss;
      }
    }
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(group.options());
    const float lr = static_cast<float>(o.lr()), wd = static_cast<float>(o.weight_decay());
    const float momentum = static_cast<float>(o.momentum()),
                dampening = static_cast<float>(o.dampening());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      float* b = nullptr;
      bool first = false;
      if (momentum != 0) {
        const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
        auto it = state_.find(key);
        if (it == state_.end()) {
          auto state = std::make_unique<torch::optim::SGDParamState>();
          state->momentum_buffer(torch::empty_like(p, at::MemoryFormat::Contiguous));
          it = state_.emplace(key, std::move(state)).first;
          first = true;
        }
        b = static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer().data_ptr<float>();
      }
      const UpdateFn fn = wd != 0 ? pick<true>(momentum != 0, first, o.nesterov())
                                  : pick<false>(momentum != 0, first, o.nesterov());
      fn(p.data_ptr<float>(), p.grad().data_ptr<float>(), b, p.numel(), lr, wd, momentum, dampening);
    }
  }
  return loss;
}

}  // namespace hashlab
