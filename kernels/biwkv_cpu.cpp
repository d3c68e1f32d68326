// BiWKV (bidirectional WKV of Vision-RWKV) on the CPU.
//
// Layout B x T x C, C contiguous.  Work is split into tasks (batch, block of
// kBlock channels) run in parallel with OpenMP; inside a task the time loop is
// outer and the channel loop inner, so it vectorises across channels.  Channels
// left over after the full blocks are done one per task.  See biwkv_common.h for
// the numerical scheme; the per-task scratch is O(T * kBlock).
#include <torch/extension.h>

#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "biwkv_common.h"

#ifndef BIWKV_ACC
#define BIWKV_ACC float
#endif

namespace {

using acc_t = BIWKV_ACC;  // type of the running sums
using biwkv::combine3;
using biwkv::fexp;
using biwkv::kEmpty;
using biwkv::scales;

constexpr int kBlock = 16;

struct Problem {
  const float *w, *u, *k, *v, *gy;
  float *y, *gk, *gv;
  double *gw, *gu;  // per batch element: B x C
  int64_t B, T, C;
};

// Future sums F_t, f_t (and with DERIV their w-derivatives
// F'_t = sum_{i>t} (i-1-t) e^{..} v_i, f'_t) for W channels starting at `off`,
// stored in S[t] (NS slots of W values) before term t is added:
//   slots 0 F, 1 f, 2 reference base, 3 reference anchor, [4 F', 5 f'].
template <int W, bool DERIV>
void future_scan(const Problem& P, int64_t off, const float* w, acc_t* S) {
  constexpr int NS = DERIV ? 6 : 4;
  acc_t n[W], d[W], nd[W], dd[W];
  float rb[W], ra[W];
  for (int c = 0; c < W; ++c) {
    n[c] = d[c] = nd[c] = dd[c] = 0;
    rb[c] = kEmpty;
    ra[c] = 0.0f;
  }
  for (int64_t t = P.T - 1; t >= 0; --t) {
    const float* kt = P.k + off + t * P.C;
    const float* vt = P.v + off + t * P.C;
    acc_t* s = S + t * NS * W;
    const float tf = static_cast<float>(t);
#pragma omp simd
    for (int c = 0; c < W; ++c) {
      s[c] = n[c];
      s[W + c] = d[c];
      s[2 * W + c] = rb[c];
      s[3 * W + c] = ra[c];
      if (DERIV) {
        s[4 * W + c] = nd[c];
        s[5 * W + c] = dd[c];
      }
      // term t seen from x <= t-1 has log-weight k_t - (t-1-x) w: anchor t-1
      const float diff = (rb[c] - kt[c]) - (ra[c] - tf + 1.0f) * w[c];
      float so, sn;
      scales(diff, so, sn);
      if (DERIV) {
        nd[c] = so * (nd[c] + n[c]);
        dd[c] = so * (dd[c] + d[c]);
      }
      n[c] = so * n[c] + sn * vt[c];
      d[c] = so * d[c] + sn;
      const bool keep = diff >= 0.0f;
      rb[c] = keep ? rb[c] : kt[c];
      ra[c] = keep ? ra[c] : tf - 1.0f;
    }
  }
}

template <int W>
void forward_task(const Problem& P, int64_t b, int64_t c0, acc_t* S) {
  const int64_t off = b * P.T * P.C + c0;
  float w[W], u[W];
  for (int c = 0; c < W; ++c) {
    w[c] = P.w[c0 + c];
    u[c] = P.u[c0 + c];
  }
  future_scan<W, false>(P, off, w, S);

  // past sums P_t, p_t; the reference's log-weight at x is rb - (x - ra) w
  acc_t n[W], d[W];
  float rb[W], ra[W];
  for (int c = 0; c < W; ++c) {
    n[c] = d[c] = 0;
    rb[c] = kEmpty;
    ra[c] = 0.0f;
  }
  for (int64_t t = 0; t < P.T; ++t) {
    const float* kt = P.k + off + t * P.C;
    const float* vt = P.v + off + t * P.C;
    float* yt = P.y + off + t * P.C;
    const acc_t* s = S + t * 4 * W;
    const float tf = static_cast<float>(t);
#pragma omp simd
    for (int c = 0; c < W; ++c) {
      const float rbf = static_cast<float>(s[2 * W + c]);
      const float na = tf - ra[c];
      const float nb = static_cast<float>(s[3 * W + c]) - tf;
      const float ck = u[c] + kt[c];
      const float xa = (rb[c] - ck) - na * w[c];
      const float xb = (rbf - ck) - nb * w[c];
      const float xab = (rb[c] - rbf) - (na - nb) * w[c];
      float fa, fb, fc;
      bool am, bm;
      combine3(xa, xb, xab, fa, fb, fc, am, bm);
      const acc_t num = fa * n[c] + fb * s[c] + fc * vt[c];
      const acc_t den = fa * d[c] + fb * s[W + c] + fc;
      yt[c] = static_cast<float>(num / den);
      // add term t: seen from x >= t+1 its log-weight is k_t - (x-1-t) w
      const float diff = (rb[c] - kt[c]) - (tf + 1.0f - ra[c]) * w[c];
      float so, sn;
      scales(diff, so, sn);
      n[c] = so * n[c] + sn * vt[c];
      d[c] = so * d[c] + sn;
      const bool keep = diff >= 0.0f;
      rb[c] = keep ? rb[c] : kt[c];
      ra[c] = keep ? ra[c] : tf + 1.0f;
    }
  }
}

// Gradients.  With D_t the denominator, a_ti = W_ti / D_t (W_tt = e^{u+k_t}):
//   gv_i = sum_t a_ti gy_t
//   gk_i = sum_t a_ti gy_t (v_i - y_t)
//   gu   = sum_t a_tt gy_t (v_t - y_t)
//   gw   = -sum_t gy_t / D_t * sum_{i!=t} (|t-i|-1) W_ti (v_i - y_t)
// The sums over t != i in gv, gk are again two-sided decaying sums, now with
// keys -log D_t (kept as "-base + n w") and values g_t = gy_t / den_t,
// g_t y_t, where den_t = D_t / (max term).  Pass 1 stores the future sums and
// their w-derivatives, pass 2 (forward in t) finishes y_t, gu, gw and the
// past half of gv, gk, pass 3 (backward in t) adds the future half.
template <int W>
void backward_task(const Problem& P, int64_t b, int64_t c0, acc_t* S) {
  constexpr int NS = 6;
  const int64_t off = b * P.T * P.C + c0;
  float w[W], u[W];
  for (int c = 0; c < W; ++c) {
    w[c] = P.w[c0 + c];
    u[c] = P.u[c0 + c];
  }
  future_scan<W, true>(P, off, w, S);

  acc_t n[W], d[W], nd[W], dd[W];  // past sums and their w-derivatives
  float rb[W], ra[W];
  acc_t p1[W], p2[W];  // past gradient sums of g and g*y
  float gb[W], ga[W];
  double gwa[W], gua[W];
  for (int c = 0; c < W; ++c) {
    n[c] = d[c] = nd[c] = dd[c] = p1[c] = p2[c] = 0;
    rb[c] = gb[c] = kEmpty;
    ra[c] = ga[c] = 0.0f;
    gwa[c] = gua[c] = 0.0;
  }
  for (int64_t t = 0; t < P.T; ++t) {
    const float* kt = P.k + off + t * P.C;
    const float* vt = P.v + off + t * P.C;
    const float* gyt = P.gy + off + t * P.C;
    acc_t* s = S + t * NS * W;
    const float tf = static_cast<float>(t);
#pragma omp simd
    for (int c = 0; c < W; ++c) {
      const acc_t nB = s[c], dB = s[W + c], ndB = s[4 * W + c], ddB = s[5 * W + c];
      const float rbf = static_cast<float>(s[2 * W + c]);
      const float na = tf - ra[c];
      const float nb = static_cast<float>(s[3 * W + c]) - tf;
      const float ck = u[c] + kt[c];
      const float xa = (rb[c] - ck) - na * w[c];
      const float xb = (rbf - ck) - nb * w[c];
      const float xab = (rb[c] - rbf) - (na - nb) * w[c];
      float fa, fb, fc;
      bool am, bm;
      combine3(xa, xb, xab, fa, fb, fc, am, bm);
      const acc_t num = fa * n[c] + fb * nB + fc * vt[c];
      const acc_t den = fa * d[c] + fb * dB + fc;
      const acc_t y = num / den;
      const acc_t g = gyt[c] / den;
      const acc_t diag = fc * g;  // a_tt gy_t
      gua[c] += static_cast<double>(diag * (vt[c] - y));
      gwa[c] -= static_cast<double>(g * ((fa * nd[c] + fb * ndB) - y * (fa * dd[c] + fb * ddB)));
      // log of the largest term of D_t is lb - ln * w
      const float lb = am ? rb[c] : (bm ? rbf : ck);
      const float ln = am ? na : (bm ? nb : 0.0f);
      // past gradient sums at t; reference log-weight (k_t + gb) - (t - ga) w
      const acc_t e = fexp((kt[c] + gb[c]) - (tf - ga[c]) * w[c]);
      const acc_t fv = e * p1[c], hv = e * p2[c];
      s[0 * W + c] = lb;
      s[1 * W + c] = ln;
      s[2 * W + c] = y;
      s[3 * W + c] = g;
      s[4 * W + c] = diag + fv;
      s[5 * W + c] = diag * (vt[c] - y) + vt[c] * fv - hv;
      // add term t to the past gradient sums: base -lb, anchor t + 1 + ln
      const float anc = tf + 1.0f + ln;
      const float gdiff = (gb[c] + lb) - (anc - ga[c]) * w[c];
      float so, sn;
      scales(gdiff, so, sn);
      p1[c] = so * p1[c] + sn * g;
      p2[c] = so * p2[c] + sn * (g * y);
      const bool gkeep = gdiff >= 0.0f;
      gb[c] = gkeep ? gb[c] : -lb;
      ga[c] = gkeep ? ga[c] : anc;
      // add term t to the past sums
      const float diff = (rb[c] - kt[c]) - (tf + 1.0f - ra[c]) * w[c];
      scales(diff, so, sn);
      nd[c] = so * (nd[c] + n[c]);
      dd[c] = so * (dd[c] + d[c]);
      n[c] = so * n[c] + sn * vt[c];
      d[c] = so * d[c] + sn;
      const bool keep = diff >= 0.0f;
      rb[c] = keep ? rb[c] : kt[c];
      ra[c] = keep ? ra[c] : tf + 1.0f;
    }
  }

  acc_t q1[W], q2[W];  // future gradient sums
  float hb[W], ha[W];
  for (int c = 0; c < W; ++c) {
    q1[c] = q2[c] = 0;
    hb[c] = kEmpty;
    ha[c] = 0.0f;
  }
  for (int64_t t = P.T - 1; t >= 0; --t) {
    const float* kt = P.k + off + t * P.C;
    const float* vt = P.v + off + t * P.C;
    float* gkt = P.gk + off + t * P.C;
    float* gvt = P.gv + off + t * P.C;
    const acc_t* s = S + t * NS * W;
    const float tf = static_cast<float>(t);
#pragma omp simd
    for (int c = 0; c < W; ++c) {
      const float lb = static_cast<float>(s[c]);
      const float ln = static_cast<float>(s[W + c]);
      const acc_t y = s[2 * W + c], g = s[3 * W + c];
      const acc_t e = fexp((kt[c] + hb[c]) - (ha[c] - tf) * w[c]);
      const acc_t gv = e * q1[c], hv = e * q2[c];
      gvt[c] = static_cast<float>(s[4 * W + c] + gv);
      gkt[c] = static_cast<float>(s[5 * W + c] + vt[c] * gv - hv);
      // add term t: base -lb, anchor t - 1 - ln
      const float anc = tf - 1.0f - ln;
      const float gdiff = (hb[c] + lb) - (ha[c] - anc) * w[c];
      float so, sn;
      scales(gdiff, so, sn);
      q1[c] = so * q1[c] + sn * g;
      q2[c] = so * q2[c] + sn * (g * y);
      const bool keep = gdiff >= 0.0f;
      hb[c] = keep ? hb[c] : -lb;
      ha[c] = keep ? ha[c] : anc;
    }
  }
  for (int c = 0; c < W; ++c) {
    P.gw[b * P.C + c0 + c] = gwa[c];
    P.gu[b * P.C + c0 + c] = gua[c];
  }
}

// Runs task(b, c0) over all batch elements and channel blocks.
template <typename Full, typename Single>
void run_tasks(const Problem& P, int ns, Full full, Single single) {
  const int64_t nfull = P.C / kBlock;
  const int64_t per_b = nfull + P.C % kBlock;
  const int64_t ntasks = P.B * per_b;
#pragma omp parallel num_threads(at::get_num_threads())
  {
    std::vector<acc_t> scratch;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      if (scratch.empty()) scratch.resize(static_cast<size_t>(P.T) * ns * kBlock);
      const int64_t b = task / per_b, j = task % per_b;
      if (j < nfull)
        full(P, b, j * kBlock, scratch.data());
      else
        single(P, b, nfull * kBlock + (j - nfull), scratch.data());
    }
  }
}

void check_inputs(const torch::Tensor& w, const torch::Tensor& u,
                  const torch::Tensor& k, const torch::Tensor& v) {
  for (const auto* x : {&w, &u, &k, &v}) {
    TORCH_CHECK(x->device().is_cpu(), "biwkv_cpu: tensors must be on the CPU");
    TORCH_CHECK(x->scalar_type() == torch::kFloat32, "biwkv_cpu: tensors must be float32");
    TORCH_CHECK(x->is_contiguous(), "biwkv_cpu: tensors must be contiguous");
  }
  TORCH_CHECK(k.dim() == 3 && v.sizes() == k.sizes(), "biwkv_cpu: k, v must be B x T x C");
  TORCH_CHECK(w.dim() == 1 && u.dim() == 1 && w.size(0) == k.size(2) && u.size(0) == k.size(2),
              "biwkv_cpu: w, u must have shape (C,)");
  TORCH_CHECK(k.size(1) < (1 << 22), "biwkv_cpu: T too large");
}

Problem make_problem(const torch::Tensor& w, const torch::Tensor& u,
                     const torch::Tensor& k, const torch::Tensor& v) {
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

torch::Tensor forward(torch::Tensor w, torch::Tensor u, torch::Tensor k, torch::Tensor v) {
  check_inputs(w, u, k, v);
  auto y = torch::empty_like(k);
  if (k.numel() == 0) return y;
  Problem P = make_problem(w, u, k, v);
  P.y = y.data_ptr<float>();
  {
    pybind11::gil_scoped_release nogil;
    run_tasks(P, 4, forward_task<kBlock>, forward_task<1>);
  }
  return y;
}

std::vector<torch::Tensor> backward(torch::Tensor w, torch::Tensor u, torch::Tensor k,
                                    torch::Tensor v, torch::Tensor gy) {
  check_inputs(w, u, k, v);
  TORCH_CHECK(gy.sizes() == k.sizes() && gy.scalar_type() == torch::kFloat32 &&
                  gy.is_contiguous() && gy.device().is_cpu(),
              "biwkv_cpu: gy must be a contiguous float32 CPU tensor shaped like k");
  auto gk = torch::zeros_like(k), gv = torch::zeros_like(k);
  auto opts = k.options().dtype(torch::kFloat64);
  auto gw = torch::zeros({k.size(0), k.size(2)}, opts), gu = torch::zeros_like(gw);
  if (k.numel() > 0) {
    Problem P = make_problem(w, u, k, v);
    P.gy = gy.data_ptr<float>();
    P.gk = gk.data_ptr<float>();
    P.gv = gv.data_ptr<float>();
    P.gw = gw.data_ptr<double>();
    P.gu = gu.data_ptr<double>();
    pybind11::gil_scoped_release nogil;
    run_tasks(P, 6, backward_task<kBlock>, backward_task<1>);
  }
  return {gw.sum(0).to(torch::kFloat32), gu.sum(0).to(torch::kFloat32), gk, gv};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "BiWKV operator (CPU)";
  m.def("forward", &forward, "BiWKV forward: (w, u, k, v) -> y");
  m.def("backward", &backward, "BiWKV backward: (w, u, k, v, gy) -> (gw, gu, gk, gv)");
}
