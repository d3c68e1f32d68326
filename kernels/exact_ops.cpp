// The element-wise operators of lalic_cli/portable/ops.py (exp, sigmoid, the two passes
// of quantize) and its depthwise convolution, one pass each instead of a chain of
// PyTorch kernels.  The element-wise ones perform the reference's IEEE operations in
// its order (built with -ffp-contract=off), so the bits are the reference's; the
// convolution sums integer-valued products below 2^53, which is exact in any order.
#include "exact_ops.h"

#include <algorithm>
#include <cmath>

#include "exact_math.h"

namespace exact {
namespace {

constexpr int64_t kParallel = 262144;  // elements above which a pass is split between threads

torch::Tensor as_f64(const torch::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu(), "exact ops run on CPU tensors");
  return x.to(torch::kFloat64).contiguous();
}

template <typename F>
torch::Tensor map(const torch::Tensor& x, F f) {
  const auto in = as_f64(x);
  auto out = torch::empty_like(in);
  const double* src = in.data_ptr<double>();
  double* dst = out.data_ptr<double>();
  const int64_t n = in.numel();
  // two loops, not one with an if clause: GCC compiles the serial side of a
  // "parallel for simd if (...)" without vectors, 8x slower below the threshold
  if (n > kParallel) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) dst[i] = f(src[i]);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) dst[i] = f(src[i]);
  }
  return out;
}

}  // namespace

torch::Tensor exp_op(torch::Tensor x, int64_t terms) {
  return EXACT_DISPATCH_TERMS(terms, [&] { return map(x, [](double v) { return dexp<kTerms>(v); }); });
}

torch::Tensor sigmoid_op(torch::Tensor x, int64_t terms) {
  return EXACT_DISPATCH_TERMS(terms, [&] { return map(x, [](double v) { return 1.0 / (1.0 + dexp<kTerms>(-v)); }); });
}

double absmax_op(torch::Tensor x) {
  // max is exact, so any order gives the same value; x - x is 0 for finite x and NaN
  // otherwise, so z flags NaN or infinity anywhere (its order cannot matter either,
  // hence the simd reductions).
  const auto in = as_f64(x);
  const double* src = in.data_ptr<double>();
  const int64_t n = in.numel();
  double m = 0.0, z = 0.0;
  if (n > kParallel) {
#pragma omp parallel for simd reduction(max : m) reduction(+ : z) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const double a = std::fabs(src[i]);
      m = a > m ? a : m;
      z += src[i] - src[i];
    }
  } else {
#pragma omp simd reduction(max : m) reduction(+ : z)
    for (int64_t i = 0; i < n; ++i) {
      const double a = std::fabs(src[i]);
      m = a > m ? a : m;
      z += src[i] - src[i];
    }
  }
  return z == 0.0 ? m : NAN;
}

torch::Tensor scale_round_op(torch::Tensor x, int64_t s) {
  // |x * 2^s| < 2^23 by the choice of s (portable/ops.py), inside round_even's range
  const double f = pow2(s);
  return map(x, [f](double v) { return round_even(v * f); });
}

torch::Tensor scale_bias_op(torch::Tensor acc, int64_t s, c10::optional<torch::Tensor> bias, int64_t dim) {
  // acc * 2^s + bias[index along dim]: one multiplication by a power of two and one
  // rounded addition per element, as QuantWeight.add_bias.  A row-strided 2-D acc
  // (a column block of a stacked GEMM) is read in place.
  TORCH_CHECK(acc.device().is_cpu() && acc.scalar_type() == torch::kFloat64, "scale_bias: float64 CPU acc");
  TORCH_CHECK(dim >= 0 && dim < acc.dim(), "scale_bias: bad dim");
  const bool rows = acc.dim() == 2 && acc.stride(1) == 1;
  const auto a = rows ? acc : acc.contiguous();
  const int64_t channels = a.size(dim);
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < a.dim(); ++d) inner *= a.size(d);
  const int64_t outer = a.numel() / std::max<int64_t>(1, channels * inner);
  const int64_t row = channels * inner;  // dense elements per outer index
  const int64_t stride = rows ? a.stride(0) : row;
  auto out = torch::empty(a.sizes(), a.options());
  const double f = pow2(s);
  const double* src = a.data_ptr<double>();
  double* dst = out.data_ptr<double>();
  torch::Tensor b;
  const double* bp = nullptr;
  if (bias.has_value() && bias->defined()) {
    b = as_f64(*bias);
    TORCH_CHECK(b.numel() == channels, "scale_bias: bias size");
    bp = b.data_ptr<double>();
  }
#pragma omp parallel for schedule(static) if (outer * row > kParallel)
  for (int64_t o = 0; o < outer; ++o) {
    const double* in = src + o * stride;
    double* res = dst + o * row;
    if (inner == 1) {  // a linear layer's rows: the bias runs along the row
      if (bp) {
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) res[c] = in[c] * f + bp[c];
      } else {
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) res[c] = in[c] * f;
      }
      continue;
    }
    for (int64_t c = 0; c < channels; ++c) {
      const double add = bp ? bp[c] : 0.0;
      const double* ic = in + c * inner;
      double* rc = res + c * inner;
      if (bp) {
#pragma omp simd
        for (int64_t i = 0; i < inner; ++i) rc[i] = ic[i] * f + add;
      } else {
#pragma omp simd
        for (int64_t i = 0; i < inner; ++i) rc[i] = ic[i] * f;
      }
    }
  }
  return out;
}

torch::Tensor layer_norm_op(torch::Tensor x, int64_t s, torch::Tensor weight, torch::Tensor bias, double eps) {
  // ops.layer_norm for a given quantisation exponent s: the statistics of
  // X = round(x * 2^s) (|X| <= 2^20) are integer sums, exact in float64 for rows of
  // at most 2^12 (any order, hence the simd reductions); the variance numerator
  // C * sum X^2 - (sum X)^2 is formed in int64.  The rest repeats the reference's
  // IEEE operations in its order.
  const auto in = as_f64(x);
  const auto w = as_f64(weight), b = as_f64(bias);
  const int64_t c = in.size(-1);
  TORCH_CHECK(c <= 4096 && w.numel() == c && b.numel() == c, "layer_norm: rows of at most 4096, C weights");
  const int64_t rows = c ? in.numel() / c : 0;
  auto out = torch::empty_like(in);
  const double f = pow2(s), scale = pow2(-s);
  const double* src = in.data_ptr<double>();
  const double* wp = w.data_ptr<double>();
  const double* bp = b.data_ptr<double>();
  double* dst = out.data_ptr<double>();
  const double cd = static_cast<double>(c), c2 = static_cast<double>(c * c);
#pragma omp parallel for schedule(static) if (rows * c > kParallel)
  for (int64_t r = 0; r < rows; ++r) {
    const double* xr = src + r * c;
    double* yr = dst + r * c;
    double total_d = 0.0, sq_d = 0.0;
#pragma omp simd reduction(+ : total_d, sq_d)
    for (int64_t i = 0; i < c; ++i) {
      const double q = round_even(xr[i] * f);
      total_d += q;
      sq_d += q * q;
    }
    const int64_t total = static_cast<int64_t>(total_d), sq = static_cast<int64_t>(sq_d);
    const int64_t var_num = c * sq - total * total;
    const double mean = static_cast<double>(total) * scale / cd;
    const double var = static_cast<double>(var_num) * (scale * scale) / c2;
    const double rstd = 1.0 / std::sqrt(var + eps);
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) yr[i] = (xr[i] - mean) * rstd * wp[i] + bp[i];
  }
  return out;
}

torch::Tensor depthwise_conv2d_op(torch::Tensor xq, torch::Tensor wq, int64_t padding) {
  TORCH_CHECK(xq.dim() == 4 && wq.dim() == 4 && wq.size(1) == 1 && wq.size(0) == xq.size(1),
              "depthwise_conv2d: xq B x C x H x W, wq C x 1 x kh x kw");
  const auto x = as_f64(xq);
  const auto w = as_f64(wq);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t kh = w.size(2), kw = w.size(3), p = padding;
  const int64_t OH = H + 2 * p - kh + 1, OW = W + 2 * p - kw + 1;
  TORCH_CHECK(OH > 0 && OW > 0, "depthwise_conv2d: kernel larger than the padded input");
  auto out = torch::zeros({B, C, OH, OW}, x.options());
  const double* xp = x.data_ptr<double>();
  const double* wp = w.data_ptr<double>();
  double* op = out.data_ptr<double>();
#pragma omp parallel for schedule(static)
  for (int64_t bc = 0; bc < B * C; ++bc) {
    const double* xi = xp + bc * H * W;
    const double* wi = wp + (bc % C) * kh * kw;
    double* oi = op + bc * OH * OW;
    for (int64_t i = 0; i < kh; ++i) {
      for (int64_t j = 0; j < kw; ++j) {
        const double tap = wi[i * kw + j];
        if (tap == 0.0) continue;
        const int64_t x0 = std::max<int64_t>(0, p - j), x1 = std::min<int64_t>(OW, W + p - j);
        for (int64_t oy = 0; oy < OH; ++oy) {
          const int64_t iy = oy + i - p;
          if (iy < 0 || iy >= H) continue;
          const double* row = xi + iy * W + (j - p);
          double* orow = oi + oy * OW;
          for (int64_t ox = x0; ox < x1; ++ox) orow[ox] = orow[ox] + tap * row[ox];
        }
      }
    }
  }
  return out;
}

}  // namespace exact
