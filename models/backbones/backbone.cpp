#include "models/backbones/backbone.h"

#include <algorithm>
#include <functional>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "csrc/core/error.h"
#include "models/backbones/nets.h"
#include "models/backbones/torch_save_reader.h"

namespace hashlab::models {

namespace {

// One entry per backbone: how to build it and what it accepts.
struct BackboneKind {
  std::function<Backbone(const BackboneOptions&, const std::vector<int64_t>& input_shape)> make;
  std::vector<std::string> own_keys;  // options only this backbone takes
  bool image_input = true;            // needs [C, H, W] (else anything, flattened)
  bool imagenet = false;              // 1 or 3 channels, torchvision weights (pretrained)
};

const std::map<std::string, BackboneKind>& backbone_kinds() {
  static const std::map<std::string, BackboneKind> kinds = [] {
    std::map<std::string, BackboneKind> k;
    k["mlp"] = {[](const BackboneOptions& o, const std::vector<int64_t>& shape) -> Backbone {
                  return std::make_shared<MLPImpl>(shape, o.widths, o.dropout);
                },
                {"widths", "dropout"}, false, false};
    k["small_cnn"] = {[](const BackboneOptions& o, const std::vector<int64_t>& shape) -> Backbone {
                        return std::make_shared<SmallCNNImpl>(shape, o.feature_dim);
                      },
                      {"feature_dim"}, true, false};
    k["alexnet"] = {[](const BackboneOptions& o, const std::vector<int64_t>&) -> Backbone {
                      return std::make_shared<AlexNetImpl>(o.input_size);
                    },
                    {}, true, true};
    k["vgg16"] = {[](const BackboneOptions& o, const std::vector<int64_t>&) -> Backbone {
                    return std::make_shared<VGG16Impl>(o.input_size);
                  },
                  {}, true, true};
    for (int depth : {18, 34, 50})
      k["resnet" + std::to_string(depth)] = {
          [depth](const BackboneOptions& o, const std::vector<int64_t>&) -> Backbone {
            return std::make_shared<ResNetImpl>(depth, o.input_size);
          },
          {}, true, true};
    return k;
  }();
  return kinds;
}

}  // namespace

std::vector<std::string> backbone_names() {
  std::vector<std::string> out;
  for (const auto& kv : backbone_kinds()) out.push_back(kv.first);
  return out;
}

BackboneOptions BackboneOptions::from_yaml(Section s) {
  BackboneOptions o;
  s.get_choice("name", o.name, backbone_names());
  s.get("pretrained", o.pretrained);
  // Options of one backbone given to another are a mistake, not a no-op.
  const BackboneKind& mine = backbone_kinds().at(o.name);
  for (const auto& [owner, kind] : backbone_kinds())
    for (const auto& key : kind.own_keys)
      if (s.has(key) && std::find(mine.own_keys.begin(), mine.own_keys.end(), key) ==
                            mine.own_keys.end())
        fail("{}: '{}' applies to the {} backbone only, not {}", s.where(key), key, owner, o.name);
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
  auto it = backbone_kinds().find(o.name);
  if (it == backbone_kinds().end())
    fail("unknown backbone '{}' (known: {})", o.name, fmt::join(backbone_names(), ", "));
  const BackboneKind& kind = it->second;
  if (!kind.imagenet)
    HL_CHECK(o.pretrained.empty(), "backbone {}: has no pretrained weights ('{}')", o.name,
             o.pretrained);
  if (kind.image_input)
    HL_CHECK(input_shape.size() == 3,
             "backbone '{}': needs image input [C, H, W], got [{}] (use backbone mlp for vectors)",
             o.name, fmt::join(input_shape, ", "));
  if (kind.imagenet)
    HL_CHECK(input_shape[0] == 1 || input_shape[0] == 3,
             "backbone '{}': needs 1 or 3 input channels, got {}", o.name, input_shape[0]);
  Backbone b = kind.make(o, input_shape);
  if (kind.imagenet && !o.pretrained.empty()) load_torchvision_state_dict(*b, o.pretrained);
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
