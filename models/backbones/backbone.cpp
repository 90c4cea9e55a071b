#include "models/backbones/backbone.h"

#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "csrc/core/error.h"
#include "models/backbones/nets.h"
#include "models/backbones/torch_save_reader.h"

namespace hashlab::models {

BackboneOptions BackboneOptions::from_yaml(Section s) {
  BackboneOptions o;
  s.get_choice("name", o.name,
               {"mlp", "small_cnn", "alexnet", "vgg16", "resnet18", "resnet34", "resnet50"});
  s.get("pretrained", o.pretrained);
  // Options of one backbone given to another are a mistake, not a no-op.
  auto only_for = [&](const char* key, const char* owner) {
    if (s.has(key) && o.name != owner)
      fail("{}: '{}' applies to the {} backbone only, not {}", s.where(key), key, owner, o.name);
  };
  only_for("feature_dim", "small_cnn");
  only_for("widths", "mlp");
  only_for("dropout", "mlp");
  s.get("feature_dim", o.feature_dim, Range{1, 1 << 20});
  s.get("input_size", o.input_size, Range{0, 4096});
  s.get("widths", o.widths);
  s.get("dropout", o.dropout, Range{0, 0.999});
  for (int64_t w : o.widths)
    HL_CHECK(w > 0, "{}: widths must be positive, got {}", s.where("widths"), w);
  s.finish();
  return o;
}

Backbone make_backbone(const BackboneOptions& o, const std::vector<int64_t>& input_shape) {
  Backbone b;
  if (o.name == "mlp") {
    HL_CHECK(o.pretrained.empty(), "backbone mlp: has no pretrained weights ('{}')", o.pretrained);
    return std::make_shared<MLPImpl>(input_shape, o.widths, o.dropout);
  }
  HL_CHECK(input_shape.size() == 3,
           "backbone '{}': needs image input [C, H, W], got [{}] (use backbone mlp for vectors)",
           o.name, fmt::join(input_shape, ", "));
  if (o.name == "small_cnn") {
    HL_CHECK(o.pretrained.empty(), "backbone small_cnn: has no pretrained weights ('{}')",
             o.pretrained);
    b = std::make_shared<SmallCNNImpl>(input_shape, o.feature_dim);
  } else {
    HL_CHECK(input_shape[0] == 1 || input_shape[0] == 3,
             "backbone '{}': needs 1 or 3 input channels, got {}", o.name, input_shape[0]);
    if (o.name == "alexnet") {
      b = std::make_shared<AlexNetImpl>(o.input_size);
    } else if (o.name == "vgg16") {
      b = std::make_shared<VGG16Impl>(o.input_size);
    } else if (o.name == "resnet18") {
      b = std::make_shared<ResNetImpl>(18, o.input_size);
    } else if (o.name == "resnet34") {
      b = std::make_shared<ResNetImpl>(34, o.input_size);
    } else if (o.name == "resnet50") {
      b = std::make_shared<ResNetImpl>(50, o.input_size);
    } else {
      fail("unknown backbone '{}' (known: small_cnn, alexnet, vgg16, resnet18, resnet34, resnet50)",
           o.name);
    }
    if (!o.pretrained.empty()) load_torchvision_state_dict(*b, o.pretrained);
  }
  return b;
}

namespace {

bool starts_with_any(const std::string& key, const std::vector<std::string>& prefixes) {
  for (const auto& p : prefixes)
    if (key.rfind(p, 0) == 0) return true;
  return false;
}

std::string shape_str(torch::IntArrayRef s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

}  // namespace

void load_torchvision_state_dict(torch::nn::Module& module, const std::string& path,
                                 const std::vector<std::string>& ignored_prefixes) {
  std::map<std::string, torch::Tensor> file;
  for (auto& kv : read_torch_saved_tensors(path)) file[kv.first] = kv.second;

  std::map<std::string, torch::Tensor> mine;
  for (const auto& kv : module.named_parameters(/*recurse=*/true)) mine[kv.key()] = kv.value();
  for (const auto& kv : module.named_buffers(/*recurse=*/true)) mine[kv.key()] = kv.value();

  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& kv : mine) {
    auto it = file.find(kv.first);
    if (it == file.end()) {
      missing.push_back(kv.first);
    } else if (it->second.sizes() != kv.second.sizes()) {
      mismatched.push_back(fmt::format("{} (file {}, model {})", kv.first,
                                       shape_str(it->second.sizes()),
                                       shape_str(kv.second.sizes())));
    }
  }
  for (const auto& kv : file)
    if (!mine.count(kv.first) && !starts_with_any(kv.first, ignored_prefixes))
      unexpected.push_back(kv.first);
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string msg = fmt::format("state_dict {}: does not match the model", path);
    if (!missing.empty()) msg += fmt::format("; missing keys: {}", fmt::join(missing, ", "));
    if (!unexpected.empty())
      msg += fmt::format("; unexpected keys: {}", fmt::join(unexpected, ", "));
    if (!mismatched.empty())
      msg += fmt::format("; shape mismatches: {}", fmt::join(mismatched, ", "));
    throw Error(msg);
  }
  torch::NoGradGuard no_grad;
  for (auto& kv : mine) kv.second.copy_(file.at(kv.first));
}

void load_torchvision_state_dict(BackboneImpl& backbone, const std::string& path) {
  load_torchvision_state_dict(backbone, path, backbone.dropped_prefixes());
}

torch::Tensor imagenet_input(const torch::Tensor& x, int64_t input_size) {
  TORCH_CHECK(x.dim() == 4, "imagenet backbone: expected [N, C, H, W], got ", x.sizes());
  torch::Tensor y = x;
  if (y.size(1) == 1) y = y.repeat({1, 3, 1, 1});
  if (input_size > 0 && (y.size(2) != input_size || y.size(3) != input_size))
    y = torch::upsample_bilinear2d(y, {input_size, input_size}, /*align_corners=*/false);
  return y;
}

std::string emit_imagenet_input(exporter::ScriptEmitter& e, const std::string& x,
                                int64_t input_size) {
  e.line(fmt::format("if {}.size(1) == 1:", x));
  e.line(fmt::format("    {} = {}.repeat([1, 3, 1, 1])", x, x));
  if (input_size > 0) {
    e.line(fmt::format("if {x}.size(2) != {s} or {x}.size(3) != {s}:", fmt::arg("x", x),
                       fmt::arg("s", input_size)));
    e.line(fmt::format("    {x} = torch.upsample_bilinear2d({x}, [{s}, {s}], False, None, None)",
                       fmt::arg("x", x), fmt::arg("s", input_size)));
  }
  return x;
}

}  // namespace hashlab::models
