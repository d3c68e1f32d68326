// Math shared by the CPU and CUDA BiWKV kernels.
//
// For one channel (k_i, v_i, i in [0, T)), with per-channel w and u:
//   y_t = (P_t + F_t + e^{u+k_t} v_t) / (p_t + f_t + e^{u+k_t})
//   P_t = sum_{i<t} e^{k_i - (t-1-i) w} v_i     (past,   p_t: same without v)
//   F_t = sum_{i>t} e^{k_i - (i-1-t) w} v_i     (future, f_t: same without v)
//
// Numerical scheme.  Each running sum is stored relative to its dominant term
// (the "reference"), whose log-weight at position x is written
//     base - n * w     with n = x - anchor (past sums) or anchor - x (future sums).
// base is a small number (a k value, or u + k) and the anchor is an integer kept
// exactly in a float (exact below 2^24).  All exponents are formed as
//     (base_a - base_b) - (n_a - n_b) * w
// i.e. the integer multiples of w are subtracted *before* multiplying by w, so an
// exponent that matters (one of moderate size) is never the small difference of
// two large numbers: the result stays accurate for |w| * T in the thousands, and
// the sums themselves stay within [1, T] (denominators) so nothing overflows.
// An empty sum has base kEmpty, which makes every weight relative to it 0.
#pragma once

#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define BW_HD __host__ __device__ __forceinline__
#else
#define BW_HD inline
#endif

namespace biwkv {

constexpr float kEmpty = -1e38f;

// exp(x).  On the CPU a branch-free polynomial so that loops over channels
// vectorise (glibc's vector expf is only used under -ffast-math); accurate to
// ~2 ulp, flushes to 0 below -87.
BW_HD float fexp(float x) {
#ifdef __CUDA_ARCH__
  return expf(x);
#else
  const float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // n = round(x / ln2) via the 1.5 * 2^23 trick; r = x - n ln2 in [-ln2/2, ln2/2]
  const float shifter = 12582912.0f;
  const float tt = xc * 1.44269504088896341f + shifter;
  const float nf = tt - shifter;
  const float r = (xc - nf * 0.693145751953125f) - nf * 1.428606765330187e-06f;
  // Taylor series to degree 7: truncation error < 1e-8 relative on |r| <= 0.347
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t tbits, sbits;
  std::memcpy(&tbits, &tt, 4);
  std::memcpy(&sbits, &shifter, 4);
  const int32_t bits = (tbits - sbits + 127) << 23;  // 2^n, n in [-126, 127]
  float scale;
  std::memcpy(&scale, &bits, 4);
  const float res = p * scale;
  return x < -87.0f ? 0.0f : res;
#endif
}

// A new term is added to a running sum; diff = log-weight(reference) -
// log-weight(new term), both at the same position.  Returns the factors for the
// old sum (so) and for the new term (sn); the new term becomes the reference
// when diff < 0.
BW_HD void scales(float diff, float& so, float& sn) {
  const float e = fexp(diff >= 0.0f ? -diff : diff);
  so = diff >= 0.0f ? 1.0f : e;
  sn = diff >= 0.0f ? e : 1.0f;
}

// Exponentials of the past (A), future (B) and centre (C) log-weights relative
// to their maximum.  xa = lA - lC, xb = lB - lC, xab = lA - lB.
// amax / bmax tell whether A / B is the maximum (neither: C is).
BW_HD void combine3(float xa, float xb, float xab, float& fa, float& fb,
                    float& fc, bool& amax, bool& bmax) {
  // '&' rather than '&&': no branches, so the CPU loops vectorise
  amax = (xa >= 0.0f) & (xab >= 0.0f);
  bmax = (!amax) & (xb >= 0.0f) & (xab < 0.0f);
  fa = fexp(amax ? 0.0f : (bmax ? xab : xa));
  fb = fexp(amax ? -xab : (bmax ? 0.0f : xb));
  fc = fexp(amax ? -xa : (bmax ? -xb : 0.0f));
}

// Adds a term with log-weight base - |x - anc| * w (at position x) and values
// (x1, x2) to a running sum (n1, n2) whose reference has log-weight
// rb - |x - ra| * w; PAST: the sum is over terms before x (x > anc), otherwise
// after x.  With DERIV also updates (e1, e2), the sums weighted by the distance
// factor (|x - i| - 1) = |x - anchor_i|: all old terms move one step away.
template <bool PAST, bool DERIV, typename A>
BW_HD void push(A& n1, A& n2, A& e1, A& e2, float& rb, float& ra, float base, float anc,
                A x1, A x2, float w) {
  const float diff = (rb - base) - (PAST ? anc - ra : ra - anc) * w;
  float so, sn;
  scales(diff, so, sn);
  if (DERIV) {
    e1 = so * (e1 + n1);
    e2 = so * (e2 + n2);
  }
  n1 = so * n1 + sn * x1;
  n2 = so * n2 + sn * x2;
  const bool keep = diff >= 0.0f;
  rb = keep ? rb : base;
  ra = keep ? ra : anc;
}

// Weights of the past (A), future (B) and centre (u + k_t) terms at position
// tf relative to the largest.  (rba, raa): reference of the past sums,
// (rbb, rab): of the future sums.  lb - ln * w is the largest log-weight.
struct Mix {
  float fa, fb, fc, lb, ln;
};

BW_HD Mix mix(float rba, float raa, float rbb, float rab, float tf, float k, float u, float w) {
  const float na = tf - raa, nb = rab - tf;
  const float ck = u + k;
  const float xa = (rba - ck) - na * w;
  const float xb = (rbb - ck) - nb * w;
  const float xab = (rba - rbb) - (na - nb) * w;
  Mix m;
  bool am, bm;
  combine3(xa, xb, xab, m.fa, m.fb, m.fc, am, bm);
  m.lb = am ? rba : (bm ? rbb : ck);
  m.ln = am ? na : (bm ? nb : 0.0f);
  return m;
}

}  // namespace biwkv
