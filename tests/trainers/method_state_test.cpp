// MethodState: one declaration per entry gives save, load (with legacy
// defaults and errors naming the entry), device moves and the archive layout
// the methods wrote by hand before it.
#include <sstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "csrc/core/error.h"
#include "trainers/method_state.h"

namespace hashlab {
namespace {

torch::serialize::InputArchive reopen(torch::serialize::OutputArchive& out) {
  std::ostringstream buf;
  out.save_to(buf);
  torch::serialize::InputArchive in;
  std::istringstream ibuf(buf.str());
  in.load_from(ibuf);
  return in;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

MethodState make() {
  MethodState s("demo");
  s.add_tensor("mean", torch::kFloat32);
  s.add_scalar("sigma", 0);
  s.add_scalar("initialised", 0, torch::kLong);
  s.add_scalar("rho", 1);
  s.allow_missing("rho", 1.0);
  return s;
}

TEST(MethodState, RoundTripKeepsValuesAndDtypes) {
  MethodState a = make();
  EXPECT_FALSE(a.is_set("mean"));
  a.set("mean", torch::tensor({1.5f, -2.25f}));
  a.set_scalar("sigma", 0.1);
  a.set_scalar("initialised", 1);
  a.set_scalar("rho", 3.0);
  torch::serialize::OutputArchive out;
  a.save(out);
  auto in = reopen(out);
  MethodState b = make();
  b.load(in);
  EXPECT_TRUE(b.is_set("mean"));
  EXPECT_TRUE(torch::equal(b.tensor("mean"), torch::tensor({1.5f, -2.25f})));
  EXPECT_EQ(b.scalar("sigma"), 0.1);  // a float64 scalar to the last bit
  EXPECT_EQ(b.scalar("initialised"), 1);
  EXPECT_EQ(b.tensor("initialised").scalar_type(), torch::kLong);
  EXPECT_EQ(b.scalar("rho"), 3.0);
}

// The layout the methods wrote by hand: each entry at the top level, a
// scalar as a 0-dim tensor, an unset tensor as an empty one.
TEST(MethodState, ReadsTheHandWrittenLayout) {
  torch::serialize::OutputArchive old;
  old.write("mean", torch::zeros({0}));
  old.write("sigma", torch::tensor(0.25, torch::kFloat64));
  old.write("initialised", torch::tensor(static_cast<int64_t>(0)));
  auto in = reopen(old);  // no "rho": written before it existed
  MethodState s = make();
  s.set_scalar("rho", 7);
  s.load(in);
  EXPECT_FALSE(s.is_set("mean"));
  EXPECT_EQ(s.scalar("sigma"), 0.25);
  EXPECT_EQ(s.scalar("rho"), 1.0);  // the legacy value, not what it held

  torch::serialize::OutputArchive out;
  s.save(out);
  auto back = reopen(out);
  torch::Tensor sigma, mean;
  ASSERT_TRUE(back.try_read("sigma", sigma));
  EXPECT_EQ(sigma.dim(), 0);
  EXPECT_EQ(sigma.scalar_type(), torch::kFloat64);
  ASSERT_TRUE(back.try_read("mean", mean));
  EXPECT_EQ(mean.numel(), 0);
  EXPECT_EQ(mean.scalar_type(), torch::kFloat32);
}

TEST(MethodState, AMissingOrMalformedEntryIsNamed) {
  torch::serialize::OutputArchive no_sigma;
  no_sigma.write("mean", torch::zeros({0}));
  no_sigma.write("initialised", torch::tensor(static_cast<int64_t>(0)));
  auto in = reopen(no_sigma);
  MethodState s = make();
  EXPECT_EQ(error_of([&] { s.load(in); }), "demo state: missing 'sigma'");

  torch::serialize::OutputArchive two;
  two.write("mean", torch::zeros({0}));
  two.write("sigma", torch::tensor({1.0, 2.0}, torch::kFloat64));
  two.write("initialised", torch::tensor(static_cast<int64_t>(0)));
  auto in2 = reopen(two);
  MethodState t = make();
  EXPECT_EQ(error_of([&] { t.load(in2); }), "demo state: 'sigma' holds 2 values, expected one");

  EXPECT_NE(error_of([&] { t.scalar("nope"); }).find("no entry 'nope'"), std::string::npos);
  EXPECT_NE(error_of([&] { t.set("sigma", torch::ones({1})); }).find("is a scalar"),
            std::string::npos);
  EXPECT_NE(error_of([&] { t.add_scalar("sigma", 1); }).find("declared twice"), std::string::npos);
}

TEST(MethodState, BroadcastWithOneProcessLeavesValues) {
  MethodState s = make();
  s.set("mean", torch::tensor({1.0f}));
  DataParallel dp(c10::intrusive_ptr<c10d::ProcessGroup>(), "test");
  s.broadcast(dp, {"mean", "sigma"});
  EXPECT_TRUE(torch::equal(s.tensor("mean"), torch::tensor({1.0f})));
  MethodState u = make();
  u.set_scalar("sigma", 2);
  // Nothing to share with one process; the check that the entry is set runs on N ranks.
  u.broadcast(dp, {"mean"});
  EXPECT_FALSE(u.is_set("mean"));
}

}  // namespace
}  // namespace hashlab
