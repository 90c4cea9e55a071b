// GIST descriptors (Oliva & Torralba, "Modeling the shape of the scene",
// IJCV 2001), computed as the widely used LMgist.m (Torralba's reference
// code) computes them, with OpenCV's DFT:
//
//   1. resize to image_size x image_size (bilinear; LMgist's imresizecrop of
//      a square image), for "gray" the mean of the channels;
//   2. intensities scaled to [0, 255] (img - min, then 255 / max);
//   3. prefilt(img, fc): log(img + 1), padded 5 pixels (symmetric) and to an
//      even side, whitened by a Gaussian high-pass exp(-|f|^2 / s1^2) with
//      s1 = fc / sqrt(log 2), divided by 0.2 + the local standard deviation
//      (the same low-pass of the squared output, averaged over channels),
//      cropped back;
//   4. gistGabor: padded `boundary` pixels (symmetric), its DFT multiplied by
//      each filter of createGabor(orientations, side + 2 boundary):
//        G(f) = exp(-10 a (|f| / n / s_i - 1)^2 - 2 b_i pi (theta + phi_ij)^2)
//      a = 0.35, s_i = 0.3 / 1.85^(i-1), b_i = 16 o_i^2 / 32^2,
//      phi_ij = pi (j - 1) / o_i (theta wrapped to [-pi, pi]), for scale i
//      with o_i orientations; |inverse DFT| cropped to the image and averaged
//      over a blocks x blocks grid (LMgist's downN: block edges at
//      fix(linspace(0, side, blocks + 1))).
//
// Output per image and channel: filter-major, then the grid in MATLAB's
// column-major order (block row fastest): feature (f * blocks + c) * blocks
// + r for filter f, block row r, block column c. "rgb" concatenates the
// three channels' descriptors (the prefilter's local contrast is shared, as
// LMgist's prefilt computes it from the channel mean).
// Dimensions: sum(orientations) * blocks^2 per channel: 4 scales x 8
// orientations x 16 = 512 (gray, the default), and [8, 8, 4] x 16 x 3 = 960
// for colour (the GIST1M descriptor of 32 x 32 colour images).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "csrc/core/config.h"

namespace hashlab::data {

struct GistOptions {
  int64_t image_size = 32;       // side the images are resized to
  std::vector<int64_t> orientations;  // per scale; empty: [8, 8, 8, 8] gray, [8, 8, 4] rgb
  int64_t blocks = 4;            // averaging grid (blocks x blocks)
  double prefilter_fc = 4;       // LMgist's fc_prefilt
  int64_t boundary = 32;         // LMgist's boundaryExtension (pixels, symmetric padding)
  std::string colour = "gray";   // gray (channel mean) | rgb (per channel; needs 3 channels)

  std::vector<int64_t> orientations_or_default() const;
  // Descriptor length for images of `channels` channels.
  int64_t dim() const;
  // Keys: image_size, orientations, blocks, prefilter_fc, boundary, colour.
  static GistOptions from_yaml(Section s);
};

// True when built with OpenCV (the DFT); otherwise compute_gist throws.
bool have_gist();

// Images per chunk: compute_gist reports progress after each.
constexpr int64_t kGistChunk = 256;

// images: uint8 or floating [N, C, H, W] (C = 1 or 3; "rgb" needs 3) ->
// float32 [N, dim()]. `progress(done)` is called from the calling thread
// after every chunk of kGistChunk images (and the last, shorter one). Runs
// on at::get_num_threads() threads.
torch::Tensor compute_gist(const torch::Tensor& images, const GistOptions& o,
                           const std::function<void(int64_t)>& progress = {});

}  // namespace hashlab::data
