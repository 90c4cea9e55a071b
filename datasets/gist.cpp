#include "datasets/gist.h"

#include <cmath>

#include "csrc/core/error.h"

#ifdef HASHLAB_WITH_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace hashlab::data {

std::vector<int64_t> GistOptions::orientations_or_default() const {
  if (!orientations.empty()) return orientations;
  return colour == "rgb" ? std::vector<int64_t>{8, 8, 4} : std::vector<int64_t>{8, 8, 8, 8};
}

int64_t GistOptions::dim() const {
  int64_t filters = 0;
  for (int64_t o : orientations_or_default()) filters += o;
  return filters * blocks * blocks * (colour == "rgb" ? 3 : 1);
}

GistOptions GistOptions::from_yaml(Section s) {
  GistOptions o;
  s.get("image_size", o.image_size, Range{8, 4096});
  s.get("orientations", o.orientations, Range{1, 64});
  s.get("blocks", o.blocks, Range{1, 64});
  s.get("prefilter_fc", o.prefilter_fc, Range{1e-3, 1e3});
  s.get("boundary", o.boundary, Range{0, 4096});
  s.get_choice("colour", o.colour, {"gray", "rgb"});
  s.finish();
  if (s.has("orientations") && o.orientations.empty())
    fail("{}: at least one scale is needed", s.where("orientations"));
  if (o.blocks > o.image_size)
    fail("{}: {} blocks do not fit an image of side {}", s.where("blocks"), o.blocks, o.image_size);
  return o;
}

#ifdef HASHLAB_WITH_OPENCV

bool have_gist() { return true; }

namespace {

// MATLAB's fftshift(meshgrid(-n/2:n/2-1)) for even n: FFT frequency order.
inline double freq(int k, int n) { return k < n / 2 ? k : k - n; }

// createGabor(orientations, [n n]): transfer functions, one per filter, n x n.
std::vector<cv::Mat> gabor_bank(const std::vector<int64_t>& orientations, int n) {
  std::vector<cv::Mat> bank;
  for (size_t i = 0; i < orientations.size(); ++i) {
    const double o = double(orientations[i]);
    const double a = 0.35, s = 0.3 / std::pow(1.85, double(i)), b = 16.0 * o * o / (32.0 * 32.0);
    for (int64_t j = 0; j < orientations[i]; ++j) {
      const double phi = M_PI / o * double(j);
      cv::Mat g(n, n, CV_64F);
      for (int r = 0; r < n; ++r)
        for (int c = 0; c < n; ++c) {
          const double fx = freq(c, n), fy = freq(r, n);
          const double fr = std::sqrt(fx * fx + fy * fy);
          double t = std::atan2(fy, fx) + phi;
          if (t < -M_PI) t += 2 * M_PI;
          if (t > M_PI) t -= 2 * M_PI;
          const double u = fr / n / s - 1;
          g.at<double>(r, c) = std::exp(-10 * a * u * u - 2 * b * M_PI * t * t);
        }
      cv::Mat g32;
      g.convertTo(g32, CV_32F);
      bank.push_back(g32);
    }
  }
  return bank;
}

// exp(-|f|^2 / s1^2) in FFT frequency order, n x n.
cv::Mat gaussian_lowpass(int n, double fc) {
  const double s1 = fc / std::sqrt(std::log(2.0));
  cv::Mat g(n, n, CV_64F);
  for (int r = 0; r < n; ++r)
    for (int c = 0; c < n; ++c) {
      const double fx = freq(c, n), fy = freq(r, n);
      g.at<double>(r, c) = std::exp(-(fx * fx + fy * fy) / (s1 * s1));
    }
  return g;
}

// real(ifft2(fft2(x) .* h)) for real x and a real transfer function h.
cv::Mat filter_real(const cv::Mat& x, const cv::Mat& h) {
  cv::Mat X;
  cv::dft(x, X, cv::DFT_COMPLEX_OUTPUT);
  std::vector<cv::Mat> parts;
  cv::split(X, parts);
  parts[0] = parts[0].mul(h);
  parts[1] = parts[1].mul(h);
  cv::merge(parts, X);
  cv::Mat y;
  cv::dft(X, y, cv::DFT_INVERSE | cv::DFT_SCALE | cv::DFT_REAL_OUTPUT);
  return y;
}

struct Plan {
  GistOptions o;
  std::vector<int64_t> orientations;
  int side = 0, pre_n = 0, gabor_n = 0;
  cv::Mat lowpass;
  std::vector<cv::Mat> bank;
  std::vector<int> edges;  // block edges, blocks + 1
  int64_t per_channel = 0;
};

Plan make_plan(const GistOptions& o) {
  Plan p;
  p.o = o;
  p.orientations = o.orientations_or_default();
  p.side = static_cast<int>(o.image_size);
  const int sn = p.side + 2 * 5;
  p.pre_n = sn + sn % 2;
  p.lowpass = gaussian_lowpass(p.pre_n, o.prefilter_fc);
  p.gabor_n = p.side + 2 * static_cast<int>(o.boundary);
  p.bank = gabor_bank(p.orientations, p.gabor_n);
  for (int64_t i = 0; i <= o.blocks; ++i)  // fix(linspace(0, side, blocks + 1))
    p.edges.push_back(static_cast<int>(std::trunc(double(p.side) * double(i) / double(o.blocks))));
  p.per_channel = int64_t(p.bank.size()) * o.blocks * o.blocks;
  return p;
}

// prefilt(): `chans` are the image's channels (side x side, CV_64F, 0..255).
std::vector<cv::Mat> prefilter(const Plan& p, const std::vector<cv::Mat>& chans) {
  const int w = 5, side = p.side, n = p.pre_n;
  std::vector<cv::Mat> out;
  for (const auto& ch : chans) {
    cv::Mat l;
    cv::log(ch + 1.0, l);
    cv::Mat padded;
    // MATLAB's 'symmetric' is OpenCV's BORDER_REFLECT (the edge repeated);
    // the second pad ('post') makes the side even.
    cv::copyMakeBorder(l, padded, w, w + (n - (side + 2 * w)), w, w + (n - (side + 2 * w)),
                       cv::BORDER_REFLECT);
    out.push_back(padded - filter_real(padded, p.lowpass));
  }
  cv::Mat mean_sq = cv::Mat::zeros(n, n, CV_64F);
  for (const auto& o : out) mean_sq += o;
  mean_sq /= double(out.size());
  mean_sq = mean_sq.mul(mean_sq);
  cv::Mat local = filter_real(mean_sq, p.lowpass);
  local = cv::abs(local);
  cv::sqrt(local, local);
  for (auto& o : out) {
    cv::divide(o, local + 0.2, o);
    o = o(cv::Rect(w, w, side, side)).clone();
  }
  return out;
}

// gistGabor() of one prefiltered channel into `dst` (per_channel floats).
// The filtering runs in float32 (the prefilter in float64): the spectrum is
// multiplied by each real transfer function in one pass, inverted, and the
// magnitudes of the cropped image summed straight into the grid's blocks.
void gabor_features(const Plan& p, const cv::Mat& x, float* dst) {
  const int be = static_cast<int>(p.o.boundary), side = p.side, n = p.gabor_n;
  const int64_t blocks = p.o.blocks;
  cv::Mat padded, X;
  cv::copyMakeBorder(x, padded, be, be, be, be, cv::BORDER_REFLECT);
  padded.convertTo(padded, CV_32F);
  cv::dft(padded, X, cv::DFT_COMPLEX_OUTPUT);
  cv::Mat prod(n, n, CV_32FC2), y;
  // Row (and column) i of the cropped image lies in block block_of[i].
  std::vector<int> block_of(side);
  for (int64_t k = 0; k < blocks; ++k)
    for (int i = p.edges[k]; i < p.edges[k + 1]; ++i) block_of[i] = int(k);
  std::vector<double> sums(blocks * blocks);
  for (size_t f = 0; f < p.bank.size(); ++f) {
    const cv::Mat& g = p.bank[f];
    for (int r = 0; r < n; ++r) {
      const float* xr = X.ptr<float>(r);
      const float* gr = g.ptr<float>(r);
      float* pr = prod.ptr<float>(r);
      for (int c = 0; c < n; ++c) {
        pr[2 * c] = xr[2 * c] * gr[c];
        pr[2 * c + 1] = xr[2 * c + 1] * gr[c];
      }
    }
    cv::dft(prod, y, cv::DFT_INVERSE | cv::DFT_SCALE | cv::DFT_COMPLEX_OUTPUT);
    std::fill(sums.begin(), sums.end(), 0.0);
    for (int r = 0; r < side; ++r) {
      const float* yr = y.ptr<float>(r + be) + 2 * be;
      double* row_sums = sums.data() + block_of[r];
      for (int c = 0; c < side; ++c)
        row_sums[block_of[c] * blocks] +=
            std::sqrt(double(yr[2 * c]) * yr[2 * c] + double(yr[2 * c + 1]) * yr[2 * c + 1]);
    }
    for (int64_t bc = 0; bc < blocks; ++bc)
      for (int64_t br = 0; br < blocks; ++br) {
        const double area = double(p.edges[bc + 1] - p.edges[bc]) * (p.edges[br + 1] - p.edges[br]);
        dst[(int64_t(f) * blocks + bc) * blocks + br] =
            static_cast<float>(sums[bc * blocks + br] / area);
      }
  }
}

// One image [C, H, W] (float64, contiguous) -> dst (dim() floats).
void one_image(const Plan& p, const torch::Tensor& img, float* dst) {
  const int C = static_cast<int>(img.size(0)), H = static_cast<int>(img.size(1)),
            W = static_cast<int>(img.size(2));
  std::vector<cv::Mat> chans;
  for (int c = 0; c < C; ++c) {
    cv::Mat m(H, W, CV_64F, const_cast<double*>(img[c].data_ptr<double>()));
    cv::Mat r;
    if (H != p.side || W != p.side)
      cv::resize(m, r, cv::Size(p.side, p.side), 0, 0, cv::INTER_LINEAR);
    else
      r = m.clone();
    chans.push_back(r);
  }
  if (p.o.colour == "gray" && C > 1) {
    cv::Mat g = cv::Mat::zeros(p.side, p.side, CV_64F);
    for (const auto& c : chans) g += c;
    chans = {g / double(C)};
  }
  // Scaled to [0, 255] over all channels (LMgist: img - min(img(:)), 255 / max).
  double lo = 1e300, hi = -1e300;
  for (const auto& c : chans) {
    double a, b;
    cv::minMaxLoc(c, &a, &b);
    lo = std::min(lo, a), hi = std::max(hi, b);
  }
  for (auto& c : chans) {
    c -= lo;
    if (hi - lo > 0) c *= 255.0 / (hi - lo);
  }
  const auto filtered = prefilter(p, chans);
  for (size_t c = 0; c < filtered.size(); ++c)
    gabor_features(p, filtered[c], dst + int64_t(c) * p.per_channel);
}

}  // namespace

torch::Tensor compute_gist(const torch::Tensor& images, const GistOptions& o,
                           const std::function<void(int64_t)>& progress) {
  HL_CHECK(images.dim() == 4 && (images.size(1) == 1 || images.size(1) == 3),
           "GIST: expected images [N, C, H, W] with 1 or 3 channels, got [{}]",
           fmt::join(images.sizes(), ", "));
  HL_CHECK(o.colour != "rgb" || images.size(1) == 3,
           "GIST: colour rgb needs 3-channel images, got {} channel(s) (use colour: gray)",
           images.size(1));
  HL_CHECK(images.size(2) >= 2 && images.size(3) >= 2, "GIST: images of {} x {} pixels",
           images.size(2), images.size(3));
  HL_CHECK(o.colour == "gray" || o.colour == "rgb", "GIST: colour must be gray or rgb, got '{}'",
           o.colour);
  HL_CHECK(o.image_size >= 8 && o.blocks >= 1 && o.blocks <= o.image_size && o.boundary >= 0 &&
               o.prefilter_fc > 0,
           "GIST: image_size >= 8, 1 <= blocks <= image_size, boundary >= 0 and prefilter_fc > 0, "
           "got {}, {}, {}, {}",
           o.image_size, o.blocks, o.boundary, o.prefilter_fc);
  for (int64_t k : o.orientations)
    HL_CHECK(k >= 1 && k <= 64, "GIST: orientations per scale must be in [1, 64], got {}", k);
  const Plan p = make_plan(o);
  const int64_t N = images.size(0);
  auto out = torch::empty({N, o.dim()}, torch::kFloat32);
  for (int64_t c0 = 0; c0 < N; c0 += kGistChunk) {
    const int64_t c1 = std::min(N, c0 + kGistChunk);
    auto batch = images.slice(0, c0, c1).to(torch::kFloat64).contiguous();
    at::parallel_for(c0, c1, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        one_image(p, batch[i - c0], out[i].data_ptr<float>());
    });
    if (progress) progress(c1);
  }
  return out;
}

#else

bool have_gist() { return false; }

torch::Tensor compute_gist(const torch::Tensor&, const GistOptions&,
                           const std::function<void(int64_t)>&) {
  fail("GIST descriptors need OpenCV's DFT: this hashlab was built without OpenCV");
}

#endif

}  // namespace hashlab::data
