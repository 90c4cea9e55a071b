// Backbones: output shapes, torchvision parameter names, and the
// state_dict loader's error report.
#include <filesystem>
#include <fstream>
#include <set>

#include <unistd.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "csrc/core/config.h"
#include "csrc/core/error.h"
#include "models/backbones/backbone.h"
#include "models/backbones/nets.h"

namespace fs = std::filesystem;
using namespace hashlab::models;

namespace {

std::set<std::string> state_keys(torch::nn::Module& m) {
  std::set<std::string> keys;
  for (const auto& kv : m.named_parameters()) keys.insert(kv.key());
  for (const auto& kv : m.named_buffers()) keys.insert(kv.key());
  return keys;
}

Backbone make(const std::string& name, std::vector<int64_t> shape, int64_t input_size,
              int64_t feature_dim = 512) {
  BackboneOptions o;
  o.name = name;
  o.input_size = input_size;
  o.feature_dim = feature_dim;
  return make_backbone(o, shape);
}

// Writes {name: tensor} the way torch.save(state_dict) files are read back.
void write_state_dict(const std::string& path, const std::map<std::string, torch::Tensor>& sd) {
  c10::Dict<std::string, torch::Tensor> d;
  for (const auto& kv : sd) d.insert(kv.first, kv.second);
  std::vector<char> bytes = torch::pickle_save(c10::IValue(d));
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("hashlab_bb_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

}  // namespace

TEST(Backbones, SmallCNNShapesAndNames) {
  auto b = make("small_cnn", {1, 28, 28}, 0, 96);
  EXPECT_EQ(b->feature_dim(), 96);
  EXPECT_EQ(b->forward(torch::randn({3, 1, 28, 28})).sizes(), (std::vector<int64_t>{3, 96}));
  auto odd = make("small_cnn", {3, 10, 9}, 0, 32);
  EXPECT_EQ(odd->forward(torch::randn({2, 3, 10, 9})).sizes(), (std::vector<int64_t>{2, 32}));
  auto keys = state_keys(*b);
  for (const char* k : {"features.0.weight", "features.1.running_var", "features.4.weight",
                        "classifier.0.weight", "classifier.0.bias"})
    EXPECT_TRUE(keys.count(k)) << k;
  EXPECT_THROW(make("small_cnn", {1, 3, 3}, 0), hashlab::Error);
}

TEST(Backbones, MLPOnVectorsAndImages) {
  BackboneOptions o;
  o.name = "mlp";
  o.widths = {48, 16};
  auto b = make_backbone(o, {100});
  EXPECT_EQ(b->feature_dim(), 16);
  EXPECT_EQ(b->forward(torch::randn({5, 100})).sizes(), (std::vector<int64_t>{5, 16}));
  EXPECT_EQ(state_keys(*b), (std::set<std::string>{"layers.0.weight", "layers.0.bias",
                                                   "layers.2.weight", "layers.2.bias"}));
  // Images are flattened; no widths = the flattened input itself.
  auto img = make_backbone(o, {1, 4, 5});
  EXPECT_EQ(img->forward(torch::randn({2, 1, 4, 5})).sizes(), (std::vector<int64_t>{2, 16}));
  o.widths = {};
  auto id = make_backbone(o, {1, 4, 5});
  EXPECT_EQ(id->feature_dim(), 20);
  auto x = torch::randn({3, 1, 4, 5});
  EXPECT_TRUE(torch::equal(id->forward(x), x.flatten(1)));
  // Image backbones name the mlp for vector input.
  try {
    make("small_cnn", {100}, 0);
    FAIL() << "small_cnn accepted a vector";
  } catch (const hashlab::Error& e) {
    EXPECT_NE(std::string(e.what()).find("backbone mlp"), std::string::npos) << e.what();
  }
}

TEST(Backbones, ResNetShapesAndTorchvisionNames) {
  // Grayscale 20x20 input: channel repeated, resized to 32 inside forward.
  auto r18 = make("resnet18", {1, 20, 20}, 32);
  EXPECT_EQ(r18->feature_dim(), 512);
  EXPECT_EQ(r18->forward(torch::randn({2, 1, 20, 20})).sizes(), (std::vector<int64_t>{2, 512}));
  auto keys = state_keys(*r18);
  // torchvision's resnet18 state_dict has 122 entries, 2 of them fc.
  EXPECT_EQ(keys.size(), 120u);
  for (const char* k :
       {"conv1.weight", "bn1.running_mean", "bn1.num_batches_tracked", "layer1.0.conv1.weight",
        "layer1.0.bn1.running_mean", "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_var", "layer4.1.bn2.bias"})
    EXPECT_TRUE(keys.count(k)) << k;
  EXPECT_FALSE(keys.count("fc.weight"));
  EXPECT_FALSE(keys.count("layer1.0.downsample.0.weight"));

  auto r50 = make("resnet50", {3, 32, 32}, 0);
  r50->eval();  // batch of one: BN needs running statistics
  EXPECT_EQ(r50->feature_dim(), 2048);
  EXPECT_EQ(r50->forward(torch::randn({1, 3, 32, 32})).sizes(), (std::vector<int64_t>{1, 2048}));
  auto k50 = state_keys(*r50);
  EXPECT_EQ(k50.size(), 318u);  // torchvision: 320 with fc
  EXPECT_TRUE(k50.count("layer3.5.conv3.weight"));
  EXPECT_TRUE(k50.count("layer1.0.downsample.1.weight"));
  EXPECT_EQ(state_keys(*make("resnet34", {3, 32, 32}, 0)).size(), 216u);  // 218 with fc
}

TEST(Backbones, AlexNetAndVGG16ShapesAndTorchvisionNames) {
  torch::NoGradGuard no_grad;
  auto alex = make("alexnet", {1, 40, 40}, 64);
  alex->eval();
  EXPECT_EQ(alex->forward(torch::randn({2, 1, 40, 40})).sizes(), (std::vector<int64_t>{2, 4096}));
  auto ak = state_keys(*alex);
  EXPECT_EQ(ak.size(), 14u);  // torchvision: 16 with classifier.6
  for (const char* k : {"features.0.weight", "features.3.bias", "features.10.weight",
                        "classifier.1.weight", "classifier.4.bias"})
    EXPECT_TRUE(ak.count(k)) << k;
  EXPECT_FALSE(ak.count("classifier.6.weight"));

  auto vgg = make("vgg16", {3, 32, 32}, 0);
  vgg->eval();
  EXPECT_EQ(vgg->forward(torch::randn({1, 3, 32, 32})).sizes(), (std::vector<int64_t>{1, 4096}));
  auto vk = state_keys(*vgg);
  EXPECT_EQ(vk.size(), 30u);  // torchvision: 32 with classifier.6
  for (const char* k : {"features.0.weight", "features.28.weight", "classifier.0.weight",
                        "classifier.3.bias"})
    EXPECT_TRUE(vk.count(k)) << k;
}

TEST(Backbones, OptionsFromYaml) {
  auto cfg = hashlab::Config::from_string(
      "backbone: {name: resnet34, input_size: 112, pretrained: /x.pth}\n"
      "bad: {name: resnet19}\n"
      "typo: {name: small_cnn, feature_dimm: 3}\n"
      "mlp: {name: mlp, widths: [256, 64], dropout: 0.2}\n"
      "wrong_owner: {name: mlp, feature_dim: 64}\n"
      "bad_width: {name: mlp, widths: [0]}\n");
  auto o = BackboneOptions::from_yaml(cfg.section("backbone"));
  EXPECT_EQ(o.name, "resnet34");
  EXPECT_EQ(o.input_size, 112);
  EXPECT_EQ(o.pretrained, "/x.pth");
  EXPECT_THROW(BackboneOptions::from_yaml(cfg.section("bad")), hashlab::Error);
  EXPECT_THROW(BackboneOptions::from_yaml(cfg.section("typo")), hashlab::Error);
  auto m = BackboneOptions::from_yaml(cfg.section("mlp"));
  EXPECT_EQ(m.widths, (std::vector<int64_t>{256, 64}));
  EXPECT_DOUBLE_EQ(m.dropout, 0.2);
  EXPECT_THROW(BackboneOptions::from_yaml(cfg.section("wrong_owner")), hashlab::Error);
  EXPECT_THROW(BackboneOptions::from_yaml(cfg.section("bad_width")), hashlab::Error);
}

TEST(Backbones, StateDictLoadsAndReportsEveryProblem) {
  auto b = make("small_cnn", {1, 8, 8}, 0, 16);
  std::map<std::string, torch::Tensor> sd;
  for (const auto& kv : b->named_parameters()) sd[kv.key()] = torch::randn(kv.value().sizes());
  for (const auto& kv : b->named_buffers()) sd[kv.key()] = kv.value().clone();
  sd["features.1.running_var"] = torch::rand({32}) + 0.5;

  std::string good = temp_path("good.pt");
  write_state_dict(good, sd);
  load_torchvision_state_dict(*b, good, {});
  EXPECT_TRUE(torch::equal(b->named_parameters()["features.0.weight"], sd["features.0.weight"]));
  EXPECT_TRUE(torch::equal(b->named_buffers()["features.1.running_var"],
                           sd["features.1.running_var"]));

  auto bad = sd;
  bad.erase("features.4.bias");
  bad.erase("classifier.0.weight");
  bad["head.weight"] = torch::zeros({2});
  bad["features.0.weight"] = torch::zeros({32, 1, 5, 5});
  std::string bad_path = temp_path("bad.pt");
  write_state_dict(bad_path, bad);
  try {
    load_torchvision_state_dict(*b, bad_path, {});
    FAIL() << "no error";
  } catch (const hashlab::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(bad_path), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing keys: classifier.0.weight, features.4.bias"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("unexpected keys: head.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("features.0.weight (file [32, 1, 5, 5], model [32, 1, 3, 3])"),
              std::string::npos)
        << msg;
  }
  // Ignored prefixes (a dropped classifier) are not unexpected.
  auto with_head = sd;
  with_head["fc.weight"] = torch::zeros({10, 16});
  std::string head_path = temp_path("head.pt");
  write_state_dict(head_path, with_head);
  EXPECT_THROW(load_torchvision_state_dict(*b, head_path, {}), hashlab::Error);
  EXPECT_NO_THROW(load_torchvision_state_dict(*b, head_path, {"fc."}));

  std::string junk = temp_path("junk.pt");
  std::ofstream(junk) << "not a pickle";
  EXPECT_THROW(load_torchvision_state_dict(*b, junk, {}), hashlab::Error);
  EXPECT_THROW(load_torchvision_state_dict(*b, temp_path("absent.pt"), {}), hashlab::Error);
  for (const auto& p : {good, bad_path, head_path, junk}) fs::remove(p);
}
