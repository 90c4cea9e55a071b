#include "trainers/data_parallel.h"

#include <chrono>
#include <cmath>

#include "csrc/core/distributed.h"
#include "csrc/core/error.h"
#include "csrc/core/logging.h"
#include "datasets/loader.h"

namespace hashlab {

DataParallel::DataParallel(c10::intrusive_ptr<c10d::ProcessGroup> group, std::string who)
    : group_(group && group->getSize() > 1 ? group : c10::intrusive_ptr<c10d::ProcessGroup>()),
      who_(std::move(who)) {}

int DataParallel::rank() const { return group_ ? group_->getRank() : 0; }
int DataParallel::world_size() const { return group_ ? group_->getSize() : 1; }

DataParallel::ScopeGuard::ScopeGuard(DataParallel& dp, LossScope scope, std::string optimizer)
    : dp_(dp) {
  dp_.in_closure_ = true;
  dp_.scope_ = scope;
  dp_.optimizer_ = std::move(optimizer);
}

DataParallel::ScopeGuard::~ScopeGuard() { dp_.in_closure_ = false; }

void DataParallel::note_global(const char* helper, const torch::Tensor& x) {
  if (in_closure_ && scope_ == LossScope::local && x.requires_grad())
    fail("method '{}' (optimizer '{}') declared its loss local (a mean over this rank's rows) "
         "but {} a tensor with a gradient: a loss built over every rank's rows is global; "
         "declare it so (LossScope::global)",
         who_, optimizer_, helper);
}

void DataParallel::check_cpu(const char* helper, const torch::Tensor& x) {
  HL_CHECK(x.device().is_cpu(),
           "{}: data-parallel training runs on the CPU (Gloo); got a tensor on {}", helper,
           x.device().str());
}

void DataParallel::wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  std::string why;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    work->wait();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    comm_seconds_ += dt;
    comm_by_op_[what] += dt;
    return;
  } catch (...) {
    why = dist::current_exception_text();
  }
  // Gloo's own words ("Connection closed by peer", "Timed out waiting ...")
  // with what was being done and the two usual causes.
  fail("data-parallel training, rank {} of {} at step {}: {} failed: another rank died, or was "
       "busy longer than the job's timeout (dist.timeout, or HASHLAB_DIST_TIMEOUT; rank 0's "
       "periodic evaluation and DeepQuan's k-means refresh must fit in it). Gloo: {}",
       rank(), world_size(), step_, what, why);
}

torch::Tensor DataParallel::all_gather(const torch::Tensor& x) {
  note_global("gathered", x);
  if (!group_) return x;
  check_cpu("all_gather", x);
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < world_size(); ++r) out[0].push_back(torch::empty_like(x.detach()));
  std::vector<at::Tensor> in = {x.detach().contiguous()};
  wait(group_->allgather(out, in), "all_gather");
  out[0][rank()] = x;  // this rank's rows keep their graph
  return torch::cat(out[0]);
}

torch::Tensor DataParallel::sum_over_ranks(const torch::Tensor& local) {
  note_global("summed over ranks", local);
  if (!group_) return local;
  check_cpu("sum_over_ranks", local);
  std::vector<at::Tensor> v = {local.detach().to(torch::kFloat64).contiguous().clone()};
  wait(group_->allreduce(v), "sum_over_ranks");
  // The sum's value, the same bits on every rank (local - local.detach() is
  // an exact zero), and the gradient of `local` (the other ranks' parts are
  // constants here).
  return v[0].to(local.scalar_type()) + (local - local.detach());
}

torch::Tensor DataParallel::mean_over_ranks(const torch::Tensor& local_mean) {
  if (!group_) {
    note_global("averaged over ranks", local_mean);
    return local_mean;
  }
  return sum_over_ranks(local_mean) / static_cast<double>(world_size());
}

torch::Tensor DataParallel::local_rows(const torch::Tensor& global) const {
  if (!group_) return global;
  const int64_t n = global.size(0), w = world_size();
  HL_CHECK(n % w == 0, "local_rows: {} rows do not split over {} ranks", n, w);
  const auto [lo, hi] = data::shard_rows(n, rank(), w);  // the loader's split
  return global.narrow(0, lo, hi - lo);
}

void DataParallel::broadcast(std::vector<torch::Tensor>& tensors) {
  if (!group_ || tensors.empty()) return;
  torch::NoGradGuard ng;
  // One flattened broadcast per dtype (Gloo takes one dtype per call): a
  // step's buffers (float statistics, int64 counters) cost two round trips,
  // not one per tensor.
  std::map<c10::ScalarType, std::vector<torch::Tensor*>> by_type;
  for (auto& t : tensors) {
    HL_CHECK(t.defined() && t.device().is_cpu(), "broadcast: needs defined CPU tensors");
    by_type[t.scalar_type()].push_back(&t);
  }
  for (auto& [type, ts] : by_type) {
    std::vector<torch::Tensor> flat;
    for (const auto* t : ts) flat.push_back(t->detach().reshape({-1}));
    std::vector<at::Tensor> v = {torch::cat(flat)};
    wait(group_->broadcast(v), "broadcast");
    int64_t off = 0;
    for (auto* t : ts) {
      t->detach().copy_(v[0].narrow(0, off, t->numel()).view_as(*t));
      off += t->numel();
    }
  }
}

torch::Tensor DataParallel::reduce_step(const std::vector<torch::Tensor>& params,
                                        std::vector<std::pair<std::string, torch::Tensor>>& losses,
                                        LossScope scope, const std::string& optimizer) {
  torch::Tensor value = losses.front().second;
  if (!group_) return value;
  // A global loss is the same on every rank and its gradients, each through
  // this rank's rows, add up; a local loss is one share of the mean: they average.
  allreduce_gradients(params, scope == LossScope::global);
  if (scope == LossScope::global)
    // One value on every rank (L-BFGS's line search branches on it).
    return torch::tensor(check_global_loss(value, optimizer), torch::kFloat64)
        .to(value.dtype())
        .reshape({});
  mean_values_over_ranks(losses);  // the loss the optimizer sees, and the logged values
  return losses.front().second;
}

void DataParallel::allreduce_gradients(const std::vector<torch::Tensor>& params, bool sum) {
  // Flattened buckets of about 16 MB (DDP's reducer does the same with 25 MB).
  constexpr int64_t kBucketElems = int64_t{4} << 20;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);  // unused this step
    grads.push_back(p.grad());
  }
  for (size_t i = 0; i < grads.size();) {
    size_t j = i;
    int64_t elems = 0;
    std::vector<torch::Tensor> flat;
    while (j < grads.size() && (j == i || elems + grads[j].numel() <= kBucketElems)) {
      flat.push_back(grads[j].reshape({-1}).to(torch::kCPU, torch::kFloat32));
      elems += grads[j].numel();
      ++j;
    }
    std::vector<at::Tensor> bucket = {torch::cat(flat)};
    wait(group_->allreduce(bucket), "the gradient all-reduce");
    if (!sum) bucket[0].div_(double(world_size()));
    int64_t off = 0;
    for (size_t g = i; g < j; ++g) {
      const int64_t n = grads[g].numel();
      grads[g].copy_(bucket[0].narrow(0, off, n).view_as(grads[g]));
      off += n;
    }
    i = j;
  }
}

double DataParallel::check_global_loss(const torch::Tensor& value, const std::string& name) {
  // Max and min over ranks in one collective.
  const double v = value.detach().to(torch::kCPU, torch::kFloat64).item<double>();
  std::vector<at::Tensor> mm = {torch::tensor({v, -v}, torch::kFloat64)};
  wait(group_->allreduce(mm, c10d::AllreduceOptions{c10d::ReduceOp::MAX}), "the global loss check");
  const double hi = mm[0][0].item<double>(), lo = -mm[0][1].item<double>();
  if (!(hi - lo <= 1e-5 * std::max(1.0, std::abs(hi))))
    fail("data-parallel training: method '{}' (optimizer '{}') declared a global loss (built "
         "over every rank's rows) that differs across ranks: {:.9g} to {:.9g}. Every term of "
         "such a loss must be global: gather the rows (all_gather) or reduce this rank's means "
         "(mean_over_ranks)",
         who_, name, lo, hi);
  return hi;
}

void DataParallel::mean_values_over_ranks(std::vector<std::pair<std::string, torch::Tensor>>& losses) {
  std::vector<double> local;
  for (const auto& kv : losses)
    local.push_back(kv.second.numel() == 1
                        ? kv.second.detach().to(torch::kCPU, torch::kFloat64).item<double>()
                        : 0.0);
  std::vector<at::Tensor> v = {torch::tensor(local, torch::kFloat64)};
  wait(group_->allreduce(v), "the mean of the logged values");
  v[0].div_(static_cast<double>(world_size()));
  const double* m = v[0].data_ptr<double>();
  for (size_t i = 0; i < losses.size(); ++i) {
    if (losses[i].second.numel() != 1) continue;
    losses[i].second =
        torch::tensor(m[i], torch::kFloat64).to(losses[i].second.dtype()).reshape({});
  }
}

bool DataParallel::any_rank(bool flag) {
  if (!group_) return flag;
  std::vector<at::Tensor> v = {torch::full({1}, flag ? 1 : 0, torch::kInt32)};
  wait(group_->allreduce(v, c10d::AllreduceOptions{c10d::ReduceOp::MAX}), "the stop flag");
  return v[0].item<int>() != 0;
}

void DataParallel::broadcast_module(torch::nn::Module& module, bool buffers_only) {
  if (!group_) return;
  std::vector<torch::Tensor> all;
  if (!buffers_only)
    for (const auto& p : module.parameters()) all.push_back(p);
  for (const auto& b : module.buffers()) all.push_back(b);
  broadcast(all);
}

void DataParallel::check_parameters_agree(torch::nn::Module& module) {
  if (!group_) return;
  torch::NoGradGuard ng;
  // A fingerprint of every parameter (weighted sums, double): equal on every
  // rank unless the replicas drifted apart.
  double f = 0;
  int64_t k = 0;
  for (const auto& p : module.parameters())
    f += (p.detach().to(torch::kCPU, torch::kFloat64).reshape({-1}) *
          torch::arange(1, p.numel() + 1, torch::kFloat64).mul_(1e-6).add_(double(++k)))
             .sum()
             .item<double>();
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < world_size(); ++r) out[0].push_back(torch::empty({1}, torch::kFloat64));
  std::vector<at::Tensor> in = {torch::full({1}, f, torch::kFloat64)};
  wait(group_->allgather(out, in), "the parameter check");
  for (int r = 1; r < world_size(); ++r)
    if (out[0][r].item<double>() != out[0][0].item<double>())
      fail("data-parallel training: the parameters of rank {} differ from rank 0's "
           "(fingerprints {:.17g} and {:.17g}); the replicas drifted apart",
           r, out[0][r].item<double>(), out[0][0].item<double>());
  if (rank() == 0)
    log().info("parameters agree on all {} ranks (fingerprint {:.17g})", world_size(), f);
}

}  // namespace hashlab
