// Bit-reproducible BiWKV for the portable entropy path: the operations of
// lalic_cli/ops/exact.py (biwkv, exp) one for one, per (batch, channel) lane.
//
// Built with -ffp-contract=off and without -ffast-math, so every floating-point
// operation is the IEEE-754 one written here, rounded once: the result is the same
// on every x86-64 or Arm CPU, with any thread count, and equal to the PyTorch
// reference bit for bit (tests/test_exact_ops.py checks that).  Integer sums are
// exact in int64 (see docs/portable.md for the bounds).
#include <torch/extension.h>

#include "exact_math.h"
#include "exact_ops.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

using exact::dexp;
using exact::pow2;

constexpr double kEmpty = -1e300;
constexpr int kEBits = 36;

// Past-sum parts of one lane, exactly as exact._past_parts: (scale, den, num) for
// the carry and the in-chunk prefix.  With reverse, the lane is read backwards
// (the future sums) and the parts are stored at the original positions.
struct Parts {
  std::vector<double> s1, d1, n1, s2, d2, n2;
  explicit Parts(int T) : s1(T), d1(T), n1(T), s2(T), d2(T), n2(T) {}
};

void past_parts(const double* k, const int64_t* v, int T, int C, double w, int L, bool reverse, Parts& out) {
  auto pos = [T, reverse](int t) { return reverse ? T - 1 - t : t; };
  const double unit = pow2(-kEBits);
  const double scale = pow2(kEBits);
  std::vector<double> a(L);
  std::vector<int64_t> e(L), ev(L);
  double r = kEmpty, sd = 0.0, sn = 0.0;
  const int chunks = (T + L - 1) / L;
  for (int ci = 0; ci < chunks; ++ci) {
    double m = 0.0;
    for (int j = 0; j < L; ++j) {
      const int t = ci * L + j;
      const double kt = t < T ? k[static_cast<int64_t>(pos(t)) * C] : kEmpty;
      a[j] = kt + static_cast<double>(j) * w;
      m = j == 0 ? a[j] : (a[j] > m ? a[j] : m);
    }
    int64_t lp = 0, lpv = 0, tot_e = 0, tot_ev = 0;
    for (int j = 0; j < L; ++j) {
      const int t = ci * L + j;
      e[j] = static_cast<int64_t>(exact::round_even(dexp(a[j] - m) * scale));
      ev[j] = e[j] * (t < T ? v[static_cast<int64_t>(pos(t)) * C] : 0);
      if (t < T) {
        const int p = pos(t);
        out.s1[p] = sd > 0.0 ? r - static_cast<double>(j) * w : kEmpty;
        out.d1[p] = sd;
        out.n1[p] = sn;
        out.s2[p] = lp > 0 ? m - static_cast<double>(j - 1) * w : kEmpty;
        out.d2[p] = static_cast<double>(lp) * unit;
        out.n2[p] = static_cast<double>(lpv) * unit;
      }
      lp += e[j];
      lpv += ev[j];
    }
    for (int j = 0; j < L; ++j) {
      tot_e += e[j];
      tot_ev += ev[j];
    }
    const double decayed = r - static_cast<double>(L) * w;
    const double chunk_scale = m - static_cast<double>(L - 1) * w;
    const double r_new = decayed > chunk_scale ? decayed : chunk_scale;
    const double f_old = dexp(decayed - r_new);
    const double f_new = dexp(chunk_scale - r_new) * unit;
    sd = sd * f_old + static_cast<double>(tot_e) * f_new;
    sn = sn * f_old + static_cast<double>(tot_ev) * f_new;
    r = r_new;
  }
}

// (w, u: C; k: B x T x C float64; vq: B x T x C integer-valued float64; L; sv) -> y
torch::Tensor forward(torch::Tensor w, torch::Tensor u, torch::Tensor k, torch::Tensor vq, int64_t L, int64_t sv) {
  TORCH_CHECK(k.dim() == 3 && vq.sizes() == k.sizes(), "biwkv_exact: k, vq must be B x T x C");
  TORCH_CHECK(k.scalar_type() == torch::kFloat64 && vq.scalar_type() == torch::kFloat64 &&
                  w.scalar_type() == torch::kFloat64 && u.scalar_type() == torch::kFloat64,
              "biwkv_exact: float64 tensors expected");
  TORCH_CHECK(L >= 1, "biwkv_exact: chunk length must be positive");
  k = k.contiguous();
  const auto vi = vq.to(torch::kInt64).contiguous();
  w = w.contiguous();
  u = u.contiguous();
  const int B = k.size(0), T = k.size(1), C = k.size(2);
  TORCH_CHECK(w.numel() == C && u.numel() == C, "biwkv_exact: w, u must have C elements");
  auto y = torch::empty_like(k);
  const double* kp = k.data_ptr<double>();
  const int64_t* vp = vi.data_ptr<int64_t>();
  const double* wp = w.data_ptr<double>();
  const double* up = u.data_ptr<double>();
  double* yp = y.data_ptr<double>();
  const double out_scale = pow2(-sv);
  const int lanes = B * C;
#pragma omp parallel for schedule(dynamic, 1)
  for (int lane = 0; lane < lanes; ++lane) {
    const int b = lane / C, c = lane % C;
    const int64_t base = static_cast<int64_t>(b) * T * C + c;
    const double* kl = kp + base;
    const int64_t* vl = vp + base;
    Parts past(T), fut(T);
    const int Li = static_cast<int>(L);
    past_parts(kl, vl, T, C, wp[c], Li, false, past);
    past_parts(kl, vl, T, C, wp[c], Li, true, fut);
    for (int t = 0; t < T; ++t) {
      const int64_t i = static_cast<int64_t>(t) * C;
      const double sc = up[c] + kl[i];
      const double s[5] = {past.s1[t], past.s2[t], fut.s1[t], fut.s2[t], sc};
      const double d[5] = {past.d1[t], past.d2[t], fut.d1[t], fut.d2[t], 1.0};
      const double n[5] = {past.n1[t], past.n2[t], fut.n1[t], fut.n2[t], static_cast<double>(vl[i])};
      double m = s[0];
      for (int p = 1; p < 5; ++p) m = s[p] > m ? s[p] : m;
      double den = 0.0, num = 0.0;
      for (int p = 0; p < 5; ++p) {
        const double coef = dexp(s[p] - m);
        den = den + coef * d[p];
        num = num + coef * n[p];
      }
      yp[base + i] = num / den * out_scale;
    }
  }
  return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "bit-reproducible BiWKV: (w, u, k, vq, L, sv) -> y (float64)");
  m.def("exp", &exact::exp_op, "exact.exp, element-wise (float64)");
  m.def("sigmoid", &exact::sigmoid_op, "exact.sigmoid, element-wise (float64)");
  m.def("absmax", &exact::absmax_op, "max |x| (NaN if any element is not finite)");
  m.def("scale_round", &exact::scale_round_op, "round(x * 2^s), float64");
  m.def("scale_bias", &exact::scale_bias_op, "acc * 2^s + bias along dim (float64)");
  m.def("layer_norm", &exact::layer_norm_op, "exact.layer_norm for a quantisation exponent s (float64)");
  m.def("depthwise_conv2d", &exact::depthwise_conv2d_op, "exact integer depthwise conv: (xq, wq, padding) -> acc");
}
