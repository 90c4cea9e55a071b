// SmallCNN, AlexNet and VGG16: plain Sequential stacks, so eager forward and
// the TorchScript emitter walk the same layers.
#include <fmt/format.h>

#include "csrc/core/error.h"
#include "models/backbones/nets.h"

namespace hashlab::models {

namespace nn = torch::nn;

namespace {
nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(pad));
}
nn::MaxPool2d maxpool(int64_t k, int64_t s) { return nn::MaxPool2d(nn::MaxPool2dOptions(k).stride(s)); }
nn::ReLU relu() { return nn::ReLU(nn::ReLUOptions(true)); }
}  // namespace

// ---------------------------------------------------------------- MLP

MLPImpl::MLPImpl(const std::vector<int64_t>& shape, const std::vector<int64_t>& widths,
                 double dropout) {
  HL_CHECK(!shape.empty(), "backbone mlp: unknown input shape");
  int64_t in = 1;
  for (int64_t d : shape) in *= d;
  HL_CHECK(in > 0, "backbone mlp: empty input shape [{}]", fmt::join(shape, ", "));
  nn::Sequential seq;
  for (int64_t w : widths) {
    seq->push_back(nn::Linear(in, w));
    seq->push_back(relu());
    if (dropout > 0) seq->push_back(nn::Dropout(dropout));
    in = w;
  }
  feature_dim_ = in;
  layers = register_module("layers", seq);
}

torch::Tensor MLPImpl::forward(torch::Tensor x) {
  x = torch::flatten(x, 1);
  return layers->size() == 0 ? x : layers->forward(x);
}

std::string MLPImpl::emit_torchscript(exporter::ScriptEmitter& e, const std::string& prefix,
                                      const std::string& x) const {
  std::string v = e.let(fmt::format("torch.flatten({}, 1)", x));
  return exporter::emit_sequential(e, prefix + "layers.", layers, v);
}

// ---------------------------------------------------------------- SmallCNN

SmallCNNImpl::SmallCNNImpl(const std::vector<int64_t>& shape, int64_t feature_dim)
    : feature_dim_(feature_dim) {
  HL_CHECK(shape.size() == 3 && shape[1] >= 4 && shape[2] >= 4,
           "backbone small_cnn: needs input [C, H, W] with H, W >= 4, got [{}]",
           fmt::join(shape, ", "));
  features = register_module(
      "features", nn::Sequential(conv(shape[0], 32, 3, 1, 1), nn::BatchNorm2d(32), relu(),
                                 maxpool(2, 2), conv(32, 64, 3, 1, 1), nn::BatchNorm2d(64),
                                 relu(), maxpool(2, 2)));
  int64_t flat = 64 * (shape[1] / 4) * (shape[2] / 4);
  classifier = register_module("classifier",
                               nn::Sequential(nn::Linear(flat, feature_dim), relu()));
}

torch::Tensor SmallCNNImpl::forward(torch::Tensor x) {
  x = features->forward(x);
  return classifier->forward(torch::flatten(x, 1));
}

std::string SmallCNNImpl::emit_torchscript(exporter::ScriptEmitter& e, const std::string& prefix,
                                           const std::string& x) const {
  std::string v = exporter::emit_sequential(e, prefix + "features.", features, x);
  v = e.let(fmt::format("torch.flatten({}, 1)", v));
  return exporter::emit_sequential(e, prefix + "classifier.", classifier, v);
}

// ---------------------------------------------------------------- AlexNet

AlexNetImpl::AlexNetImpl(int64_t input_size) : input_size_(input_size) {
  features = register_module(
      "features",
      nn::Sequential(conv(3, 64, 11, 4, 2), relu(), maxpool(3, 2), conv(64, 192, 5, 1, 2), relu(),
                     maxpool(3, 2), conv(192, 384, 3, 1, 1), relu(), conv(384, 256, 3, 1, 1),
                     relu(), conv(256, 256, 3, 1, 1), relu(), maxpool(3, 2)));
  avgpool = register_module("avgpool", nn::Sequential(nn::AdaptiveAvgPool2d(
                                           nn::AdaptiveAvgPool2dOptions({6, 6}))));
  // Indices as torchvision's classifier (0 dropout, 1 fc6, ..., 5 ReLU after fc7).
  classifier = register_module(
      "classifier", nn::Sequential(nn::Dropout(0.5), nn::Linear(256 * 6 * 6, 4096), relu(),
                                   nn::Dropout(0.5), nn::Linear(4096, 4096), relu()));
}

torch::Tensor AlexNetImpl::forward(torch::Tensor x) {
  x = features->forward(imagenet_input(x, input_size_));
  x = avgpool->forward(x);
  return classifier->forward(torch::flatten(x, 1));
}

std::string AlexNetImpl::emit_torchscript(exporter::ScriptEmitter& e, const std::string& prefix,
                                          const std::string& x) const {
  std::string v = emit_imagenet_input(e, x, input_size_);
  v = exporter::emit_sequential(e, prefix + "features.", features, v);
  v = exporter::emit_sequential(e, prefix + "avgpool.", avgpool, v);
  v = e.let(fmt::format("torch.flatten({}, 1)", v));
  return exporter::emit_sequential(e, prefix + "classifier.", classifier, v);
}

// ---------------------------------------------------------------- VGG16

VGG16Impl::VGG16Impl(int64_t input_size) : input_size_(input_size) {
  // Configuration "D"; 0 marks a max pool.
  const std::vector<int64_t> cfg = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0,
                                    512, 512, 512, 0, 512, 512, 512, 0};
  nn::Sequential f;
  int64_t in = 3;
  for (int64_t c : cfg) {
    if (c == 0) {
      f->push_back(maxpool(2, 2));
    } else {
      f->push_back(conv(in, c, 3, 1, 1));
      f->push_back(relu());
      in = c;
    }
  }
  features = register_module("features", f);
  avgpool = register_module("avgpool", nn::Sequential(nn::AdaptiveAvgPool2d(
                                           nn::AdaptiveAvgPool2dOptions({7, 7}))));
  classifier = register_module(
      "classifier", nn::Sequential(nn::Linear(512 * 7 * 7, 4096), relu(), nn::Dropout(0.5),
                                   nn::Linear(4096, 4096), relu(), nn::Dropout(0.5)));
}

torch::Tensor VGG16Impl::forward(torch::Tensor x) {
  x = features->forward(imagenet_input(x, input_size_));
  x = avgpool->forward(x);
  return classifier->forward(torch::flatten(x, 1));
}

std::string VGG16Impl::emit_torchscript(exporter::ScriptEmitter& e, const std::string& prefix,
                                        const std::string& x) const {
  std::string v = emit_imagenet_input(e, x, input_size_);
  v = exporter::emit_sequential(e, prefix + "features.", features, v);
  v = exporter::emit_sequential(e, prefix + "avgpool.", avgpool, v);
  v = e.let(fmt::format("torch.flatten({}, 1)", v));
  return exporter::emit_sequential(e, prefix + "classifier.", classifier, v);
}

}  // namespace hashlab::models
