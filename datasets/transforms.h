// Feature transforms.
//
// Vectors (f32 [N, D]), applied once to the whole pool by load_dataset, in
// this order:  center (x -= mean over rows)  ->  l2_normalize (x /= ||x||,
// zero rows stay zero)  ->  max_norm_scale s > 0 (x *= s / max_i ||x_i||,
// Auto-JacoBin's "0.8 / max norm").
//
// Images, applied per batch by the Loader (so random choices follow the
// loader seed): u8 pixels -> float / scale -> resize [h, w] (bilinear) ->
// crop [h, w] (random offset when augmenting and random_crop, else centred)
// -> horizontal flip with p = 0.5 (when augmenting and flip) -> per-channel
// (x - mean[c]) / std[c]. The same steps exist as tensor ops (in-memory u8
// [B, C, H, W] batches) and, with OpenCV, for decoded image files.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace hashlab::data {

struct VectorTransformOptions {
  bool center = false;
  bool l2_normalize = false;
  double max_norm_scale = 0;  // 0 = off
};

struct ImageTransformOptions {
  double scale = 255;            // pixel divisor
  std::vector<int64_t> resize;   // {} = keep, {s} = s x s, {h, w}
  std::vector<int64_t> crop;     // {} = none, {s} = s x s, {h, w}
  bool random_crop = false;      // random offset when augmenting (else centre)
  bool flip = false;             // random horizontal flip when augmenting
  std::vector<double> mean;      // {} = none, one per channel or one for all
  std::vector<double> std;
};

// f32 [N, D] -> f32 [N, D] (a new tensor).
torch::Tensor apply_vector_transforms(const torch::Tensor& x, const VectorTransformOptions& o);

// Per-sample random choices of one batch, drawn up front so the tensor path
// and the OpenCV path agree and so they depend only on the rng seed.
struct ImageAugmentDraw {
  double crop_y = 0.5, crop_x = 0.5;  // fraction of the free margin
  bool flip = false;
};
ImageAugmentDraw draw_augment(const ImageTransformOptions& o, bool augment, std::mt19937_64& rng);

// u8 (or float) [B, C, H, W] -> float [B, C, h, w]; draws.size() == B.
torch::Tensor transform_image_batch(const torch::Tensor& images, const ImageTransformOptions& o,
                                    const std::vector<ImageAugmentDraw>& draws);

// Output [C, h, w] size implied by the options for an input of H x W.
std::pair<int64_t, int64_t> output_size(const ImageTransformOptions& o, int64_t h, int64_t w);

#ifdef HASHLAB_WITH_OPENCV
// Decodes an image file (RGB order, 3 channels) and applies the transforms:
// float [3, h, w]. Errors name the file.
torch::Tensor decode_image(const std::string& path, const ImageTransformOptions& o,
                           const ImageAugmentDraw& draw);
#endif

// True when decode_image is available (built with OpenCV).
bool have_image_decoder();

// Uniform integer in [0, n) from a 64-bit engine, identical on every standard
// library (std::uniform_int_distribution is not): rejection sampling.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n);

}  // namespace hashlab::data
