// BiWKV (bidirectional WKV of Vision-RWKV) on CUDA: one thread per (batch, channel).
//
// Same numerical scheme as the CPU kernel (biwkv_common.h): a backward scan
// stores the future sums of every t in global scratch (allocated by the caller,
// laid out B x T x C so that neighbouring threads touch neighbouring words), a
// forward scan combines them with the past sums.  Per-thread state is O(1), so
// there is no limit on T.  Sums are accumulated in double.
#include <cuda_runtime.h>

#include <cstdint>

#include "biwkv_common.h"

namespace {

using biwkv::fexp;
using biwkv::kEmpty;
using biwkv::Mix;
using biwkv::mix;
using biwkv::push;

struct Args {
  const float *w, *u, *k, *v, *gy;
  float *y, *gk, *gv;
  double *gw, *gu;  // B x C
  double2* sa;      // future sums (n, d) per element
  double2* sd;      // their w-derivative sums (nd, dd), backward only
  float2* sr;       // reference (rb, ra) of the future sums
  int B, T, C;
};

// Two floats stored in the bits of one double (no type punning through memory).
__device__ __forceinline__ double pack(float hi, float lo) {
  return __hiloint2double(__float_as_int(hi), __float_as_int(lo));
}
__device__ __forceinline__ float unpack_hi(double x) { return __int_as_float(__double2hiint(x)); }
__device__ __forceinline__ float unpack_lo(double x) { return __int_as_float(__double2loint(x)); }

// Backward scan: future sums of every t (before term t is added) into scratch.
template <bool DERIV>
__device__ void future_scan(const Args& a, int64_t base, float w) {
  double n = 0.0, d = 0.0, nd = 0.0, dd = 0.0;
  float rb = kEmpty, ra = 0.0f;
  for (int t = a.T - 1; t >= 0; --t) {
    const int64_t i = base + static_cast<int64_t>(t) * a.C;
    a.sa[i] = make_double2(n, d);
    if (DERIV) a.sd[i] = make_double2(nd, dd);
    a.sr[i] = make_float2(rb, ra);
    const float tf = static_cast<float>(t);
    push<false, DERIV>(n, d, nd, dd, rb, ra, a.k[i], tf - 1.0f, static_cast<double>(a.v[i]), 1.0,
                       w);
  }
}

__global__ void forward_kernel(Args a) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= a.B * a.C) return;
  const int b = idx / a.C, c = idx % a.C;
  const int64_t base = static_cast<int64_t>(b) * a.T * a.C + c;
  const float w = a.w[c], u = a.u[c];
  future_scan<false>(a, base, w);
  double n = 0.0, d = 0.0, unused1 = 0.0, unused2 = 0.0;
  float rb = kEmpty, ra = 0.0f;
  for (int t = 0; t < a.T; ++t) {
    const int64_t i = base + static_cast<int64_t>(t) * a.C;
    const float tf = static_cast<float>(t);
    const float kt = a.k[i], vt = a.v[i];
    const double2 fs = a.sa[i];
    const float2 fr = a.sr[i];
    const Mix m = mix(rb, ra, fr.x, fr.y, tf, kt, u, w);
    const double num = m.fa * n + m.fb * fs.x + m.fc * static_cast<double>(vt);
    const double den = m.fa * d + m.fb * fs.y + m.fc;
    a.y[i] = static_cast<float>(num / den);
    push<true, false>(n, d, unused1, unused2, rb, ra, kt, tf + 1.0f, static_cast<double>(vt), 1.0,
                      w);
  }
}

// Gradients, as in the CPU kernel (see biwkv_cpu.cpp for the formulas).  The
// forward pass records (lb, ln, y, g) per t in the space of the consumed future
// sums, the last backward pass adds the future half of gv, gk.
__global__ void backward_kernel(Args a) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= a.B * a.C) return;
  const int b = idx / a.C, c = idx % a.C;
  const int64_t base = static_cast<int64_t>(b) * a.T * a.C + c;
  const float w = a.w[c], u = a.u[c];
  future_scan<true>(a, base, w);

  double n = 0.0, d = 0.0, nd = 0.0, dd = 0.0;  // past sums
  float rb = kEmpty, ra = 0.0f;
  double p1 = 0.0, p2 = 0.0, unused1 = 0.0, unused2 = 0.0;  // past gradient sums
  float gb = kEmpty, ga = 0.0f;
  double gwa = 0.0, gua = 0.0;
  for (int t = 0; t < a.T; ++t) {
    const int64_t i = base + static_cast<int64_t>(t) * a.C;
    const float tf = static_cast<float>(t);
    const float kt = a.k[i], vt = a.v[i];
    const double2 fs = a.sa[i], fd = a.sd[i];
    const float2 fr = a.sr[i];
    const Mix m = mix(rb, ra, fr.x, fr.y, tf, kt, u, w);
    const double num = m.fa * n + m.fb * fs.x + m.fc * static_cast<double>(vt);
    const double den = m.fa * d + m.fb * fs.y + m.fc;
    const double y = num / den;
    const double g = a.gy[i] / den;
    const double diag = m.fc * g;
    gua += diag * (vt - y);
    gwa -= g * ((m.fa * nd + m.fb * fd.x) - y * (m.fa * dd + m.fb * fd.y));
    const double e = fexp((kt + gb) - (tf - ga) * w);
    const double fv = e * p1, hv = e * p2;
    a.gv[i] = static_cast<float>(diag + fv);
    a.gk[i] = static_cast<float>(diag * (vt - y) + vt * fv - hv);
    // sd[i] has been read: record (lb, ln, y, g) in its place
    a.sd[i] = make_double2(pack(m.lb, m.ln), pack(static_cast<float>(y), static_cast<float>(g)));
    push<true, false>(p1, p2, unused1, unused2, gb, ga, -m.lb, tf + 1.0f + m.ln, g, g * y, w);
    push<true, true>(n, d, nd, dd, rb, ra, kt, tf + 1.0f, static_cast<double>(vt), 1.0, w);
  }

  double q1 = 0.0, q2 = 0.0;  // future gradient sums
  float hb = kEmpty, ha = 0.0f;
  for (int t = a.T - 1; t >= 0; --t) {
    const int64_t i = base + static_cast<int64_t>(t) * a.C;
    const float tf = static_cast<float>(t);
    const float kt = a.k[i], vt = a.v[i];
    const double2 r = a.sd[i];
    const float lb = unpack_hi(r.x), ln = unpack_lo(r.x);
    const double y = unpack_hi(r.y), g = unpack_lo(r.y);
    const double e = fexp((kt + hb) - (ha - tf) * w);
    const double gv = e * q1, hv = e * q2;
    a.gv[i] += static_cast<float>(gv);
    a.gk[i] += static_cast<float>(vt * gv - hv);
    push<false, false>(q1, q2, unused1, unused2, hb, ha, -lb, tf - 1.0f - ln, g, g * y, w);
  }
  a.gw[idx] = gwa;
  a.gu[idx] = gua;
}

constexpr int kThreads = 64;

}  // namespace

// Launchers called from biwkv_cuda.cpp; tensors are checked there.
void biwkv_cuda_forward(int B, int T, int C, const float* w, const float* u, const float* k,
                        const float* v, float* y, void* scratch, cudaStream_t stream) {
  Args a{};
  a.w = w;
  a.u = u;
  a.k = k;
  a.v = v;
  a.y = y;
  const int64_t n = static_cast<int64_t>(B) * T * C;
  a.sa = static_cast<double2*>(scratch);
  a.sr = reinterpret_cast<float2*>(a.sa + n);
  a.B = B;
  a.T = T;
  a.C = C;
  const int blocks = (B * C + kThreads - 1) / kThreads;
  forward_kernel<<<blocks, kThreads, 0, stream>>>(a);
}

void biwkv_cuda_backward(int B, int T, int C, const float* w, const float* u, const float* k,
                         const float* v, const float* gy, float* gk, float* gv, double* gw,
                         double* gu, void* scratch, cudaStream_t stream) {
  Args a{};
  a.w = w;
  a.u = u;
  a.k = k;
  a.v = v;
  a.gy = gy;
  a.gk = gk;
  a.gv = gv;
  a.gw = gw;
  a.gu = gu;
  const int64_t n = static_cast<int64_t>(B) * T * C;
  a.sa = static_cast<double2*>(scratch);
  a.sd = a.sa + n;
  a.sr = reinterpret_cast<float2*>(a.sd + n);
  a.B = B;
  a.T = T;
  a.C = C;
  const int blocks = (B * C + kThreads - 1) / kThreads;
  backward_kernel<<<blocks, kThreads, 0, stream>>>(a);
}
