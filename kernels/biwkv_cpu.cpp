// BiWKV (bidirectional WKV of Vision-RWKV) on the CPU.
//
// Layout B x T x C, C contiguous.  Work is split into tasks (batch element,
// block of 16 or 8 channels) run in parallel with OpenMP; inside a task the time
// loop is outer and the channel loop inner, so it vectorises across channels.
// Channels left after the full blocks are done one per task.  See
// biwkv_common.h for the numerical scheme.
//
// y_t needs the past sums (a forward scan) and the future sums (a backward
// scan) at the same t.  To stay within cache the future scan is run twice: a
// first pass keeps only its state at the end of every chunk of kChunk steps,
// then, chunk by chunk, the future states are recomputed into a small buffer
// and consumed by the forward scan.  The running sums are accumulated in double
// (float32 sums lose ~1e-4 relative accuracy at T ~ 1e5); the exponentials
// are float32 with exact integer bookkeeping of the decay.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "biwkv_common.h"

namespace {

using acc_t = double;
using biwkv::fexp;
using biwkv::kEmpty;
using biwkv::Mix;
using biwkv::mix;
using biwkv::push;

constexpr int kPrefetch = 64; // rows to prefetch ahead (rows are C floats apart)
constexpr int kChunk = 256;   // time steps per cached chunk of future states

struct Problem {
  const float *w, *u, *k, *v, *gy;
  float *y, *gk, *gv;
  double *gw, *gu;  // per batch element: B x C
  int64_t B, T, C;
  bool exact;  // forward: never take the fast path
};

struct Scratch {
  std::vector<acc_t> ckpt, chunk;
  std::vector<float> rec;
  std::vector<acc_t> fy, fg, fv, fk;  // fast backward: T x n each
};

// One-sided running sums for W channels, relative to their reference term:
//   n = sum e^{l_i - l_ref} v_i, d = sum e^{l_i - l_ref},
//   with DERIV also nd, dd: the same weighted by the distance factor (|x-i|-1),
//   i.e. minus the derivatives with respect to w.
// The reference log-weight at position x is rb - (x - ra) w for past sums
// (terms i < x) and rb - (ra - x) w for future sums (terms i > x).
template <int W, bool DERIV>
struct Sums {
  static constexpr int NS = DERIV ? 6 : 4;  // slots of W values in store()
  acc_t n[W], d[W], nd[W], dd[W];
  float rb[W], ra[W];

  void reset() {
    for (int c = 0; c < W; ++c) {
      n[c] = d[c] = nd[c] = dd[c] = 0;
      rb[c] = kEmpty;
      ra[c] = 0.0f;
    }
  }
  // slots: 0 n, 1 d, 2 rb, 3 ra, [4 nd, 5 dd]
  void store(acc_t* s) const {
    for (int c = 0; c < W; ++c) {
      s[c] = n[c];
      s[W + c] = d[c];
      s[2 * W + c] = rb[c];
      s[3 * W + c] = ra[c];
      if (DERIV) {
        s[4 * W + c] = nd[c];
        s[5 * W + c] = dd[c];
      }
    }
  }
  void load(const acc_t* s) {
    for (int c = 0; c < W; ++c) {
      n[c] = s[c];
      d[c] = s[W + c];
      rb[c] = static_cast<float>(s[2 * W + c]);
      ra[c] = static_cast<float>(s[3 * W + c]);
      if (DERIV) {
        nd[c] = s[4 * W + c];
        dd[c] = s[5 * W + c];
      }
    }
  }
  // Adds term t; afterwards the sums are those of position t+1 (PAST) or t-1.
  template <bool PAST>
  void add(const float* kt, const float* vt, float tf, const float* w, int64_t C) {
    // rows are C floats apart: help the hardware prefetcher
    const int64_t ahead = (PAST ? kPrefetch : -kPrefetch) * C;
    __builtin_prefetch(kt + ahead);
    __builtin_prefetch(vt + ahead);
    const float anc = PAST ? tf + 1.0f : tf - 1.0f;  // anchor of term t
#pragma omp simd
    for (int c = 0; c < W; ++c)
      biwkv::push<PAST, DERIV>(n[c], d[c], nd[c], dd[c], rb[c], ra[c], kt[c], anc,
                        static_cast<acc_t>(vt[c]), acc_t(1), w[c]);
  }
};

// Future sums of every chunk end (checkpoints), then per chunk the future sums
// at each t (before term t is added) into `chunk`, and calls body(t0, t1).
template <int W, bool DERIV, typename Body>
void two_sided(const Problem& P, int64_t off, const float* w, Scratch& ws, Body body) {
  using F = Sums<W, DERIV>;
  const int64_t T = P.T, C = P.C, nchunks = (T + kChunk - 1) / kChunk;
  ws.ckpt.resize(static_cast<size_t>(nchunks) * F::NS * W);
  ws.chunk.resize(static_cast<size_t>(kChunk) * F::NS * W);
  F fut;
  fut.reset();
  for (int64_t t = T - 1; t >= 0; --t) {
    if (t == T - 1 || (t + 1) % kChunk == 0) fut.store(ws.ckpt.data() + (t / kChunk) * F::NS * W);
    fut.template add<false>(P.k + off + t * C, P.v + off + t * C, static_cast<float>(t), w, C);
  }
  for (int64_t j = 0; j < nchunks; ++j) {
    const int64_t t0 = j * kChunk, t1 = std::min(T, t0 + kChunk);
    fut.load(ws.ckpt.data() + j * F::NS * W);
    for (int64_t t = t1 - 1; t >= t0; --t) {
      fut.store(ws.chunk.data() + (t - t0) * F::NS * W);
      fut.template add<false>(P.k + off + t * C, P.v + off + t * C, static_cast<float>(t), w, C);
    }
    body(t0, t1);
  }
}

// Fast forward path for the usual case: once every key is taken relative to its
// channel's largest, all weights e^{k_i - kmax} fit a float32 exponential and all
// decayed sums fit a double.  Then one exponential per element and plain decaying
// sums  S_{t+1} = e^{-w} S_t + e_t v_t  do, instead of the exact scheme's four
// (which handles any |w| T and any range of k, and takes over otherwise).  Tasks
// take up to kFastWidth channels, so that each row read is several cache lines.
constexpr float kFastKeyRange = 80.0f;  // max k - min k: e^-80 is a normal float
constexpr float kFastDecay = 500.0f;    // |w| (T + 1) + |u|: e^+-500 fits a double
constexpr int kFastWidth = 64;

struct FastState {
  alignas(64) double q[kFastWidth], eu[kFastWidth], fn[kFastWidth], fd[kFastWidth];
  alignas(64) double pn[kFastWidth], pd[kFastWidth];
  alignas(64) float kmax[kFastWidth];
};

// Largest key per channel, and whether the fast path applies to these n channels.
bool fast_applies(const Problem& P, int64_t off, int n, FastState& st) {
  alignas(64) float kmin[kFastWidth];
  bool nan = false;
  for (int c = 0; c < n; ++c) {
    st.kmax[c] = -std::numeric_limits<float>::infinity();
    kmin[c] = std::numeric_limits<float>::infinity();
  }
  for (int64_t t = 0; t < P.T; ++t) {
    const float* kt = P.k + off + t * P.C;
#pragma omp simd reduction(| : nan)
    for (int c = 0; c < n; ++c) {
      st.kmax[c] = kt[c] > st.kmax[c] ? kt[c] : st.kmax[c];
      kmin[c] = kt[c] < kmin[c] ? kt[c] : kmin[c];
      nan |= kt[c] != kt[c];
    }
  }
  bool ok = !nan;
  const float len = static_cast<float>(P.T + 1);
  const float *w = P.w + off % P.C, *u = P.u + off % P.C;
  for (int c = 0; c < n; ++c)
    ok = ok && st.kmax[c] - kmin[c] <= kFastKeyRange &&
         std::fabs(w[c]) * len + std::fabs(u[c]) <= kFastDecay;
  return ok;
}

void fast_forward(const Problem& P, int64_t off, int n, FastState& st, Scratch& ws) {
  const int64_t T = P.T, C = P.C, nchunks = (T + kChunk - 1) / kChunk;
  const float *w = P.w + off % C, *u = P.u + off % C;
  for (int c = 0; c < n; ++c) {
    st.q[c] = std::exp(-static_cast<double>(w[c]));
    st.eu[c] = std::exp(static_cast<double>(u[c]));
    st.fn[c] = st.fd[c] = st.pn[c] = st.pd[c] = 0.0;
  }
  double *q = st.q, *eu = st.eu, *fn = st.fn, *fd = st.fd, *pn = st.pn, *pd = st.pd;
  const float* kmax = st.kmax;
  const size_t bytes = sizeof(double) * n;
  // Backward pass: e_t = e^{k_t - kmax} parked in y, and the future sums at the last
  // position of every chunk (before that position's term is added).
  ws.ckpt.resize(static_cast<size_t>(nchunks) * 2 * n);
  ws.chunk.resize(static_cast<size_t>(kChunk) * 2 * n);
  for (int64_t t = T - 1; t >= 0; --t) {
    if (t == T - 1 || (t + 1) % kChunk == 0) {
      acc_t* s = ws.ckpt.data() + (t / kChunk) * 2 * n;
      std::memcpy(s, fn, bytes);
      std::memcpy(s + n, fd, bytes);
    }
    const float* kt = P.k + off + t * C;
    const float* vt = P.v + off + t * C;
    float* yt = P.y + off + t * C;
#pragma omp simd
    for (int c = 0; c < n; ++c) {
      const float e = fexp(kt[c] - kmax[c]);
      yt[c] = e;
      fn[c] = q[c] * fn[c] + static_cast<double>(e) * vt[c];
      fd[c] = q[c] * fd[c] + e;
    }
  }
  // Chunk by chunk: the future sums at each position again, then the forward scan.
  for (int64_t j = 0; j < nchunks; ++j) {
    const int64_t t0 = j * kChunk, t1 = std::min(T, t0 + kChunk);
    std::memcpy(fn, ws.ckpt.data() + j * 2 * n, bytes);
    std::memcpy(fd, ws.ckpt.data() + j * 2 * n + n, bytes);
    for (int64_t t = t1 - 1; t >= t0; --t) {
      acc_t* s = ws.chunk.data() + (t - t0) * 2 * n;
      std::memcpy(s, fn, bytes);
      std::memcpy(s + n, fd, bytes);
      const float* vt = P.v + off + t * C;
      const float* et = P.y + off + t * C;
#pragma omp simd
      for (int c = 0; c < n; ++c) {
        fn[c] = q[c] * fn[c] + static_cast<double>(et[c]) * vt[c];
        fd[c] = q[c] * fd[c] + et[c];
      }
    }
    for (int64_t t = t0; t < t1; ++t) {
      const acc_t* s = ws.chunk.data() + (t - t0) * 2 * n;
      const float* vt = P.v + off + t * C;
      float* yt = P.y + off + t * C;
#pragma omp simd
      for (int c = 0; c < n; ++c) {
        const double e = yt[c], ec = eu[c] * e;
        yt[c] = static_cast<float>((pn[c] + s[c] + ec * vt[c]) / (pd[c] + s[n + c] + ec));
        pn[c] = q[c] * pn[c] + e * vt[c];
        pd[c] = q[c] * pd[c] + e;
      }
    }
  }
}

// Fast backward, under the same conditions as fast_forward.  Relative to kmax,
// e_i = e^{k_i - kmax}, q = e^{-w}, and a term at distance d = |t-i|-1 weighs
// q^d e_i (e^u e_t on the diagonal).  With den_t the relative denominator and
// g_t = gy_t / den_t:
//   gv_i = e_i A_i, gk_i = e_i (v_i A_i - B_i), A_i = sum_t q^d g_t, B_i = sum_t q^d g_t y_t
//   gu = sum_t g_t e^u e_t (v_t - y_t)
//   gw = -sum_t g_t sum_{i != t} d q^d e_i (v_i - y_t)
// The distance-weighted sums R = sum d q^d x follow R <- q (R + S) alongside S <- q S + x.
// Four passes over T in double: future sums of e, e v (for y); y and g; the future
// halves of A, B and gw; the past halves and the diagonal.
// One-sided sums of the fast backward, all decaying by q per step: g (s1), g y (s2),
// e v (s3), e (s4), and the distance-weighted sums of e v (r1) and e (r2).
struct GradSums {
  alignas(64) double s1[kFastWidth], s2[kFastWidth], s3[kFastWidth], s4[kFastWidth];
  alignas(64) double r1[kFastWidth], r2[kFastWidth];
  void reset(int n) {
    for (int c = 0; c < n; ++c) s1[c] = s2[c] = s3[c] = s4[c] = r1[c] = r2[c] = 0.0;
  }
  // add the term of the current position (the sums then hold one step further)
  inline void push(int c, double q, double g, double y, double e, double v) {
    r1[c] = q * (r1[c] + s3[c]);
    r2[c] = q * (r2[c] + s4[c]);
    s1[c] = q * s1[c] + g;
    s2[c] = q * s2[c] + g * y;
    s3[c] = q * s3[c] + e * v;
    s4[c] = q * s4[c] + e;
  }
};

void fast_backward(const Problem& P, int64_t off, int n, FastState& st, Scratch& ws) {
  const int64_t T = P.T, C = P.C, b = off / (T * C), c0 = off % C;
  const float *w = P.w + c0, *u = P.u + c0;
  alignas(64) double q[kFastWidth], eu[kFastWidth], s1[kFastWidth], s2[kFastWidth];
  alignas(64) double s3[kFastWidth], s4[kFastWidth], gw[kFastWidth], gu[kFastWidth];
  for (int c = 0; c < n; ++c) {
    q[c] = std::exp(-static_cast<double>(w[c]));
    eu[c] = std::exp(static_cast<double>(u[c]));
    s1[c] = s2[c] = s3[c] = s4[c] = gw[c] = gu[c] = 0.0;
  }
  const float* kmax = st.kmax;
  const size_t len = static_cast<size_t>(T) * n;
  ws.fy.resize(len);
  ws.fg.resize(len);
  ws.fv.resize(len);
  ws.fk.resize(len);
  double *Y = ws.fy.data(), *G = ws.fg.data(), *HV = ws.fv.data(), *HK = ws.fk.data();
  // 1. future sums of e v (s1) and e (s2) at each t, parked in Y and G
  for (int64_t t = T - 1; t >= 0; --t) {
    const float *kt = P.k + off + t * C, *vt = P.v + off + t * C;
    double *yt = Y + t * n, *gt = G + t * n;
#pragma omp simd
    for (int c = 0; c < n; ++c) {
      const double e = fexp(kt[c] - kmax[c]);
      yt[c] = s1[c];
      gt[c] = s2[c];
      s1[c] = q[c] * s1[c] + e * vt[c];
      s2[c] = q[c] * s2[c] + e;
    }
  }
  // 2. y_t and g_t = gy_t / den_t (past sums in s3, s4)
  for (int64_t t = 0; t < T; ++t) {
    const float *kt = P.k + off + t * C, *vt = P.v + off + t * C, *gyt = P.gy + off + t * C;
    double *yt = Y + t * n, *gt = G + t * n;
#pragma omp simd
    for (int c = 0; c < n; ++c) {
      const double e = fexp(kt[c] - kmax[c]), ec = eu[c] * e;
      const double den = s4[c] + gt[c] + ec;
      yt[c] = (s3[c] + yt[c] + ec * vt[c]) / den;
      gt[c] = gyt[c] / den;
      s3[c] = q[c] * s3[c] + e * vt[c];
      s4[c] = q[c] * s4[c] + e;
    }
  }
  // 3. future halves of A, B and gw
  GradSums sums;
  sums.reset(n);
  for (int64_t t = T - 1; t >= 0; --t) {
    const float *kt = P.k + off + t * C, *vt = P.v + off + t * C;
    const double *yt = Y + t * n, *gt = G + t * n;
    double *hv = HV + t * n, *hk = HK + t * n;
#pragma omp simd
    for (int c = 0; c < n; ++c) {
      const double e = fexp(kt[c] - kmax[c]), v = vt[c], y = yt[c], g = gt[c];
      hv[c] = sums.s1[c];
      hk[c] = v * sums.s1[c] - sums.s2[c];
      gw[c] -= g * (sums.r1[c] - y * sums.r2[c]);
      sums.push(c, q[c], g, y, e, v);
    }
  }
  // 4. past halves and the diagonal; write gk, gv
  sums.reset(n);
  for (int64_t t = 0; t < T; ++t) {
    const float *kt = P.k + off + t * C, *vt = P.v + off + t * C;
    const double *yt = Y + t * n, *gt = G + t * n, *hv = HV + t * n, *hk = HK + t * n;
    float *gkt = P.gk + off + t * C, *gvt = P.gv + off + t * C;
#pragma omp simd
    for (int c = 0; c < n; ++c) {
      const double e = fexp(kt[c] - kmax[c]), v = vt[c], y = yt[c], g = gt[c], ge = eu[c] * g;
      const double a = sums.s1[c] + hv[c] + ge;
      gvt[c] = static_cast<float>(e * a);
      gkt[c] = static_cast<float>(e * (v * (sums.s1[c] + ge) - (sums.s2[c] + ge * y) + hk[c]));
      gu[c] += ge * e * (v - y);
      gw[c] -= g * (sums.r1[c] - y * sums.r2[c]);
      sums.push(c, q[c], g, y, e, v);
    }
  }
  for (int c = 0; c < n; ++c) {
    P.gw[b * C + c0 + c] = gw[c];
    P.gu[b * C + c0 + c] = gu[c];
  }
}

template <int W>
void forward_task(const Problem& P, int64_t b, int64_t c0, Scratch& ws) {
  const int64_t off = b * P.T * P.C + c0, C = P.C;
  float w[W], u[W];
  for (int c = 0; c < W; ++c) {
    w[c] = P.w[c0 + c];
    u[c] = P.u[c0 + c];
  }
  Sums<W, false> past;
  past.reset();
  two_sided<W, false>(P, off, w, ws, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* kt = P.k + off + t * C;
      const float* vt = P.v + off + t * C;
      float* yt = P.y + off + t * C;
      const acc_t* s = ws.chunk.data() + (t - t0) * 4 * W;
      const float tf = static_cast<float>(t);
#pragma omp simd
      for (int c = 0; c < W; ++c) {
        const Mix m = mix(past.rb[c], past.ra[c], static_cast<float>(s[2 * W + c]),
                          static_cast<float>(s[3 * W + c]), tf, kt[c], u[c], w[c]);
        const acc_t num = m.fa * past.n[c] + m.fb * s[c] + m.fc * vt[c];
        const acc_t den = m.fa * past.d[c] + m.fb * s[W + c] + m.fc;
        yt[c] = static_cast<float>(num / den);
      }
      past.template add<true>(kt, vt, tf, w, C);
    }
  });
}

// Gradients.  With D_t the denominator and a_ti = W_ti / D_t (W_tt = e^{u+k_t}):
//   gv_i = sum_t a_ti gy_t
//   gk_i = sum_t a_ti gy_t (v_i - y_t)
//   gu   = sum_t a_tt gy_t (v_t - y_t)
//   gw   = -sum_t gy_t / D_t * sum_{i!=t} (|t-i|-1) W_ti (v_i - y_t)
// The sums over t != i in gv, gk are again two-sided decaying sums, now with
// log-keys -log(largest term of D_t) = -lb + ln w and values g_t = gy_t / den_t
// and g_t y_t (den_t = D_t / largest term, in [1, 2T]).  The forward pass
// finishes y_t, gu, gw and the past half of gv, gk and records (lb, ln, y, g);
// a last backward pass adds the future half.
template <int W>
void backward_task(const Problem& P, int64_t b, int64_t c0, Scratch& ws) {
  const int64_t off = b * P.T * P.C + c0, C = P.C;
  float w[W], u[W];
  for (int c = 0; c < W; ++c) {
    w[c] = P.w[c0 + c];
    u[c] = P.u[c0 + c];
  }
  ws.rec.resize(static_cast<size_t>(P.T) * 4 * W);
  Sums<W, true> past;
  past.reset();
  acc_t p1[W], p2[W];  // past gradient sums of g and g*y, reference (gb, ga)
  float gb[W], ga[W];
  double gwa[W], gua[W];
  for (int c = 0; c < W; ++c) {
    p1[c] = p2[c] = 0;
    gb[c] = kEmpty;
    ga[c] = 0.0f;
    gwa[c] = gua[c] = 0.0;
  }
  two_sided<W, true>(P, off, w, ws, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* kt = P.k + off + t * C;
      const float* vt = P.v + off + t * C;
      const float* gyt = P.gy + off + t * C;
      float* gkt = P.gk + off + t * C;
      float* gvt = P.gv + off + t * C;
      const acc_t* s = ws.chunk.data() + (t - t0) * 6 * W;
      float* r = ws.rec.data() + t * 4 * W;
      const float tf = static_cast<float>(t);
      __builtin_prefetch(gyt + kPrefetch * C);
      __builtin_prefetch(gkt + kPrefetch * C, 1);
      __builtin_prefetch(gvt + kPrefetch * C, 1);
#pragma omp simd
      for (int c = 0; c < W; ++c) {
        const Mix m = mix(past.rb[c], past.ra[c], static_cast<float>(s[2 * W + c]),
                          static_cast<float>(s[3 * W + c]), tf, kt[c], u[c], w[c]);
        const acc_t num = m.fa * past.n[c] + m.fb * s[c] + m.fc * vt[c];
        const acc_t den = m.fa * past.d[c] + m.fb * s[W + c] + m.fc;
        const acc_t y = num / den;
        const acc_t g = gyt[c] / den;
        const acc_t diag = m.fc * g;  // a_tt gy_t
        gua[c] += diag * (vt[c] - y);
        gwa[c] -= g * ((m.fa * past.nd[c] + m.fb * s[4 * W + c]) -
                       y * (m.fa * past.dd[c] + m.fb * s[5 * W + c]));
        // past gradient sums at t; reference log-weight (k_t + gb) - (t - ga) w
        const acc_t e = fexp((kt[c] + gb[c]) - (tf - ga[c]) * w[c]);
        const acc_t fv = e * p1[c], hv = e * p2[c];
        gvt[c] = static_cast<float>(diag + fv);
        gkt[c] = static_cast<float>(diag * (vt[c] - y) + vt[c] * fv - hv);
        r[c] = m.lb;
        r[W + c] = m.ln;
        r[2 * W + c] = static_cast<float>(y);
        r[3 * W + c] = static_cast<float>(g);
        // add term t: log-weight at x > t is -lb - (x - (t + 1 + ln)) w
        acc_t unused1, unused2;
        push<true, false>(p1[c], p2[c], unused1, unused2, gb[c], ga[c], -m.lb, tf + 1.0f + m.ln, g,
                          g * y, w[c]);
      }
      past.template add<true>(kt, vt, tf, w, C);
    }
  });

  // future gradient sums; reference log-weight at x is hb - (ha - x) w
  acc_t q1[W], q2[W];
  float hb[W], ha[W];
  for (int c = 0; c < W; ++c) {
    q1[c] = q2[c] = 0;
    hb[c] = kEmpty;
    ha[c] = 0.0f;
  }
  for (int64_t t = P.T - 1; t >= 0; --t) {
    const float* kt = P.k + off + t * C;
    const float* vt = P.v + off + t * C;
    float* gkt = P.gk + off + t * C;
    float* gvt = P.gv + off + t * C;
    const float* r = ws.rec.data() + t * 4 * W;
    const float tf = static_cast<float>(t);
    __builtin_prefetch(kt - kPrefetch * C);
    __builtin_prefetch(vt - kPrefetch * C);
    __builtin_prefetch(gkt - kPrefetch * C, 1);
    __builtin_prefetch(gvt - kPrefetch * C, 1);
#pragma omp simd
    for (int c = 0; c < W; ++c) {
      const float lb = r[c], ln = r[W + c];
      const acc_t y = r[2 * W + c], g = r[3 * W + c];
      const acc_t e = fexp((kt[c] + hb[c]) - (ha[c] - tf) * w[c]);
      const acc_t gv = e * q1[c], hv = e * q2[c];
      gvt[c] = static_cast<float>(gvt[c] + gv);
      gkt[c] = static_cast<float>(gkt[c] + (vt[c] * gv - hv));
      // add term t: log-weight at x < t is -lb - ((t - 1 - ln) - x) w
      acc_t unused1, unused2;
      push<false, false>(q1[c], q2[c], unused1, unused2, hb[c], ha[c], -lb, tf - 1.0f - ln, g,
                         g * y, w[c]);
    }
  }
  for (int c = 0; c < W; ++c) {
    P.gw[b * P.C + c0 + c] = gwa[c];
    P.gu[b * P.C + c0 + c] = gua[c];
  }
}

// Runs Op::task<W> over all batch elements and blocks of W channels (leftover
// channels one by one).  Blocks of 16 channels fill a cache line; with fewer
// such blocks than threads, blocks of 8 give more tasks.
template <int W, typename Op>
void run_blocks(const Problem& P, int threads) {
  const int64_t nfull = P.C / W;
  const int64_t per_b = nfull + P.C % W;
  const int64_t ntasks = P.B * per_b;
#pragma omp parallel num_threads(static_cast<int>(std::min<int64_t>(threads, ntasks)))
  {
    Scratch ws;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      const int64_t b = task / per_b, j = task % per_b;
      if (j < nfull)
        Op::template task<W>(P, b, j * W, ws);
      else
        Op::template task<1>(P, b, nfull * W + (j - nfull), ws);
    }
  }
}

template <typename Op>
void run_tasks(const Problem& P) {
  const int threads = std::max(1, at::get_num_threads());
  if (P.B * (P.C / 16) >= threads || P.C < 16)
    run_blocks<16, Op>(P, threads);
  else
    run_blocks<8, Op>(P, threads);
}

struct Forward {
  template <int W>
  static void task(const Problem& P, int64_t b, int64_t c0, Scratch& ws) {
    forward_task<W>(P, b, c0, ws);
  }
};

// Exact forward for channels [c0, c1) of batch element b, 16 (then 1) at a time.
void exact_forward_range(const Problem& P, int64_t b, int64_t c0, int64_t c1, Scratch& ws) {
  for (; c0 + 16 <= c1; c0 += 16) forward_task<16>(P, b, c0, ws);
  for (; c0 < c1; ++c0) forward_task<1>(P, b, c0, ws);
}

// Fast path over groups of channels (as few as fill the threads, at most
// kFastWidth wide); a group where it does not apply takes the exact path.
// Fast(P, off, n, st, ws) and Exact(P, b, c0, c1, ws) run one group.
template <typename Fast, typename Exact>
void run_fast_groups(const Problem& P, Fast fast, Exact exact) {
  const int64_t threads = std::max(1, at::get_num_threads());
  // groups per batch element: enough for the width limit, and with B = 1 a multiple
  // of the thread count, so that no thread idles in the last round
  int64_t per_b = (P.C + kFastWidth - 1) / kFastWidth;
  if (P.B < threads) per_b = (per_b + threads - 1) / threads * threads;
  const int64_t width = std::min<int64_t>(kFastWidth, ((P.C + per_b - 1) / per_b + 7) / 8 * 8);
  const int64_t groups = (P.C + width - 1) / width, ntasks = P.B * groups;
#pragma omp parallel num_threads(static_cast<int>(std::min<int64_t>(threads, ntasks)))
  {
    Scratch ws;
    FastState st;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      const int64_t b = task / groups, c0 = (task % groups) * width;
      const int n = static_cast<int>(std::min(width, P.C - c0));
      const int64_t off = b * P.T * P.C + c0;
      if (fast_applies(P, off, n, st))
        fast(P, off, n, st, ws);
      else
        exact(P, b, c0, c0 + n, ws);
    }
  }
}

void run_fast_forward(const Problem& P) { run_fast_groups(P, fast_forward, exact_forward_range); }

struct Backward {
  template <int W>
  static void task(const Problem& P, int64_t b, int64_t c0, Scratch& ws) {
    backward_task<W>(P, b, c0, ws);
  }
};

// Exact backward for channels [c0, c1) of batch element b, 16 (then 1) at a time.
void exact_backward_range(const Problem& P, int64_t b, int64_t c0, int64_t c1, Scratch& ws) {
  for (; c0 + 16 <= c1; c0 += 16) backward_task<16>(P, b, c0, ws);
  for (; c0 < c1; ++c0) backward_task<1>(P, b, c0, ws);
}

void run_fast_backward(const Problem& P) { run_fast_groups(P, fast_backward, exact_backward_range); }

void check_inputs(const torch::Tensor& w, const torch::Tensor& u, const torch::Tensor& k,
                  const torch::Tensor& v) {
  for (const auto* x : {&w, &u, &k, &v}) {
    TORCH_CHECK(x->device().is_cpu(), "biwkv_cpu: tensors must be on the CPU");
    TORCH_CHECK(x->scalar_type() == torch::kFloat32, "biwkv_cpu: tensors must be float32");
    TORCH_CHECK(x->is_contiguous(), "biwkv_cpu: tensors must be contiguous");
  }
  TORCH_CHECK(k.dim() == 3 && v.sizes() == k.sizes(), "biwkv_cpu: k, v must be B x T x C");
  TORCH_CHECK(w.dim() == 1 && u.dim() == 1 && w.size(0) == k.size(2) && u.size(0) == k.size(2),
              "biwkv_cpu: w, u must have shape (C,)");
  // positions and anchors (within +-3T) must be exact in float32
  TORCH_CHECK(k.size(1) < (1 << 22), "biwkv_cpu: T too large");
}

Problem make_problem(const torch::Tensor& w, const torch::Tensor& u, const torch::Tensor& k,
                     const torch::Tensor& v) {
  Problem P{};
  P.w = w.data_ptr<float>();
  P.u = u.data_ptr<float>();
  P.k = k.data_ptr<float>();
  P.v = v.data_ptr<float>();
  P.B = k.size(0);
  P.T = k.size(1);
  P.C = k.size(2);
  return P;
}

torch::Tensor forward(torch::Tensor w, torch::Tensor u, torch::Tensor k, torch::Tensor v,
                      bool exact) {
  check_inputs(w, u, k, v);
  auto y = torch::empty_like(k);
  if (k.numel() == 0) return y;
  Problem P = make_problem(w, u, k, v);
  P.y = y.data_ptr<float>();
  P.exact = exact;
  {
    pybind11::gil_scoped_release nogil;
    if (exact)
      run_tasks<Forward>(P);
    else
      run_fast_forward(P);
  }
  return y;
}

std::vector<torch::Tensor> backward(torch::Tensor w, torch::Tensor u, torch::Tensor k,
                                    torch::Tensor v, torch::Tensor gy, bool exact) {
  check_inputs(w, u, k, v);
  TORCH_CHECK(gy.sizes() == k.sizes() && gy.scalar_type() == torch::kFloat32 &&
                  gy.is_contiguous() && gy.device().is_cpu(),
              "biwkv_cpu: gy must be a contiguous float32 CPU tensor shaped like k");
  auto gk = torch::zeros_like(k), gv = torch::zeros_like(k);
  auto gw = torch::zeros({k.size(0), k.size(2)}, k.options().dtype(torch::kFloat64));
  auto gu = torch::zeros_like(gw);
  if (k.numel() > 0) {
    Problem P = make_problem(w, u, k, v);
    P.gy = gy.data_ptr<float>();
    P.gk = gk.data_ptr<float>();
    P.gv = gv.data_ptr<float>();
    P.gw = gw.data_ptr<double>();
    P.gu = gu.data_ptr<double>();
    pybind11::gil_scoped_release nogil;
    if (exact)
      run_tasks<Backward>(P);
    else
      run_fast_backward(P);
  }
  return {gw.sum(0).to(torch::kFloat32), gu.sum(0).to(torch::kFloat32), gk, gv};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "BiWKV operator (CPU)";
  m.def("forward", &forward, "BiWKV forward: (w, u, k, v) -> y; exact=True skips the fast path",
        pybind11::arg("w"), pybind11::arg("u"), pybind11::arg("k"), pybind11::arg("v"),
        pybind11::arg("exact") = false);
  m.def("backward", &backward,
        "BiWKV backward: (w, u, k, v, gy) -> (gw, gu, gk, gv); exact=True skips the fast path",
        pybind11::arg("w"), pybind11::arg("u"), pybind11::arg("k"), pybind11::arg("v"),
        pybind11::arg("gy"), pybind11::arg("exact") = false);
}
