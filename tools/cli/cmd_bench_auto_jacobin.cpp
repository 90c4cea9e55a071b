// Benchmarks of Auto-JacoBin's two expensive parts:
// hashlab bench jacobian: the closed-form Jacobian term
// (models/auto_jacobin/jacobian_term.h) against autograd double backward
// through dz/dx, one batch's value and gradients: time and peak memory.
// hashlab bench tangents: the local tangent bases (tangents.h) of n images:
// time of the kNN and of the local PCA, and accuracy against an exact eigh on
// a sample of the points.
//
// Each measurement runs in its own child process, so its peak resident memory
// (ru_maxrss from wait4) is its own; "extra" subtracts the peak of a child that
// only builds the inputs.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <torch/torch.h>

#include "csrc/core/error.h"
#include "datasets/dataset.h"
#include "datasets/readers/idx.h"
#include "models/auto_jacobin/jacobian_term.h"
#include "models/auto_jacobin/tangents.h"
#include "models/common/shallow.h"
#include "tools/cli/commands.h"

namespace {

struct Opts {
  int64_t D = 784, d = 32, B = 1000;
  int threads = 2;
  std::string dtype = "float32";
  uint64_t seed = 0;
  bool reference = true;
};

struct Measured {
  double seconds = 0, value = 0, grad_norm = 0;
  long maxrss_kib = 0;
  bool ok = false;
};

// mode 0: inputs only; 1: closed form; 2: autograd double backward.
Measured measure(const Opts& o, int mode) {
  at::set_num_threads(o.threads);
  torch::manual_seed(o.seed);
  auto opt = torch::TensorOptions().dtype(o.dtype == "float64" ? torch::kFloat64 : torch::kFloat32);
  auto x = torch::rand({o.B, o.D}, opt) * (0.8 / std::sqrt(double(o.D) / 3.0));
  auto W1 = (torch::randn({o.d, o.D}, opt) / std::sqrt(double(o.D))).requires_grad_(true);
  auto b1 = torch::zeros({o.d}, opt).requires_grad_(true);
  auto W2 = (torch::randn({o.D, o.d}, opt) / std::sqrt(double(o.d))).requires_grad_(true);
  auto b2 = torch::zeros({o.D}, opt).requires_grad_(true);
  auto T = std::get<0>(torch::linalg_qr(torch::randn({o.B, o.D, o.d}, opt)));
  Measured m;
  if (mode == 0) {
    m.ok = true;
    return m;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto J = mode == 1 ? hashlab::models::jacobian_term(x, W1, b1, W2, b2, T)
                     : hashlab::models::jacobian_term_reference(x, W1, b1, W2, b2, T);
  auto g = torch::autograd::grad({J}, {W1, b1, W2, b2});
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m.value = J.item<double>();
  double sq = 0;
  for (const auto& t : g) sq += t.pow(2).sum().item<double>();
  m.grad_norm = std::sqrt(sq);
  m.ok = true;
  return m;
}

Measured in_child(const Opts& o, int mode) {
  int fds[2];
  if (::pipe(fds) != 0) hashlab::fail("bench jacobian: pipe failed");
  const pid_t pid = ::fork();
  if (pid < 0) hashlab::fail("bench jacobian: fork failed");
  if (pid == 0) {
    ::close(fds[0]);
    Measured m;
    try {
      m = measure(o, mode);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench jacobian: %s\n", e.what());
    }
    ssize_t w = ::write(fds[1], &m, sizeof m);
    (void)w;
    ::_exit(m.ok ? 0 : 1);
  }
  ::close(fds[1]);
  Measured m;
  ssize_t n = ::read(fds[0], &m, sizeof m);
  ::close(fds[0]);
  int status = 0;
  struct rusage ru {};
  ::wait4(pid, &status, 0, &ru);
  if (n != sizeof m || !WIFEXITED(status)) m.ok = false;
  m.maxrss_kib = ru.ru_maxrss;
  return m;
}

void run(const Opts& o) {
  HL_CHECK(o.D >= 1 && o.d >= 1 && o.d <= o.D && o.B >= 1,
           "bench jacobian: need 1 <= d <= D and B >= 1, got D {} d {} B {}", o.D, o.d, o.B);
  HL_CHECK(o.dtype == "float32" || o.dtype == "float64",
           "bench jacobian: --dtype must be float32 or float64, got '{}'", o.dtype);
  std::cout << fmt::format("Jacobian term, one batch, value + gradients: D={} d={} B={} {} threads={}\n",
                           o.D, o.d, o.B, o.dtype, o.threads);
  const Measured base = in_child(o, 0);
  const Measured closed = in_child(o, 1);
  const Measured ref = o.reference ? in_child(o, 2) : Measured{};
  auto mib = [&](const Measured& m) { return (m.maxrss_kib - base.maxrss_kib) / 1024.0; };
  std::cout << fmt::format("{:<28}{:>10}{:>16}{:>16}{:>14}\n", "", "seconds", "extra peak MiB",
                           "value", "|grad|");
  for (auto [name, m] : {std::pair<const char*, const Measured&>{"closed form (ours)", closed},
                         {"autograd double backward", ref}}) {
    if (!m.ok) {
      std::cout << fmt::format("{:<28}{}\n", name,
                               &m == &ref && !o.reference ? "skipped (--no-reference)"
                                                          : "failed (out of memory?)");
      continue;
    }
    std::cout << fmt::format("{:<28}{:>10.3f}{:>16.0f}{:>16.6g}{:>14.6g}\n", name, m.seconds,
                             mib(m), m.value, m.grad_norm);
  }
  if (closed.ok && ref.ok) {
    std::cout << fmt::format(
        "speed-up {:.1f}x, memory {:.1f}x less; value rel. diff {:.2e}, |grad| rel. diff {:.2e}\n",
        ref.seconds / closed.seconds, mib(ref) / std::max(1.0, mib(closed)),
        std::abs(closed.value - ref.value) / std::abs(ref.value),
        std::abs(closed.grad_norm - ref.grad_norm) / std::abs(ref.grad_norm));
  }
}

struct TangentBench {
  std::string data = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
  int64_t n = 10000, d = 32, check = 100;
  int threads = 2;
  bool floor = false;
  hashlab::models::TangentOptions opts;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The Jacobian term's floor. Any network z(x) = tanh(W2 tanh(W1 x + b1) + b2)
// has Jacobians G_i = diag(r_i) W2 diag(s_i) W1 whose rows lie in S = the row
// space of W1 (d dimensions), so ||G_i - T_i T_i^T||^2 >= ||T_i T_i^T (I - P_S)||^2
// = kept_i - ||P_S T_i||_F^2. The S that minimises the sum is spanned by the top
// d eigenvectors of M = (1/n) sum_i T_i T_i^T, giving the floor
// mean(kept) - (sum of M's top d eigenvalues). Also printed: the same residual
// for S = the data's top-d PCA subspace (where training starts, and what the
// reconstruction term alone favours).
void print_floor(const torch::Tensor& X, const hashlab::models::Tangents& t, int64_t d) {
  const int64_t n = t.T.size(0), D = t.T.size(1);
  auto A = t.T.permute({1, 0, 2}).reshape({D, n * d}).to(torch::kFloat64);
  auto M = torch::mm(A, A.t()) / double(n);  // [D, D]
  auto eig = torch::linalg_eigvalsh(M).flip(0);
  const double kept = t.kept.to(torch::kFloat64).mean().item<double>();
  const double best = eig.narrow(0, 0, d).sum().item<double>();
  auto Xd = X.to(torch::kFloat64);
  auto P = hashlab::models::pca_directions(Xd - Xd.mean(0), d);  // [D, d]
  const double pca = torch::mm(P.t(), torch::mm(M, P)).trace().item<double>();
  std::cout << fmt::format(
      "Jacobian term floor per item, any network with a {}-dim code subspace: {:.2f} (the best "
      "subspace holds {:.2f} of the {:.2f} tangent directions); with the data's top-{} PCA "
      "subspace: {:.2f} (it holds {:.2f})\n",
      d, kept - best, best, kept, d, kept - pca, pca);
}

void run_tangents(TangentBench b) {
  at::set_num_threads(b.threads);
  auto images = hashlab::data::to_tensor(hashlab::data::read_idx(b.data));
  HL_CHECK(images.size(0) >= b.n, "bench tangents: {} holds {} images, fewer than --n {}", b.data,
           images.size(0), b.n);
  auto X = images.narrow(0, 0, b.n).reshape({b.n, -1}).to(torch::kFloat32) / 255.0;
  X = X * (0.8 / X.norm(2, 1).max().item<double>());  // Auto-JacoBin's scaling
  b.opts.d = b.d;
  const int64_t D = X.size(1);
  const int64_t k = b.opts.neighbours > 0 ? b.opts.neighbours : D + b.d;
  std::cout << fmt::format("local tangents: {} first images of {}, D={} d={} k={} energy={} "
                           "iters={} oversample={} threads={}\n",
                           b.n, b.data, D, b.d, k, b.opts.energy, b.opts.iters,
                           b.opts.oversample, b.threads);
  auto t0 = std::chrono::steady_clock::now();
  hashlab::models::nearest_neighbours(X, k);
  const double t_knn = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  auto fast = hashlab::models::local_tangents(X, b.opts);
  const double t_all = seconds_since(t0);
  std::cout << fmt::format("kNN {:.1f} s, local PCA {:.1f} s, total {:.1f} s; kept directions: "
                           "mean {:.1f}, min {}, max {}\n",
                           t_knn, t_all - t_knn, t_all, fast.kept.to(torch::kFloat64).mean().item<double>(),
                           fast.kept.min().item<int64_t>(), fast.kept.max().item<int64_t>());
  if (b.floor) print_floor(X, fast, b.d);
  if (b.check <= 0) return;
  auto rows = torch::randperm(b.n, torch::kLong).narrow(0, 0, std::min(b.check, b.n));
  t0 = std::chrono::steady_clock::now();
  auto exact = hashlab::models::local_tangents_exact(X, b.opts, rows);
  const double t_exact = seconds_since(t0);
  // The local energy the fast basis holds over what the exact top directions
  // hold (1 = as good as exact; near-equal eigenvalues make the directions
  // themselves ill-determined, so they are not compared).
  auto ratio = fast.captured.index_select(0, rows).to(torch::kFloat64) /
               exact.captured.to(torch::kFloat64).clamp_min(1e-30);
  auto same = fast.kept.index_select(0, rows).eq(exact.kept);
  std::cout << fmt::format(
      "against exact eigh on {} random points ({:.1f} s, i.e. {:.0f} s for all {}): same kept "
      "count for {:.1f}%; captured energy / exact: median {:.5f}, min {:.5f}\n",
      rows.size(0), t_exact, t_exact / rows.size(0) * b.n, b.n,
      100.0 * same.to(torch::kFloat64).mean().item<double>(), ratio.median().item<double>(),
      ratio.min().item<double>());
}

void add(CLI::App& app) {
  auto* g = hashlab::cli::group(app, "bench", "Benchmarks");
  {
    auto* c = g->add_subcommand("tangents", "Auto-JacoBin's local tangent bases: time (kNN, local "
                                            "PCA) and accuracy against an exact eigh");
    auto b = std::make_shared<TangentBench>();
    c->add_option("--data", b->data, "idx images")->capture_default_str();
    c->add_option("--n", b->n, "images (the first n)")->capture_default_str();
    c->add_option("--d", b->d, "directions (bits)")->capture_default_str();
    c->add_option("--k", b->opts.neighbours, "neighbours (0: D + d)")->capture_default_str();
    c->add_option("--energy", b->opts.energy, "energy share kept")->capture_default_str();
    c->add_option("--iters", b->opts.iters, "subspace iterations")->capture_default_str();
    c->add_option("--oversample", b->opts.oversample, "extra directions")->capture_default_str();
    c->add_option("--check", b->check, "points checked against exact eigh")->capture_default_str();
    c->add_flag("--floor", b->floor,
                "also print the Jacobian term's floor for a d-dim code subspace (the best one, "
                "and the data's PCA subspace)");
    c->add_option("--threads", b->threads, "CPU threads")->check(CLI::Range(1, 4096))->capture_default_str();
    c->callback([b] { run_tangents(*b); });
  }
  auto* c = g->add_subcommand("jacobian", "Auto-JacoBin's Jacobian term: closed form vs autograd "
                                          "double backward (time, peak memory)");
  auto o = std::make_shared<Opts>();
  c->add_option("--D", o->D, "input dimension")->capture_default_str();
  c->add_option("--d", o->d, "hidden units (bits)")->capture_default_str();
  c->add_option("--B", o->B, "batch size")->capture_default_str();
  c->add_option("--threads", o->threads, "CPU threads")->check(CLI::Range(1, 4096))->capture_default_str();
  c->add_option("--dtype", o->dtype, "float32 or float64")->capture_default_str();
  c->add_option("--seed", o->seed, "random seed")->capture_default_str();
  c->add_flag("--reference,!--no-reference", o->reference,
              "also time autograd double backward (minutes, ~16 GiB at the defaults)");
  c->callback([o] { run(*o); });
}

}  // namespace

HASHLAB_CLI_COMMAND(45, add);
