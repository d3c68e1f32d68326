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
#include <memory>
#include <vector>

namespace {

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
template <int kTerms>
struct Scan {
  int T, C, cw, L;
  const double* w;  // cw decays
  // T x kBlock each, every entry written by run() before it is read: left uninitialised,
  // and reused by the next block of channels of the same thread
  std::unique_ptr<double[]> s1, d1, n1, s2, d2, n2;
  Scan(int T_, int C_, int L_)
      : T(T_), C(C_), cw(0), L(L_), w(nullptr), s1(new double[T_ * kBlock]), d1(new double[T_ * kBlock]),
        n1(new double[T_ * kBlock]), s2(new double[T_ * kBlock]), d2(new double[T_ * kBlock]),
        n2(new double[T_ * kBlock]) {}

  void run(const double* k, const double* v, bool reverse) {
    // members as locals: the stores below could alias them, which stops vectorisation
    const int T = this->T, C = this->C, cw = this->cw, L = this->L;
    const double* w = this->w;
    double *ps1 = s1.get(), *pd1 = d1.get(), *pn1 = n1.get(), *ps2 = s2.get(), *pd2 = d2.get(), *pn2 = n2.get();
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
          const double e = exact::round_even(exact::dexp<kTerms>(aj[c] - m[c]) * scale);
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
        const double f_old = exact::dexp<kTerms>(decayed - r_new);
        const double f_new = exact::dexp<kTerms>(chunk_scale - r_new) * unit;
        sd[c] = sd[c] * f_old + lp[c] * f_new;
        sn[c] = sn[c] * f_old + (la[c] * 1024.0 + lb[c]) * f_new;
        r[c] = r_new;
      }
    }
  }
};

// Arithmetic 2's BiWKV of the channels whose keys span at most 80 and whose
// |w| (T + 1) + |u| is at most 500 (int_ops.biwkv says which): with e_t = e^{k_t - max k}
// (in [e^-80, 1]) and q = e^-w, the past and future sums are the recurrences
// P_{t+1} = q P_t + e_t v_t and F_{t-1} = q F_t + e_t v_t, run in this fixed order, each
// step two roundings per sum, every value a normal double (e^+-580 at most); then
// y_t = ((P_t + F_t) + eu e_t v_t) / ((Pd_t + Fd_t) + eu e_t) with eu = e^u.  One exp per
// element instead of the chunked path's seven.  Lanes of `fast` that are false are left
// untouched.
template <int kTerms>
struct Recurrent {
  std::unique_ptr<double[]> e, fn, fd;  // T x kBlock each
  explicit Recurrent(int T) : e(new double[T * kBlock]), fn(new double[T * kBlock]), fd(new double[T * kBlock]) {}

  void run(const double* k, const double* v, const double* w, const double* u, double* y, int T, int C, int cw,
           const bool* fast) {
    double kmax[kBlock], q[kBlock], eu[kBlock], an[kBlock], ad[kBlock];
    for (int c = 0; c < cw; ++c) {
      kmax[c] = k[c];
      q[c] = exact::dexp<kTerms>(-w[c]);
      eu[c] = exact::dexp<kTerms>(u[c]);
      an[c] = ad[c] = 0.0;
    }
    for (int t = 1; t < T; ++t)
      for (int c = 0; c < cw; ++c) kmax[c] = k[t * C + c] > kmax[c] ? k[t * C + c] : kmax[c];
    double *pe = e.get(), *pfn = fn.get(), *pfd = fd.get();
    for (int t = T - 1; t >= 0; --t) {  // future sums, before position t's own term
      const double* kt = k + static_cast<int64_t>(t) * C;
      const double* vt = v + static_cast<int64_t>(t) * C;
      double *et = pe + t * kBlock, *fnt = pfn + t * kBlock, *fdt = pfd + t * kBlock;
#pragma omp simd
      for (int c = 0; c < cw; ++c) {
        fnt[c] = an[c];
        fdt[c] = ad[c];
        et[c] = exact::dexp<kTerms>(kt[c] - kmax[c]);
        const double ev = et[c] * vt[c];
        an[c] = q[c] * an[c] + ev;
        ad[c] = q[c] * ad[c] + et[c];
      }
    }
    for (int c = 0; c < cw; ++c) an[c] = ad[c] = 0.0;
    double out[kBlock];
    for (int t = 0; t < T; ++t) {  // past sums, and the result
      const double* vt = v + static_cast<int64_t>(t) * C;
      const double *et = pe + t * kBlock, *fnt = pfn + t * kBlock, *fdt = pfd + t * kBlock;
#pragma omp simd
      for (int c = 0; c < cw; ++c) {
        const double ec = eu[c] * et[c];
        out[c] = ((an[c] + fnt[c]) + ec * vt[c]) / ((ad[c] + fdt[c]) + ec);
        const double ev = et[c] * vt[c];
        an[c] = q[c] * an[c] + ev;
        ad[c] = q[c] * ad[c] + et[c];
      }
      double* yt = y + static_cast<int64_t>(t) * C;
      for (int c = 0; c < cw; ++c)
        if (fast[c]) yt[c] = out[c];
    }
  }
};

template <int kTerms>
void forward_blocks(const double* kp, const double* vp, const double* wp, const double* up, double* yp, int B, int T, int C,
                    int64_t L, double out_scale, const double* v = nullptr, const bool* fast = nullptr);

// (w, u: C; k: B x T x C float64; vq: B x T x C integer-valued float64; L; sv; terms of exp) -> y
torch::Tensor forward(torch::Tensor w, torch::Tensor u, torch::Tensor k, torch::Tensor vq, int64_t L, int64_t sv, int64_t terms) {
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
  EXACT_DISPATCH_TERMS(terms, [&] { forward_blocks<kTerms>(kp, vp, wp, up, yp, B, T, C, L, out_scale); });
  return y;
}

// The chunked BiWKV over blocks of channels; with `fast` (B x C, arithmetic 2), its
// channels take the recurrence instead, v being the values themselves.
template <int kTerms>
void forward_blocks(const double* kp, const double* vp, const double* wp, const double* up, double* yp, int B, int T, int C,
                    int64_t L, double out_scale, const double* v, const bool* fast) {
  const int blocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel
  {
  std::unique_ptr<Scan<kTerms>> past, fut;  // made on a thread's first chunked block
  std::unique_ptr<Recurrent<kTerms>> rec;
#pragma omp for schedule(dynamic, 1)
  for (int task = 0; task < B * blocks; ++task) {
    const int b = task / blocks, c0 = (task % blocks) * kBlock;
    const int cw = std::min(kBlock, C - c0);
    const int64_t base = static_cast<int64_t>(b) * T * C + c0;
    bool any_fast = false, all_fast = true;
    for (int c = 0; c < cw; ++c) {
      const bool f = fast != nullptr && fast[b * C + c0 + c];
      any_fast = any_fast || f;
      all_fast = all_fast && f;
    }
    if (any_fast) {
      if (!rec) rec.reset(new Recurrent<kTerms>(T));
      rec->run(kp + base, v + base, wp + c0, up + c0, yp + base, T, C, cw, fast + b * C + c0);
      if (all_fast) continue;
    }
    if (!past) past.reset(new Scan<kTerms>(T, C, static_cast<int>(L))), fut.reset(new Scan<kTerms>(T, C, static_cast<int>(L)));
    Scan<kTerms>& pa = *past;
    Scan<kTerms>& fu = *fut;
    pa.cw = fu.cw = cw;
    pa.w = fu.w = wp + c0;
    pa.run(kp + base, vp + base, false);
    fu.run(kp + base, vp + base, true);
    const bool* keep = fast != nullptr ? fast + b * C + c0 : nullptr;
    for (int t = 0; t < T; ++t) {
      const int64_t i = base + static_cast<int64_t>(t) * C;
      const int64_t o = static_cast<int64_t>(t) * kBlock;
      double out[kBlock];
#pragma omp simd
      for (int c = 0; c < cw; ++c) {
        // the five parts in the reference's order: past carry, past prefix, future
        // carry, future prefix, the token itself
        const double s0 = pa.s1[o + c], s1 = pa.s2[o + c], s2 = fu.s1[o + c], s3 = fu.s2[o + c];
        const double s4 = up[c0 + c] + kp[i + c];
        double mx = s0;
        mx = s1 > mx ? s1 : mx;
        mx = s2 > mx ? s2 : mx;
        mx = s3 > mx ? s3 : mx;
        mx = s4 > mx ? s4 : mx;
        const double q0 = exact::dexp<kTerms>(s0 - mx), q1 = exact::dexp<kTerms>(s1 - mx), q2 = exact::dexp<kTerms>(s2 - mx),
                     q3 = exact::dexp<kTerms>(s3 - mx), q4 = exact::dexp<kTerms>(s4 - mx);
        double den = 0.0 + q0 * pa.d1[o + c];
        den = den + q1 * pa.d2[o + c];
        den = den + q2 * fu.d1[o + c];
        den = den + q3 * fu.d2[o + c];
        den = den + q4 * 1.0;
        double num = 0.0 + q0 * pa.n1[o + c];
        num = num + q1 * pa.n2[o + c];
        num = num + q2 * fu.n1[o + c];
        num = num + q3 * fu.n2[o + c];
        num = num + q4 * vp[i + c];
        out[c] = num / den * out_scale;
      }
      for (int c = 0; c < cw; ++c)
        if (keep == nullptr || !keep[c]) yp[i + c] = out[c];
    }
  }
  }
}

// Arithmetic 2 (int_ops.biwkv): (w, u, k, v, fast: B x C bool, vq, L, sv, terms) -> y.  The
// channels of `fast` take the recurrence on v; the others the chunked path on vq (which
// may be empty when every channel is fast).
torch::Tensor forward_fast(torch::Tensor w, torch::Tensor u, torch::Tensor k, torch::Tensor v, torch::Tensor fast,
                           torch::Tensor vq, int64_t L, int64_t sv, int64_t terms) {
  TORCH_CHECK(k.dim() == 3 && v.sizes() == k.sizes() && k.is_contiguous() && v.is_contiguous() &&
                  k.scalar_type() == torch::kFloat64 && v.scalar_type() == torch::kFloat64,
              "biwkv_exact: k, v contiguous B x T x C float64");
  const int B = k.size(0), T = k.size(1), C = k.size(2);
  TORCH_CHECK(fast.scalar_type() == torch::kBool && fast.is_contiguous() && fast.numel() == B * C, "biwkv_exact: fast B x C bool");
  TORCH_CHECK(w.scalar_type() == torch::kFloat64 && u.scalar_type() == torch::kFloat64 && w.is_contiguous() &&
                  u.is_contiguous() && w.numel() == C && u.numel() == C,
              "biwkv_exact: w, u must have C float64 elements");
  const bool all_fast = fast.all().item<bool>();
  TORCH_CHECK(all_fast || (vq.sizes() == k.sizes() && vq.is_contiguous() && vq.scalar_type() == torch::kFloat64 && L >= 1 && L <= 64),
              "biwkv_exact: vq B x T x C and a chunk length in [1, 64] for the chunked channels");
  auto y = torch::empty_like(k);
  const double* vqp = all_fast ? nullptr : vq.data_ptr<double>();
  EXACT_DISPATCH_TERMS(terms, [&] {
    forward_blocks<kTerms>(k.data_ptr<double>(), vqp, w.data_ptr<double>(), u.data_ptr<double>(), y.data_ptr<double>(), B, T,
                           C, L, pow2(-sv), v.data_ptr<double>(), fast.data_ptr<bool>());
  });
  return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "bit-reproducible BiWKV: (w, u, k, vq, L, sv, terms) -> y (float64)");
  m.def("forward_fast", &forward_fast, "arithmetic 2 BiWKV: (w, u, k, v, fast, vq, L, sv, terms) -> y (float64)");
  m.def("exp", &exact::exp_op, "ops.exp, element-wise (float64): (x, terms)");
  m.def("sigmoid", &exact::sigmoid_op, "ops.sigmoid, element-wise (float64): (x, terms)");
  m.def("absmax", &exact::absmax_op, "max |x| (NaN if any element is not finite)");
  m.def("scale_round", &exact::scale_round_op, "round(x * 2^s), float64");
  m.def("scale_bias", &exact::scale_bias_op, "acc * 2^s + bias along dim (float64)");
  m.def("layer_norm", &exact::layer_norm_op, "ops.layer_norm for a quantisation exponent s (float64)");
  m.def("depthwise_conv2d", &exact::depthwise_conv2d_op, "exact integer depthwise conv: (xq, wq, padding) -> acc");
  m.def("int_linear", &exact::int_linear_op, "arithmetic 2 linear layers, fused: (x, xs, gate, panels, e, bias, parts, acts, quantised, residual, gamma, out_gate, terms) -> outputs");
  m.def("int_conv2d", &exact::int_conv2d_op, "arithmetic 2 conv2d: (x, s, rows, e, bias, kh, kw, stride, padding, taps) -> y");
  m.def("int_gemm", &exact::int_gemm_op, "int16 rows x panels -> int32, exact: (a, panels, cols) -> acc");
  m.def("shift", &exact::shift_op, "arithmetic 2 OmniShift, fixed tap order: (x, weight, h, w) -> y");
}
