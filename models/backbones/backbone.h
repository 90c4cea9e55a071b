// Feature extractors for deep hashing: a backbone maps an input batch
// [N, C, H, W] (already normalised, as the loader yields it) to features
// [N, feature_dim()]. The classifier head of the published networks is
// dropped; methods put their own head (HashNet's fch) on top.
//
//   name         input                         feature_dim   torchvision names
//   mlp          any shape, flattened to D      widths.back() layers.{0,2,..}: Linear (ReLU between)
//   small_cnn    [C, H, W], any small size      feature_dim   (own layout, below)
//   alexnet      [1|3, H, W] -> 3 x input_size  4096 (fc7)    features.*, classifier.{1,4}
//   vgg16        [1|3, H, W] -> 3 x input_size  4096 (fc7)    features.*, classifier.{0,3}
//   resnet18/34  [1|3, H, W] -> 3 x input_size  512           conv1, bn1, layer1..4, (fc dropped)
//   resnet50     [1|3, H, W] -> 3 x input_size  2048
//
// ImageNet networks repeat a grayscale channel three times and resize inputs
// whose spatial size is not input_size x input_size bilinearly
// (align_corners false) inside forward; input_size 0 keeps the input's size.
// Parameter and buffer names equal torchvision's, so a Python
// `torch.save(model.state_dict(), f)` loads with load_torchvision_state_dict.
//
// YAML (`model.backbone`):
//   name: small_cnn       # mlp | small_cnn | alexnet | vgg16 | resnet18 | resnet34 | resnet50
//   widths: [1024, 1024]  # mlp only: hidden widths, each Linear + ReLU; [] = the raw input
//   dropout: 0            # mlp only: dropout after each ReLU while training
//   pretrained: ""        # path to a torchvision state_dict (.pth), ImageNet nets only
//   feature_dim: 512      # small_cnn only
//   input_size: 224       # ImageNet nets: side the input is resized to; 0 = keep
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "csrc/core/config.h"
#include "csrc/export/script_emitter.h"

namespace hashlab::models {

struct BackboneOptions {
  std::string name = "small_cnn";
  std::string pretrained;
  int64_t feature_dim = 512;
  int64_t input_size = 224;
  std::vector<int64_t> widths = {1024, 1024};  // mlp
  double dropout = 0.0;                        // mlp

  static BackboneOptions from_yaml(Section s);
};

class BackboneImpl : public torch::nn::Module {
 public:
  // x: float [N, C, H, W] -> features float [N, feature_dim()].
  virtual torch::Tensor forward(torch::Tensor x) = 0;
  virtual int64_t feature_dim() const = 0;
  // Writes the same computation as forward() (eval mode) as TorchScript on
  // input variable `x`, its tensors named "<prefix><state_dict name>";
  // returns the feature variable.
  virtual std::string emit_torchscript(exporter::ScriptEmitter& e, const std::string& prefix,
                                       const std::string& x) const = 0;
  // Key prefixes of a torchvision checkpoint that belong to the dropped
  // classifier (ignored when loading, e.g. "fc.").
  virtual std::vector<std::string> dropped_prefixes() const { return {}; }
};
using Backbone = std::shared_ptr<BackboneImpl>;

// The registered backbones (one entry each in backbone.cpp's table: builder,
// own options, input kind).
std::vector<std::string> backbone_names();

// input_shape: one example, [C, H, W]. Loads options.pretrained when set.
Backbone make_backbone(const BackboneOptions& options, const std::vector<int64_t>& input_shape);

// Loads a state_dict written by Python's torch.save(model.state_dict(), path)
// (read by torch_save_reader.h, as torch::pickle_load cannot read one) into `module` (matched by name; tensors copied, dtype converted). Keys
// starting with one of `ignored_prefixes` are skipped. Throws one
// hashlab::Error listing every missing key, unexpected key and shape
// mismatch when there is any.
void load_torchvision_state_dict(torch::nn::Module& module, const std::string& path,
                                 const std::vector<std::string>& ignored_prefixes = {});
// The same, for a backbone (its dropped_prefixes() ignored).
void load_torchvision_state_dict(BackboneImpl& backbone, const std::string& path);

// ---- helpers shared by the ImageNet backbones (eager and TorchScript twins).
// Repeats a single channel to 3 and resizes to input_size (see above).
torch::Tensor imagenet_input(const torch::Tensor& x, int64_t input_size);
std::string emit_imagenet_input(exporter::ScriptEmitter& e, const std::string& x,
                                int64_t input_size);

}  // namespace hashlab::models
