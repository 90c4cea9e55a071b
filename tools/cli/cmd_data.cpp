// `hashlab data inspect PATH [--format F] [--labels L] [--root DIR]`: reads any
// supported data file and prints what it holds (count, shape, dtype, value
// range, label histogram), or the reader's error.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "csrc/core/error.h"
#include "csrc/core/strings.h"
#include "datasets/readers/cifar.h"
#include "datasets/readers/idx.h"
#include "datasets/readers/image_list.h"
#include "datasets/readers/npy.h"
#include "datasets/readers/vecs.h"
#include "tools/cli/commands.h"

namespace hashlab::cli {
namespace {

using namespace hashlab::data;

struct InspectOpts {
  std::string path;
  std::string format = "auto";
  std::string labels;
  std::string root;
};


// Format from the file name (a .gz suffix ignored), else from the content.
std::string guess_format(const std::string& path, const Bytes& b) {
  std::string name = std::filesystem::path(path).filename().string();
  if (ends_with(name, ".gz")) name.resize(name.size() - 3);
  for (const char* ext : {"fvecs", "bvecs", "ivecs", "npy"})
    if (ends_with(name, std::string(".") + ext)) return ext;
  if (ends_with(name, ".txt") || ends_with(name, ".lst") || ends_with(name, ".list"))
    return "image_list";
  if (b.size >= 6 && std::memcmp(b.data, "\x93NUMPY", 6) == 0) return "npy";
  if (b.size >= 4 && b.data[0] == 0 && b.data[1] == 0 && b.data[3] >= 1) return "idx";
  if (ends_with(name, ".bin") && b.size > 0) {
    const bool c10 = b.size % 3073 == 0, c100 = b.size % 3074 == 0;
    if (c100 && (!c10 || name.find("100") != std::string::npos)) return "cifar100";
    if (c10) return "cifar10";
  }
  fail("{}: cannot guess the file format from its name or content; give --format "
       "(idx|cifar10|cifar100|fvecs|bvecs|ivecs|npy|image_list)",
       path);
}

// Range of the finite values (non-finite ones are counted apart).
template <typename T>
std::pair<double, double> min_max(const Array& a) {
  const T* p = a.data<T>();
  const int64_t n = a.numel();
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (int64_t i = 0; i < n; ++i) {
    double v = static_cast<double>(p[i]);
    if (!std::isfinite(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  return {lo, hi};
}

struct NonFinite {
  int64_t nan = 0, inf = 0, items = 0, first_item = -1;
};

NonFinite non_finite(const Array& a) {
  NonFinite r;
  if (a.dtype != Array::DType::f32 || a.numel() == 0) return r;
  const int64_t rows = a.shape.empty() ? 1 : a.shape[0];
  const int64_t per = a.numel() / std::max<int64_t>(rows, 1);
  const float* p = a.data<float>();
  for (int64_t i = 0; i < rows; ++i) {
    bool bad = false;
    for (int64_t j = 0; j < per; ++j) {
      float v = p[i * per + j];
      if (std::isnan(v)) ++r.nan, bad = true;
      else if (std::isinf(v)) ++r.inf, bad = true;
    }
    if (bad && r.first_item < 0) r.first_item = i;
    r.items += bad;
  }
  return r;
}

std::pair<double, double> value_range(const Array& a) {
  switch (a.dtype) {
    case Array::DType::u8: return min_max<uint8_t>(a);
    case Array::DType::i32: return min_max<int32_t>(a);
    case Array::DType::i64: return min_max<int64_t>(a);
    case Array::DType::f32: return min_max<float>(a);
  }
  return {0, 0};
}

// Per-value counts of a 1-D integer array; empty when it does not look like labels.
std::map<int64_t, int64_t> histogram(const Array& a) {
  std::map<int64_t, int64_t> h;
  if (a.shape.size() != 1 || a.dtype == Array::DType::f32) return h;
  for (int64_t i = 0; i < a.numel(); ++i) {
    int64_t v = a.dtype == Array::DType::u8    ? a.data<uint8_t>()[i]
                : a.dtype == Array::DType::i32 ? a.data<int32_t>()[i]
                                               : a.data<int64_t>()[i];
    ++h[v];
    if (h.size() > 1000) return {};  // not a label file (e.g. ids)
  }
  return h;
}

void print_histogram(const std::string& title, const std::map<int64_t, int64_t>& h) {
  fmt::print("{} ({} distinct values):\n", title, h.size());
  for (const auto& [v, c] : h) fmt::print("  {:>6}: {}\n", v, c);
}

void print_array(const std::string& what, const Array& a) {
  fmt::print("{}: {} [{}]\n", what, dtype_name(a.dtype), shape_string(a.shape, ','));
  if (a.numel() > 0) {
    auto [lo, hi] = value_range(a);
    fmt::print("  values in [{}, {}]\n", lo, hi);
    if (a.dtype == Array::DType::f32) {
      NonFinite nf = non_finite(a);
      if (nf.nan + nf.inf == 0)
        fmt::print("  non-finite values: none\n");
      else
        fmt::print("  non-finite values: {} NaN, {} inf, in {} items (first: item {}); "
                   "training refuses this file\n",
                   nf.nan, nf.inf, nf.items, nf.first_item);
    }
  }
}

void inspect(const InspectOpts& o) {
  std::vector<uint8_t> raw = read_file_bytes(o.path);
  Bytes b = maybe_gunzip(raw.data(), raw.size(), o.path);
  const std::string format = o.format == "auto" ? guess_format(o.path, b) : o.format;
  fmt::print("file: {}\nformat: {}{}\nbytes: {}{}\n", o.path, format,
             o.format == "auto" ? " (guessed)" : "", b.size, b.gunzipped ? " (after gunzip)" : "");
  int64_t count = 0;
  if (format == "idx" || format == "npy") {
    Array a = format == "idx" ? parse_idx(b.data, b.size, o.path) : parse_npy(b.data, b.size, o.path);
    count = a.shape.empty() ? 1 : a.shape[0];
    fmt::print("count: {}\n", count);
    print_array("array", a);
    auto h = histogram(a);
    if (!h.empty()) print_histogram("label histogram", h);
  } else if (format == "cifar10" || format == "cifar100") {
    CifarData c = parse_cifar(b.data, b.size, o.path,
                              format == "cifar10" ? CifarKind::cifar10 : CifarKind::cifar100);
    count = c.images.shape[0];
    fmt::print("count: {}\n", count);
    print_array("images", c.images);
    print_histogram(format == "cifar10" ? "label histogram" : "fine label histogram",
                    histogram(c.labels));
    if (format == "cifar100") print_histogram("coarse label histogram", histogram(c.coarse_labels));
  } else if (format == "fvecs" || format == "bvecs" || format == "ivecs") {
    VecsKind k = format == "fvecs" ? VecsKind::fvecs : format == "bvecs" ? VecsKind::bvecs : VecsKind::ivecs;
    Array a = parse_vecs(b.data, b.size, o.path, k);
    count = a.shape[0];
    fmt::print("count: {}\n", count);
    print_array("vectors", a);
  } else if (format == "image_list") {
    std::string root = o.root.empty()
                           ? std::filesystem::path(o.path).parent_path().string()
                           : o.root;
    if (root.empty()) root = ".";
    ImageList l = parse_image_list(b.data, b.size, o.path, root);
    count = static_cast<int64_t>(l.paths.size());
    int64_t missing = 0;
    for (const auto& p : l.paths) missing += !std::filesystem::exists(p);
    fmt::print("count: {}\nroot: {}\nlabels: {}, {} classes\nmissing image files: {}\n", count,
               root, l.multi_label ? "multi-hot" : "single", l.num_classes, missing);
    if (l.multi_label) {
      std::map<int64_t, int64_t> per_class;
      for (int64_t i = 0; i < count; ++i)
        for (int64_t c = 0; c < l.num_classes; ++c)
          per_class[c] += l.labels.bytes[i * l.num_classes + c];
      print_histogram("images per class", per_class);
    } else {
      print_histogram("label histogram", histogram(l.labels));
    }
  } else {
    fail("unknown --format '{}'", format);
  }
  if (!o.labels.empty()) {
    std::vector<uint8_t> lraw = read_file_bytes(o.labels);
    Bytes lb = maybe_gunzip(lraw.data(), lraw.size(), o.labels);
    Array l = lb.size >= 6 && std::memcmp(lb.data, "\x93NUMPY", 6) == 0
                  ? parse_npy(lb.data, lb.size, o.labels)
                  : parse_idx(lb.data, lb.size, o.labels);
    print_array(fmt::format("labels {}", o.labels), l);
    const int64_t n = l.shape.empty() ? 1 : l.shape[0];
    if (n != count) fail("{}: {} labels, but {} has {} items", o.labels, n, o.path, count);
    auto h = histogram(l);
    if (h.empty()) fail("{}: not a label file (1-D integers expected)", o.labels);
    print_histogram("label histogram", h);
  }
}

void add(CLI::App& app) {
  auto* g = group(app, "data", "Dataset files: inspect them, compute GIST descriptors");
  auto* c = g->add_subcommand("inspect", "Read a data file and print its count, shape, dtype, "
                                         "value range and label histogram");
  auto o = std::make_shared<InspectOpts>();
  c->add_option("path", o->path, "data file (idx, CIFAR .bin, fvecs/bvecs/ivecs, npy, image list; "
                                 "gzip or not)")
      ->required();
  c->add_option("--format", o->format, "file format; auto guesses from the name and content")
      ->check(CLI::IsMember({"auto", "idx", "cifar10", "cifar100", "fvecs", "bvecs", "ivecs", "npy",
                             "image_list"}))
      ->capture_default_str();
  c->add_option("--labels", o->labels, "label file (idx or npy) to check against PATH");
  c->add_option("--root", o->root, "image lists: root directory (default: the list's folder)");
  c->callback([o] { inspect(*o); });
}

}  // namespace
}  // namespace hashlab::cli

HASHLAB_CLI_COMMAND(80, hashlab::cli::add);
