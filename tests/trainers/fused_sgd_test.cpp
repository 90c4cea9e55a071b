// FusedSGD (trainers/fused_sgd.h) against LibTorch's torch::optim::SGD: the
// same parameters, gradients and options step for step, every combination of
// weight decay, momentum, dampening and Nesterov, two groups with their own
// learning rates, a parameter larger than one parallel task, one without a
// gradient, and a non-contiguous one (which takes SGD's own path), every
// other step through a closure that makes the gradients. Then the
// state: a FusedSGD checkpoint loads into SGD and the two go on equal.
#include <sstream>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "trainers/fused_sgd.h"

namespace {

using torch::optim::OptimizerParamGroup;
using torch::optim::SGD;
using torch::optim::SGDOptions;

struct Params {
  std::vector<torch::Tensor> a, b;  // group 0, group 1
};

Params make_params(bool non_contiguous) {
  torch::manual_seed(7);
  Params p;
  p.a = {torch::randn({100003}), torch::randn({64, 3, 3, 3}), torch::randn({5})};
  p.b = {torch::randn({10, 7}), non_contiguous ? torch::randn({6, 4}).t() : torch::randn({4, 6})};
  for (auto* g : {&p.a, &p.b})
    for (auto& t : *g) t = t.detach().requires_grad_(true);
  return p;
}

std::vector<OptimizerParamGroup> groups(const Params& p, const SGDOptions& o) {
  std::vector<OptimizerParamGroup> g;
  g.emplace_back(p.a, std::make_unique<SGDOptions>(o));
  auto o2 = std::make_unique<SGDOptions>(o);
  o2->lr(o.lr() * 10);
  g.emplace_back(p.b, std::move(o2));
  return g;
}

// Gives every parameter but the last of group 0 the same seeded gradient.
void set_grads(Params& p, int step) {
  torch::manual_seed(100 + step);
  for (auto* g : {&p.a, &p.b})
    for (auto& t : *g) {
      if (&t == &p.a.back()) continue;
      t.mutable_grad() = torch::randn(t.sizes());
    }
}

void expect_equal(const Params& x, const Params& y, const std::string& what) {
  for (size_t g = 0; g < 2; ++g) {
    const auto& xs = g == 0 ? x.a : x.b;
    const auto& ys = g == 0 ? y.a : y.b;
    for (size_t i = 0; i < xs.size(); ++i)
      ASSERT_TRUE(torch::allclose(xs[i], ys[i], 1e-5, 1e-6))
          << what << ": group " << g << " param " << i << " differs by "
          << (xs[i] - ys[i]).abs().max().item<float>();
  }
}

TEST(FusedSGD, StepsLikeTorchSGD) {
  for (bool non_contiguous : {false, true})
    for (double wd : {0.0, 5e-4})
      for (double momentum : {0.0, 0.9})
        for (double dampening : {0.0, 0.1})
          for (bool nesterov : {false, true}) {
            if (nesterov && (momentum == 0 || dampening != 0)) continue;  // SGD's own rule
            const std::string what = "wd " + std::to_string(wd) + " momentum " +
                                     std::to_string(momentum) + " dampening " +
                                     std::to_string(dampening) + (nesterov ? " nesterov" : "") +
                                     (non_contiguous ? " non-contiguous" : "");
            SGDOptions o(0.01);
            o.weight_decay(wd).momentum(momentum).dampening(dampening).nesterov(nesterov);
            Params ref = make_params(non_contiguous), ours = make_params(non_contiguous);
            SGD ref_opt(groups(ref, o), o);
            hashlab::FusedSGD our_opt(groups(ours, o), o);
            for (int step = 0; step < 4; ++step) {
              if (step % 2 == 0) {
                set_grads(ref, step);
                set_grads(ours, step);
                ref_opt.step();
                our_opt.step();
              } else {  // through a closure that makes the gradients, as the trainer steps
                const torch::Tensor a = ref_opt.step([&] {
                  set_grads(ref, step);
                  return torch::ones({});
                });
                const torch::Tensor b = our_opt.step([&] {
                  set_grads(ours, step);
                  return torch::ones({});
                });
                ASSERT_TRUE(a.defined() && b.defined()) << what << ": the closure's loss is returned";
              }
              expect_equal(ref, ours, what + " step " + std::to_string(step));
            }
            EXPECT_TRUE(torch::equal(ours.a.back(), make_params(non_contiguous).a.back()))
                << what << ": a parameter without a gradient moved";
          }
}

TEST(FusedSGD, StateLoadsIntoTorchSGDAndBack) {
  SGDOptions o(0.01);
  o.weight_decay(5e-4).momentum(0.9);
  Params ours = make_params(false), ref = make_params(false);
  hashlab::FusedSGD our_opt(groups(ours, o), o);
  for (int step = 0; step < 3; ++step) {
    set_grads(ours, step);
    our_opt.step();
  }
  // The reference takes our parameters and momentum buffers through a checkpoint.
  for (size_t i = 0; i < ours.a.size(); ++i) ref.a[i].detach().copy_(ours.a[i].detach());
  for (size_t i = 0; i < ours.b.size(); ++i) ref.b[i].detach().copy_(ours.b[i].detach());
  SGD ref_opt(groups(ref, o), o);
  {
    std::stringstream buf;
    torch::serialize::OutputArchive out;
    our_opt.save(out);
    out.save_to(buf);
    torch::serialize::InputArchive in;
    in.load_from(buf);
    ref_opt.load(in);
  }
  for (int step = 3; step < 6; ++step) {
    set_grads(ours, step);
    set_grads(ref, step);
    our_opt.step();
    ref_opt.step();
    expect_equal(ref, ours, "after loading, step " + std::to_string(step));
  }
}

}  // namespace
