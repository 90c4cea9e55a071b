#include "trainers/method_state.h"

#include <algorithm>

#include "csrc/core/error.h"

namespace hashlab {

MethodState::MethodState(std::string owner) : owner_(std::move(owner)) {}

void MethodState::declare(Entry e) {
  for (const auto& x : entries_)
    HL_CHECK(x.name != e.name, "{} state: '{}' declared twice", owner_, e.name);
  entries_.push_back(std::move(e));
}

void MethodState::add_tensor(const std::string& name, torch::Dtype dtype) {
  declare({name, torch::zeros({0}, dtype)});
}

void MethodState::add_scalar(const std::string& name, double value, torch::Dtype dtype) {
  HL_CHECK(dtype == torch::kFloat64 || dtype == torch::kLong,
           "{} state: scalar '{}' must be float64 or int64", owner_, name);
  declare({name, torch::tensor(value, torch::kFloat64).to(dtype), /*scalar=*/true});
}

void MethodState::allow_missing(const std::string& name, std::optional<double> legacy) {
  Entry& e = entry(name);
  HL_CHECK(!legacy || e.scalar, "{} state: a legacy value is for a scalar, '{}' is a tensor",
           owner_, name);
  e.may_miss = true;
  e.legacy = legacy;
}

MethodState::Entry& MethodState::entry(const std::string& name) {
  for (auto& e : entries_)
    if (e.name == name) return e;
  fail("{} state: no entry '{}'", owner_, name);
}

const MethodState::Entry& MethodState::entry(const std::string& name) const {
  return const_cast<MethodState*>(this)->entry(name);
}

const torch::Tensor& MethodState::tensor(const std::string& name) const {
  return entry(name).value;
}

void MethodState::set(const std::string& name, torch::Tensor value) {
  Entry& e = entry(name);
  HL_CHECK(!e.scalar, "{} state: '{}' is a scalar (set_scalar)", owner_, name);
  e.value = value.defined() ? value.detach()
                            : torch::zeros({0}, e.value.options().device(torch::kCPU));
}

double MethodState::scalar(const std::string& name) const {
  const Entry& e = entry(name);
  HL_CHECK(e.scalar, "{} state: '{}' is a tensor, not a scalar", owner_, name);
  return e.value.item<double>();
}

void MethodState::set_scalar(const std::string& name, double value) {
  Entry& e = entry(name);
  HL_CHECK(e.scalar, "{} state: '{}' is a tensor (set)", owner_, name);
  e.value = torch::tensor(value, torch::kFloat64).to(e.value.scalar_type());
}

void MethodState::save(torch::serialize::OutputArchive& a) const {
  for (const auto& e : entries_) a.write(e.name, e.value.cpu());
}

void MethodState::load(torch::serialize::InputArchive& a) {
  for (auto& e : entries_) {
    torch::Tensor v;
    if (!a.try_read(e.name, v)) {
      if (!e.may_miss) fail("{} state: missing '{}'", owner_, e.name);
      if (e.legacy) set_scalar(e.name, *e.legacy);
      continue;  // a tensor entry keeps its value (unset in a fresh method)
    }
    if (e.scalar && v.numel() != 1)
      fail("{} state: '{}' holds {} values, expected one", owner_, e.name, v.numel());
    e.value = e.scalar ? v.reshape({}).to(e.value.scalar_type()) : v.to(e.value.device());
  }
}

void MethodState::to(torch::Device device) {
  for (auto& e : entries_)
    if (!e.scalar) e.value = e.value.to(device);
}

void MethodState::broadcast(DataParallel& dp, const std::vector<std::string>& names) {
  if (dp.world_size() <= 1) return;
  std::vector<torch::Tensor> shared;
  for (const auto& n : names) {
    HL_CHECK(is_set(n), "{} state: '{}' is broadcast before it is set", owner_, n);
    shared.push_back(tensor(n).to(torch::kCPU).contiguous().clone());
  }
  dp.broadcast(shared);
  for (size_t i = 0; i < names.size(); ++i) {
    Entry& e = entry(names[i]);
    e.value = shared[i].to(e.value.device());
  }
}

}  // namespace hashlab
