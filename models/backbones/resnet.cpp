// torchvision ResNet-18/34/50 (names: conv1, bn1, layer{1..4}.{i}.{conv,bn}{1,2,3},
// layer{k}.0.downsample.{0,1}); fc is dropped.
#include <fmt/format.h>

#include "csrc/core/error.h"
#include "models/backbones/nets.h"

namespace hashlab::models {

namespace nn = torch::nn;

namespace {
nn::Conv2d conv_nb(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(false));
}
}  // namespace

ResNetBlockImpl::ResNetBlockImpl(int64_t in_planes, int64_t planes, int64_t stride,
                                 bool bottleneck)
    : planes_(planes), bottleneck_(bottleneck) {
  if (bottleneck) {
    conv1 = register_module("conv1", conv_nb(in_planes, planes, 1, 1, 0));
    bn1 = register_module("bn1", nn::BatchNorm2d(planes));
    conv2 = register_module("conv2", conv_nb(planes, planes, 3, stride, 1));
    bn2 = register_module("bn2", nn::BatchNorm2d(planes));
    conv3 = register_module("conv3", conv_nb(planes, planes * 4, 1, 1, 0));
    bn3 = register_module("bn3", nn::BatchNorm2d(planes * 4));
  } else {
    conv1 = register_module("conv1", conv_nb(in_planes, planes, 3, stride, 1));
    bn1 = register_module("bn1", nn::BatchNorm2d(planes));
    conv2 = register_module("conv2", conv_nb(planes, planes, 3, 1, 1));
    bn2 = register_module("bn2", nn::BatchNorm2d(planes));
  }
  if (stride != 1 || in_planes != out_planes()) {
    downsample = register_module(
        "downsample", nn::Sequential(conv_nb(in_planes, out_planes(), 1, stride, 0),
                                     nn::BatchNorm2d(out_planes())));
  }
}

torch::Tensor ResNetBlockImpl::forward(torch::Tensor x) {
  torch::Tensor out = torch::relu(bn1->forward(conv1->forward(x)));
  out = bn2->forward(conv2->forward(out));
  if (bottleneck_) out = bn3->forward(conv3->forward(torch::relu(out)));
  torch::Tensor identity = downsample ? downsample->forward(x) : x;
  return torch::relu(out + identity);
}

std::string ResNetBlockImpl::emit_torchscript(exporter::ScriptEmitter& e,
                                              const std::string& prefix,
                                              const std::string& x) const {
  using namespace exporter;
  std::string v = emit_batchnorm2d(e, prefix + "bn1.", *bn1,
                                   emit_conv2d(e, prefix + "conv1.", *conv1, x));
  v = e.let(fmt::format("torch.relu({})", v));
  v = emit_batchnorm2d(e, prefix + "bn2.", *bn2, emit_conv2d(e, prefix + "conv2.", *conv2, v));
  if (bottleneck_) {
    v = e.let(fmt::format("torch.relu({})", v));
    v = emit_batchnorm2d(e, prefix + "bn3.", *bn3, emit_conv2d(e, prefix + "conv3.", *conv3, v));
  }
  std::string identity = downsample ? emit_sequential(e, prefix + "downsample.", downsample, x) : x;
  return e.let(fmt::format("torch.relu({} + {})", v, identity));
}

ResNetImpl::ResNetImpl(int depth, int64_t input_size) : input_size_(input_size) {
  std::vector<int64_t> blocks;
  bool bottleneck = false;
  if (depth == 18) {
    blocks = {2, 2, 2, 2};
  } else if (depth == 34) {
    blocks = {3, 4, 6, 3};
  } else if (depth == 50) {
    blocks = {3, 4, 6, 3};
    bottleneck = true;
  } else {
    fail("resnet: depth {} is not one of 18, 34, 50", depth);
  }
  conv1 = register_module("conv1", conv_nb(3, 64, 7, 2, 3));
  bn1 = register_module("bn1", nn::BatchNorm2d(64));
  int64_t in = 64;
  for (int64_t stage = 0; stage < 4; ++stage) {
    int64_t planes = 64 << stage;
    nn::Sequential layer;
    for (int64_t b = 0; b < blocks[stage]; ++b) {
      auto block = ResNetBlock(in, planes, (b == 0 && stage > 0) ? 2 : 1, bottleneck);
      in = block->out_planes();
      layer->push_back(block);
    }
    layers_.push_back(register_module(fmt::format("layer{}", stage + 1), layer));
  }
  feature_dim_ = in;
}

torch::Tensor ResNetImpl::forward(torch::Tensor x) {
  x = torch::relu(bn1->forward(conv1->forward(imagenet_input(x, input_size_))));
  x = torch::max_pool2d(x, {3, 3}, {2, 2}, {1, 1}, {1, 1}, false);
  for (auto& layer : layers_) x = layer->forward(x);
  return torch::flatten(torch::adaptive_avg_pool2d(x, {1, 1}), 1);
}

std::string ResNetImpl::emit_torchscript(exporter::ScriptEmitter& e, const std::string& prefix,
                                         const std::string& x) const {
  using namespace exporter;
  std::string v = emit_imagenet_input(e, x, input_size_);
  v = emit_batchnorm2d(e, prefix + "bn1.", *bn1, emit_conv2d(e, prefix + "conv1.", *conv1, v));
  v = e.let(fmt::format("torch.relu({})", v));
  v = e.let(fmt::format("torch.max_pool2d({}, [3, 3], [2, 2], [1, 1], [1, 1], False)", v));
  for (size_t s = 0; s < layers_.size(); ++s) {
    size_t i = 0;
    for (const auto& child : layers_[s]->children()) {
      v = child->as<ResNetBlock>()->emit_torchscript(
          e, fmt::format("{}layer{}.{}.", prefix, s + 1, i++), v);
    }
  }
  v = e.let(fmt::format("torch.adaptive_avg_pool2d({}, [1, 1])", v));
  return e.let(fmt::format("torch.flatten({}, 1)", v));
}

}  // namespace hashlab::models
