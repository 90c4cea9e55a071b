// The concrete backbones (see backbone.h for the contract and the table).
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/backbones/backbone.h"

namespace hashlab::models {

// MLP for feature vectors (or any input, flattened): layers = [Linear(D, w0),
// ReLU, (Dropout), Linear(w0, w1), ReLU, ...]; feature_dim = widths.back(),
// or D with no widths (the flattened input itself).
class MLPImpl : public BackboneImpl {
 public:
  MLPImpl(const std::vector<int64_t>& input_shape, const std::vector<int64_t>& widths,
          double dropout);
  torch::Tensor forward(torch::Tensor x) override;
  int64_t feature_dim() const override { return feature_dim_; }
  std::string emit_torchscript(exporter::ScriptEmitter& e, const std::string& prefix,
                               const std::string& x) const override;

 private:
  int64_t feature_dim_;
  torch::nn::Sequential layers{nullptr};
};

// Small CNN for small images (Fashion-MNIST 28x28 grayscale by default):
//   features:   0 conv3x3(C,32,p1) 1 BN 2 ReLU 3 maxpool2
//               4 conv3x3(32,64,p1) 5 BN 6 ReLU 7 maxpool2
//   classifier: 0 Linear(64*(H/4)*(W/4), feature_dim) 1 ReLU
// Two pools need H, W >= 4.
class SmallCNNImpl : public BackboneImpl {
 public:
  SmallCNNImpl(const std::vector<int64_t>& input_shape, int64_t feature_dim);
  torch::Tensor forward(torch::Tensor x) override;
  int64_t feature_dim() const override { return feature_dim_; }
  std::string emit_torchscript(exporter::ScriptEmitter& e, const std::string& prefix,
                               const std::string& x) const override;

 private:
  int64_t feature_dim_;
  torch::nn::Sequential features{nullptr}, classifier{nullptr};
};

// torchvision AlexNet without classifier.6 (output: fc7, 4096 after ReLU).
class AlexNetImpl : public BackboneImpl {
 public:
  explicit AlexNetImpl(int64_t input_size);
  torch::Tensor forward(torch::Tensor x) override;
  int64_t feature_dim() const override { return 4096; }
  std::string emit_torchscript(exporter::ScriptEmitter& e, const std::string& prefix,
                               const std::string& x) const override;
  std::vector<std::string> dropped_prefixes() const override { return {"classifier.6."}; }

 private:
  int64_t input_size_;
  torch::nn::Sequential features{nullptr}, avgpool{nullptr}, classifier{nullptr};
};

// torchvision VGG16 (configuration D, no batch norm) without classifier.6.
class VGG16Impl : public BackboneImpl {
 public:
  explicit VGG16Impl(int64_t input_size);
  torch::Tensor forward(torch::Tensor x) override;
  int64_t feature_dim() const override { return 4096; }
  std::string emit_torchscript(exporter::ScriptEmitter& e, const std::string& prefix,
                               const std::string& x) const override;
  std::vector<std::string> dropped_prefixes() const override { return {"classifier.6."}; }

 private:
  int64_t input_size_;
  torch::nn::Sequential features{nullptr}, avgpool{nullptr}, classifier{nullptr};
};

// torchvision ResNet residual blocks (v1.5: stride in the 3x3 conv).
class ResNetBlockImpl : public torch::nn::Module {
 public:
  ResNetBlockImpl(int64_t in_planes, int64_t planes, int64_t stride, bool bottleneck);
  torch::Tensor forward(torch::Tensor x);
  std::string emit_torchscript(exporter::ScriptEmitter& e, const std::string& prefix,
                               const std::string& x) const;
  int64_t out_planes() const { return planes_ * (bottleneck_ ? 4 : 1); }

 private:
  int64_t planes_;
  bool bottleneck_;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(ResNetBlock);

// torchvision ResNet without fc: conv1 bn1 relu maxpool layer1..4 avgpool.
class ResNetImpl : public BackboneImpl {
 public:
  // depth: 18, 34 or 50.
  ResNetImpl(int depth, int64_t input_size);
  torch::Tensor forward(torch::Tensor x) override;
  int64_t feature_dim() const override { return feature_dim_; }
  std::string emit_torchscript(exporter::ScriptEmitter& e, const std::string& prefix,
                               const std::string& x) const override;
  std::vector<std::string> dropped_prefixes() const override { return {"fc."}; }

 private:
  int64_t input_size_;
  int64_t feature_dim_ = 0;
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  std::vector<torch::nn::Sequential> layers_;
};

}  // namespace hashlab::models
