// Bit-reproducible BiWKV for the portable entropy path: the operations of
// lalic_cli/portable/ops.py (biwkv, exp) one for one, in blocks of channels.
//
// Built with -ffp-contract=off and without -ffast-math, so every floating-point
// operation is the IEEE-754 one written here, rounded once: the result is the same
// on every x86-64 or Arm CPU, with any thread count, and equal to the PyTorch
// reference bit for bit (tests/test_exact_ops.py checks that).  Integer sums are
// exact (see Scan below and docs/portable.md for the bounds).
#include <torch/extension.h>

#include "exact_math.h"
#include "exact_ops.h"

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <vector>

namespace {

using exact::dexp;
using exact::pow2;

constexpr double kEmpty = -1e300;
constexpr int kEBits = 36;

constexpr int kBlock = 8;  // channels per vector block (contiguous in memory)

// The past-sum parts of ops._past_parts for a block of cw <= kBlock channels
// (scale, den, num for the carry and for the in-chunk prefix), channel loops
// innermost so that they vectorise.  With reverse the sequence is read backwards
// (the future sums).  Integer sums stay integer-valued doubles: e <= 2^36, and
// e * v is split as e * vhi * 2^10 + e * vlo (|vhi| <= 2^10, |vlo| <= 2^9) so each
// part sums exactly below 2^52 over a chunk of at most 64; (A * 2^10 + B) then rounds
// once, exactly as the reference's int64 sum converted to double.
struct Scan {
  int T, C, cw, L;
  const double* w;  // cw decays
  std::vector<double> s1, d1, n1, s2, d2, n2;  // T x kBlock each
  Scan(int T_, int C_, int cw_, int L_, const double* w_)
      : T(T_), C(C_), cw(cw_), L(L_), w(w_), s1(T_ * kBlock), d1(T_ * kBlock), n1(T_ * kBlock),
        s2(T_ * kBlock), d2(T_ * kBlock), n2(T_ * kBlock) {}

  void run(const double* k, const double* v, bool reverse) {
    // members as locals: the stores below could alias them, which stops vectorisation
    const int T = this->T, C = this->C, cw = this->cw, L = this->L;
    const double* w = this->w;
    double *ps1 = s1.data(), *pd1 = d1.data(), *pn1 = n1.data(), *ps2 = s2.data(), *pd2 = d2.data(),
           *pn2 = n2.data();
    const double unit = pow2(-kEBits), scale = pow2(kEBits);
    double r[kBlock], sd[kBlock], sn[kBlock], m[kBlock], lp[kBlock], la[kBlock], lb[kBlock];
    double a[64 * kBlock];  // L <= 64 (checked by forward)
    // positions past the end read these (an empty key, a zero value) and write to sink
    double empty_k[kBlock], zero_v[kBlock], sink[6][kBlock];
    for (int c = 0; c < kBlock; ++c) r[c] = kEmpty, sd[c] = 0.0, sn[c] = 0.0, empty_k[c] = kEmpty, zero_v[c] = 0.0;
    const int chunks = (T + L - 1) / L;
    for (int ci = 0; ci < chunks; ++ci) {
      for (int j = 0; j < L; ++j) {
        const int t = ci * L + j;
        const double* kt = t < T ? k + static_cast<int64_t>(reverse ? T - 1 - t : t) * C : empty_k;
        double* aj = a + j * kBlock;
        const double jd = static_cast<double>(j);
#pragma omp simd
        for (int c = 0; c < cw; ++c) {
          aj[c] = kt[c] + jd * w[c];
          m[c] = j == 0 ? aj[c] : (aj[c] > m[c] ? aj[c] : m[c]);
        }
      }
      for (int c = 0; c < kBlock; ++c) lp[c] = 0.0, la[c] = 0.0, lb[c] = 0.0;
      for (int j = 0; j < L; ++j) {
        const int t = ci * L + j;
        const int p = reverse ? T - 1 - t : t;
        const bool in = t < T;
        const double* vt = in ? v + static_cast<int64_t>(p) * C : zero_v;
        const double* aj = a + j * kBlock;
        const double jd = static_cast<double>(j), jm = static_cast<double>(j - 1);
        const int64_t o = static_cast<int64_t>(p) * kBlock;
        double* out_s1 = in ? ps1 + o : sink[0];
        double* out_d1 = in ? pd1 + o : sink[1];
        double* out_n1 = in ? pn1 + o : sink[2];
        double* out_s2 = in ? ps2 + o : sink[3];
        double* out_d2 = in ? pd2 + o : sink[4];
        double* out_n2 = in ? pn2 + o : sink[5];
#pragma omp simd
        for (int c = 0; c < cw; ++c) {
          const double e = exact::round_even(dexp(aj[c] - m[c]) * scale);
          const double vhi = exact::round_even(vt[c] * 0.0009765625);  // v * 2^-10 is exact
          const double vlo = vt[c] - vhi * 1024.0;                       // |vlo| <= 2^9, exact
          out_s1[c] = sd[c] > 0.0 ? r[c] - jd * w[c] : kEmpty;
          out_d1[c] = sd[c];
          out_n1[c] = sn[c];
          out_s2[c] = lp[c] > 0.0 ? m[c] - jm * w[c] : kEmpty;
          out_d2[c] = lp[c] * unit;
          out_n2[c] = (la[c] * 1024.0 + lb[c]) * unit;
          lp[c] += e;
          la[c] += e * vhi;
          lb[c] += e * vlo;
        }
      }
      const double Ld = static_cast<double>(L), L1 = static_cast<double>(L - 1);
#pragma omp simd
      for (int c = 0; c < cw; ++c) {
        const double decayed = r[c] - Ld * w[c];
        const double chunk_scale = m[c] - L1 * w[c];
        const double r_new = decayed > chunk_scale ? decayed : chunk_scale;
        const double f_old = dexp(decayed - r_new);
        const double f_new = dexp(chunk_scale - r_new) * unit;
        sd[c] = sd[c] * f_old + lp[c] * f_new;
        sn[c] = sn[c] * f_old + (la[c] * 1024.0 + lb[c]) * f_new;
        r[c] = r_new;
      }
    }
  }
};

// (w, u: C; k: B x T x C float64; vq: B x T x C integer-valued float64; L; sv) -> y
torch::Tensor forward(torch::Tensor w, torch::Tensor u, torch::Tensor k, torch::Tensor vq, int64_t L, int64_t sv) {
  TORCH_CHECK(k.dim() == 3 && vq.sizes() == k.sizes(), "biwkv_exact: k, vq must be B x T x C");
  TORCH_CHECK(k.scalar_type() == torch::kFloat64 && vq.scalar_type() == torch::kFloat64 &&
                  w.scalar_type() == torch::kFloat64 && u.scalar_type() == torch::kFloat64,
              "biwkv_exact: float64 tensors expected");
  TORCH_CHECK(L >= 1 && L <= 64, "biwkv_exact: chunk length must be in [1, 64]");
  k = k.contiguous();
  vq = vq.contiguous();
  w = w.contiguous();
  u = u.contiguous();
  const int B = k.size(0), T = k.size(1), C = k.size(2);
  TORCH_CHECK(w.numel() == C && u.numel() == C, "biwkv_exact: w, u must have C elements");
  auto y = torch::empty_like(k);
  const double* kp = k.data_ptr<double>();
  const double* vp = vq.data_ptr<double>();
  const double* wp = w.data_ptr<double>();
  const double* up = u.data_ptr<double>();
  double* yp = y.data_ptr<double>();
  const double out_scale = pow2(-sv);
  const int blocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(dynamic, 1)
  for (int task = 0; task < B * blocks; ++task) {
    const int b = task / blocks, c0 = (task % blocks) * kBlock;
    const int cw = std::min(kBlock, C - c0);
    const int64_t base = static_cast<int64_t>(b) * T * C + c0;
    Scan past(T, C, cw, static_cast<int>(L), wp + c0), fut(T, C, cw, static_cast<int>(L), wp + c0);
    past.run(kp + base, vp + base, false);
    fut.run(kp + base, vp + base, true);
    for (int t = 0; t < T; ++t) {
      const int64_t i = base + static_cast<int64_t>(t) * C;
      const int64_t o = static_cast<int64_t>(t) * kBlock;
#pragma omp simd
      for (int c = 0; c < cw; ++c) {
        // the five parts in the reference's order: past carry, past prefix, future
        // carry, future prefix, the token itself
        const double s0 = past.s1[o + c], s1 = past.s2[o + c], s2 = fut.s1[o + c], s3 = fut.s2[o + c];
        const double s4 = up[c0 + c] + kp[i + c];
        double mx = s0;
        mx = s1 > mx ? s1 : mx;
        mx = s2 > mx ? s2 : mx;
        mx = s3 > mx ? s3 : mx;
        mx = s4 > mx ? s4 : mx;
        const double q0 = dexp(s0 - mx), q1 = dexp(s1 - mx), q2 = dexp(s2 - mx), q3 = dexp(s3 - mx), q4 = dexp(s4 - mx);
        double den = 0.0 + q0 * past.d1[o + c];
        den = den + q1 * past.d2[o + c];
        den = den + q2 * fut.d1[o + c];
        den = den + q3 * fut.d2[o + c];
        den = den + q4 * 1.0;
        double num = 0.0 + q0 * past.n1[o + c];
        num = num + q1 * past.n2[o + c];
        num = num + q2 * fut.n1[o + c];
        num = num + q3 * fut.n2[o + c];
        num = num + q4 * vp[i + c];
        yp[i + c] = num / den * out_scale;
      }
    }
  }
  return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "bit-reproducible BiWKV: (w, u, k, vq, L, sv) -> y (float64)");
  m.def("exp", &exact::exp_op, "ops.exp, element-wise (float64)");
  m.def("sigmoid", &exact::sigmoid_op, "ops.sigmoid, element-wise (float64)");
  m.def("absmax", &exact::absmax_op, "max |x| (NaN if any element is not finite)");
  m.def("scale_round", &exact::scale_round_op, "round(x * 2^s), float64");
  m.def("scale_bias", &exact::scale_bias_op, "acc * 2^s + bias along dim (float64)");
  m.def("layer_norm", &exact::layer_norm_op, "ops.layer_norm for a quantisation exponent s (float64)");
  m.def("depthwise_conv2d", &exact::depthwise_conv2d_op, "exact integer depthwise conv: (xq, wq, padding) -> acc");
}
