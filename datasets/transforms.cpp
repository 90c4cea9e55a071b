#include "datasets/transforms.h"

#include "csrc/core/error.h"

#ifdef HASHLAB_WITH_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace hashlab::data {

uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  TORCH_CHECK(n > 0, "uniform_below: n must be positive");
  // Largest multiple of n that fits; values at or above it are redrawn.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t v;
  do v = rng(); while (v >= limit);
  return v % n;
}

torch::Tensor apply_vector_transforms(const torch::Tensor& x_in, const VectorTransformOptions& o) {
  TORCH_CHECK(x_in.dim() == 2, "apply_vector_transforms: expected [N, D], got ", x_in.sizes());
  torch::Tensor x = x_in.to(torch::kFloat32).clone();
  if (o.center && x.size(0) > 0) x -= x.to(torch::kFloat64).mean(0).to(torch::kFloat32);
  if (o.l2_normalize) {
    torch::Tensor norm = x.norm(2, 1, true);
    x = x / torch::where(norm > 0, norm, torch::ones_like(norm));
  }
  if (o.max_norm_scale > 0 && x.size(0) > 0) {
    double max_norm = x.norm(2, 1).max().item<double>();
    if (max_norm > 0) x *= o.max_norm_scale / max_norm;
  }
  return x;
}

static std::pair<int64_t, int64_t> hw(const std::vector<int64_t>& v, const char* what) {
  if (v.size() == 1) return {v[0], v[0]};
  if (v.size() == 2) return {v[0], v[1]};
  fail("image transform: {} must be [size] or [height, width], got {} values", what, v.size());
}

std::pair<int64_t, int64_t> output_size(const ImageTransformOptions& o, int64_t h, int64_t w) {
  if (!o.resize.empty()) std::tie(h, w) = hw(o.resize, "resize");
  if (!o.crop.empty()) {
    auto [ch, cw] = hw(o.crop, "crop");
    if (ch > h || cw > w)
      fail("image transform: crop {}x{} is larger than the image {}x{}", ch, cw, h, w);
    return {ch, cw};
  }
  return {h, w};
}

ImageAugmentDraw draw_augment(const ImageTransformOptions& o, bool augment, std::mt19937_64& rng) {
  ImageAugmentDraw d;
  if (augment && o.random_crop && !o.crop.empty()) {
    constexpr uint64_t kSteps = uint64_t{1} << 24;
    d.crop_y = static_cast<double>(uniform_below(rng, kSteps)) / kSteps;
    d.crop_x = static_cast<double>(uniform_below(rng, kSteps)) / kSteps;
  }
  if (augment && o.flip) d.flip = uniform_below(rng, 2) == 1;
  return d;
}

// Offset of a crop of `size` in `full` for a draw fraction (< 0: centred).
static int64_t crop_offset(double frac, int64_t full, int64_t size) {
  const int64_t margin = full - size;
  if (frac < 0) return margin / 2;
  return std::min<int64_t>(margin, static_cast<int64_t>(frac * static_cast<double>(margin + 1)));
}

// float [B, C, h, w] in place: (x - mean[c]) / std[c].
static torch::Tensor normalize(torch::Tensor x, const ImageTransformOptions& o) {
  const int64_t c = x.size(1);
  auto per_channel = [&](const std::vector<double>& v, const char* what) {
    if (v.size() != 1 && static_cast<int64_t>(v.size()) != c)
      fail("image transform: {} has {} values, the images have {} channels", what, v.size(), c);
    std::vector<float> f(c);
    for (int64_t i = 0; i < c; ++i) f[i] = static_cast<float>(v.size() == 1 ? v[0] : v[i]);
    return torch::tensor(f).view({1, c, 1, 1});
  };
  if (!o.mean.empty()) x = x - per_channel(o.mean, "mean");
  if (!o.std.empty()) {
    for (double s : o.std)
      if (!(s > 0)) fail("image transform: std values must be positive, got {}", s);
    x = x / per_channel(o.std, "std");
  }
  return x;
}

torch::Tensor transform_image_batch(const torch::Tensor& images, const ImageTransformOptions& o,
                                    const std::vector<ImageAugmentDraw>& draws) {
  TORCH_CHECK(images.dim() == 4, "transform_image_batch: expected [B, C, H, W], got ",
              images.sizes());
  TORCH_CHECK(static_cast<int64_t>(draws.size()) == images.size(0),
              "transform_image_batch: ", draws.size(), " draws for ", images.size(0), " images");
  torch::Tensor x = images.to(torch::kFloat32);
  if (images.scalar_type() == torch::kUInt8) x = x / static_cast<float>(o.scale);
  if (!o.resize.empty()) {
    auto [h, w] = hw(o.resize, "resize");
    if (h != x.size(2) || w != x.size(3))
      x = torch::nn::functional::interpolate(
          x, torch::nn::functional::InterpolateFuncOptions()
                 .size(std::vector<int64_t>{h, w})
                 .mode(torch::kBilinear)
                 .align_corners(false));
  }
  const bool any_flip = std::any_of(draws.begin(), draws.end(), [](auto& d) { return d.flip; });
  if (!o.crop.empty() || any_flip) {
    auto [oh, ow] = output_size(ImageTransformOptions{o.scale, {}, o.crop}, x.size(2), x.size(3));
    std::vector<torch::Tensor> rows;
    rows.reserve(draws.size());
    for (size_t i = 0; i < draws.size(); ++i) {
      int64_t y0 = crop_offset(draws[i].crop_y, x.size(2), oh);
      int64_t x0 = crop_offset(draws[i].crop_x, x.size(3), ow);
      torch::Tensor r = x[i].narrow(1, y0, oh).narrow(2, x0, ow);
      if (draws[i].flip) r = r.flip({2});
      rows.push_back(r);
    }
    x = torch::stack(rows);
  }
  return normalize(x.contiguous(), o);
}

bool have_image_decoder() {
#ifdef HASHLAB_WITH_OPENCV
  return true;
#else
  return false;
#endif
}

#ifdef HASHLAB_WITH_OPENCV
torch::Tensor decode_image(const std::string& path, const ImageTransformOptions& o,
                           const ImageAugmentDraw& draw) {
  cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR);
  if (bgr.empty()) fail("{}: cannot read or decode the image", path);
  cv::Mat img;
  cv::cvtColor(bgr, img, cv::COLOR_BGR2RGB);
  if (!o.resize.empty()) {
    auto [h, w] = hw(o.resize, "resize");
    if (h != img.rows || w != img.cols) {
      cv::Mat r;
      cv::resize(img, r, cv::Size(static_cast<int>(w), static_cast<int>(h)), 0, 0,
                 cv::INTER_LINEAR);
      img = r;
    }
  }
  auto [oh, ow] = output_size(ImageTransformOptions{o.scale, {}, o.crop}, img.rows, img.cols);
  int64_t y0 = crop_offset(draw.crop_y, img.rows, oh);
  int64_t x0 = crop_offset(draw.crop_x, img.cols, ow);
  img = img(cv::Rect(static_cast<int>(x0), static_cast<int>(y0), static_cast<int>(ow),
                     static_cast<int>(oh)))
            .clone();
  if (draw.flip) cv::flip(img, img, 1);
  torch::Tensor t = torch::from_blob(img.data, {img.rows, img.cols, 3}, torch::kUInt8)
                        .permute({2, 0, 1})
                        .to(torch::kFloat32) /
                    static_cast<float>(o.scale);
  return normalize(t.unsqueeze(0), o).squeeze(0).contiguous();
}
#endif

}  // namespace hashlab::data
