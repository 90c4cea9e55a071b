#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "csrc/core/config.h"

namespace fs = std::filesystem;
using hashlab::Config;
using hashlab::Error;
using hashlab::Range;
using hashlab::Section;

namespace {

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("hl_config_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_ / "_base_");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& rel, const std::string& text) {
    fs::path p = dir_ / rel;
    std::ofstream(p) << text;
    return p.string();
  }
  std::string message_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected hashlab::Error";
    return "";
  }
  fs::path dir_;
};

TEST_F(ConfigTest, BaseChainMergesInOrderAndFileWins) {
  write("_base_/a.yaml", "model:\n  bits: 16\n  depth: 3\noptim:\n  lr: 0.1\n");
  write("_base_/b.yaml", "model:\n  bits: 32\nlist: [1, 2, 3]\n");
  auto path = write("x.yaml", "_base_: [_base_/a.yaml, _base_/b.yaml]\nmodel:\n  depth: 5\nlist: [9]\n");
  Config c = Config::load(path);
  Section m = c.section("model");
  int bits = 0, depth = 0;
  m.get("bits", bits).get("depth", depth);
  EXPECT_EQ(bits, 32);   // b overrides a
  EXPECT_EQ(depth, 5);   // the file overrides its bases
  std::vector<int> list;
  c.root().get("list", list);
  EXPECT_EQ(list, std::vector<int>{9});  // lists replace, not append
  double lr = 0;
  c.section("optim").get("lr", lr);
  EXPECT_DOUBLE_EQ(lr, 0.1);
  EXPECT_EQ(c.dump().find("_base_"), std::string::npos);
}

TEST_F(ConfigTest, SingleBaseAndRelativePaths) {
  fs::create_directories(dir_ / "sub");
  write("_base_/d.yaml", "data:\n  format: idx\n");
  auto path = write("sub/x.yaml", "_base_: ../_base_/d.yaml\n");
  Config c = Config::load(path);
  std::string fmt;
  c.section("data").get("format", fmt);
  EXPECT_EQ(fmt, "idx");
}

TEST_F(ConfigTest, MissingBaseAndCycleAreErrors) {
  auto p1 = write("x.yaml", "_base_: nothere.yaml\n");
  EXPECT_NE(message_of([&] { Config::load(p1); }).find("nothere.yaml"), std::string::npos);
  write("_base_/c1.yaml", "_base_: c2.yaml\n");
  write("_base_/c2.yaml", "_base_: c1.yaml\n");
  auto p2 = write("y.yaml", "_base_: _base_/c1.yaml\n");
  EXPECT_NE(message_of([&] { Config::load(p2); }).find("cycle"), std::string::npos);
}

TEST_F(ConfigTest, OverridesAreTypedByYaml) {
  auto path = write("x.yaml", "model:\n  bits: 16\noptim:\n  lr: 0.1\n");
  Config c = Config::load(path, {"model.bits=64", "optim.lr=1e-3", "data.files=[a.gz,b.gz]",
                                 "train.amp=true", "new.deep.key=x"});
  int bits = 0;
  double lr = 0;
  std::vector<std::string> files;
  bool amp = false;
  c.section("model").get("bits", bits);
  c.section("optim").get("lr", lr);
  c.section("data").get("files", files);
  c.section("train").get("amp", amp);
  EXPECT_EQ(bits, 64);
  EXPECT_DOUBLE_EQ(lr, 1e-3);
  EXPECT_EQ(files, (std::vector<std::string>{"a.gz", "b.gz"}));
  EXPECT_TRUE(amp);
  EXPECT_EQ(c.where("model.bits"), "command line 'model.bits=64'");
}

TEST_F(ConfigTest, BadOverrideSyntax) {
  auto path = write("x.yaml", "model:\n  bits: 16\n");
  EXPECT_NE(message_of([&] { Config::load(path, {"model.bits"}); }).find("key.path=value"),
            std::string::npos);
  EXPECT_NE(message_of([&] { Config::load(path, {"model.bits.x=1"}); }).find("not a mapping"),
            std::string::npos);
}

TEST_F(ConfigTest, UnknownKeyNamesFileLineColumnAndSuggestion) {
  auto path = write("x.yaml", "model:\n  bits: 16\n  lerning_rate: 3\n");
  Config c = Config::load(path);
  Section m = c.section("model");
  int bits = 0;
  double lr = 0;
  m.get("bits", bits).get("learning_rate", lr);
  std::string msg = message_of([&] { m.finish(); });
  EXPECT_NE(msg.find(path + ":3:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key 'model.lerning_rate'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'model.learning_rate'"), std::string::npos) << msg;
}

TEST_F(ConfigTest, UnknownKeyWithoutCloseMatchHasNoSuggestion) {
  auto path = write("x.yaml", "model:\n  zzzzzzzz: 1\n");
  Config c = Config::load(path);
  Section m = c.section("model");
  int bits = 0;
  m.get("bits", bits);
  std::string msg = message_of([&] { m.finish(); });
  EXPECT_NE(msg.find("unknown key 'model.zzzzzzzz'"), std::string::npos);
  EXPECT_EQ(msg.find("did you mean"), std::string::npos);
}

TEST_F(ConfigTest, WrongTypeAndRangeErrors) {
  auto path = write("x.yaml", "model:\n  bits: abc\n  lr: -1\n  flag: maybe\n  sub: 3\n");
  Config c = Config::load(path);
  Section m = c.section("model");
  int bits = 0;
  std::string msg = message_of([&] { m.get("bits", bits); });
  EXPECT_NE(msg.find(path + ":2:3: model.bits: expected an integer, got 'abc'"), std::string::npos)
      << msg;
  double lr = 0;
  msg = message_of([&] { m.get("lr", lr, Range{0, 1}); });
  EXPECT_NE(msg.find("model.lr: value -1 is out of range [0, 1]"), std::string::npos) << msg;
  bool flag = false;
  msg = message_of([&] { m.get("flag", flag); });
  EXPECT_NE(msg.find("expected true or false"), std::string::npos) << msg;
  msg = message_of([&] { m.sub("sub"); });
  EXPECT_NE(msg.find("expected a mapping"), std::string::npos) << msg;
}

TEST_F(ConfigTest, ChoiceSuggestsClosest) {
  auto path = write("x.yaml", "optim:\n  type: adamm\n");
  Config c = Config::load(path);
  Section s = c.section("optim");
  std::string type = "sgd";
  std::string msg = message_of([&] { s.get_choice("type", type, {"sgd", "adam", "adamw"}); });
  EXPECT_NE(msg.find("did you mean 'adam"), std::string::npos) << msg;
}

TEST_F(ConfigTest, RequiredKeyMissing) {
  Config c = Config::from_string("a: 1\n", "inline.yaml");
  std::string msg = message_of([&] { c.root().require<std::string>("method"); });
  EXPECT_NE(msg.find("method: required key is missing"), std::string::npos) << msg;
}

TEST_F(ConfigTest, YamlSyntaxErrorNamesPosition) {
  auto path = write("x.yaml", "model:\n  bits: [1, 2\n");
  std::string msg = message_of([&] { Config::load(path); });
  EXPECT_NE(msg.find(path + ":"), std::string::npos) << msg;
}

// A "billion laughs" of YAML aliases: each level lists the one before 8
// times, so a few hundred bytes stand for 8^6 = 262,144 values (the 529-byte
// bomb of issue 24 stood for billions). It is refused quickly, naming the
// file, instead of being expanded by whatever walks the tree.
TEST_F(ConfigTest, YamlAliasBombIsRefusedNamingTheFile) {
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x]\n";
  for (int level = 1; level <= 6; ++level) {
    const std::string prev = "*a" + std::to_string(level - 1);
    text += "a" + std::to_string(level) + ": &a" + std::to_string(level) + " [";
    for (int i = 0; i < 8; ++i) text += (i ? ", " : "") + prev;
    text += "]\n";
  }
  const std::string path = write("bomb.yaml", text);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string m = message_of([&] { Config::load(path); });
  EXPECT_NE(m.find(path), std::string::npos) << m;
  EXPECT_NE(m.find("aliases"), std::string::npos) << m;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  // The same through a base file, a string and an override.
  const std::string child = write("child.yaml", "_base_: bomb.yaml\n");
  EXPECT_NE(message_of([&] { Config::load(child); }).find(path), std::string::npos);
  EXPECT_NE(message_of([&] { Config::from_string(text, "inline"); }).find("inline"),
            std::string::npos);
  const std::string ok = write("ok.yaml", "a: 1\n");
  std::string flow = "x=[";
  for (int i = 0; i < 19; ++i) flow += std::string(i ? ", " : "") + "&v" + std::to_string(i) + " [" +
                                        (i ? "*v" + std::to_string(i - 1) + ", *v" + std::to_string(i - 1) : "1, 1") + "]";
  flow += "]";
  EXPECT_NE(message_of([&] { Config::load(ok, {flow}); }).find("aliases"), std::string::npos);
  // Aliases in a config of ordinary size still load.
  const std::string small = write("small.yaml", "a: &w [1, 2]\nb: *w\n");
  EXPECT_EQ(Config::load(small).node()["b"][1].as<int>(), 2);
}

TEST(DidYouMean, PicksNearestWithinDistance) {
  EXPECT_EQ(hashlab::did_you_mean("bitz", {"bits", "batch_size", "lr"}), "bits");
  EXPECT_EQ(hashlab::did_you_mean("momentun", {"momentum", "nesterov"}), "momentum");
  EXPECT_EQ(hashlab::did_you_mean("xyz", {"momentum", "nesterov"}), "");
}

TEST(ResolveThreads, AutoAndNumbers) {
  EXPECT_GE(hashlab::resolve_threads("auto", "t"), 1);
  EXPECT_EQ(hashlab::resolve_threads("3", "t"), 3);
  EXPECT_THROW(hashlab::resolve_threads("0", "t"), Error);
  EXPECT_THROW(hashlab::resolve_threads("many", "t"), Error);
}

}  // namespace
