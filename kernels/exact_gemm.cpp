// Arithmetic 2 of the portable entropy path (lalic_cli/portable/int_ops.py): GEMMs of
// 15-bit integers (|X|, |W| <= 2^14, sum |W| of a row <= 2^31 / 2^14) with int32 sums,
// and the fixed-order OmniShift.  Every partial sum of an output is below 2^31 in any
// order, so the AVX-512 VNNI (vpdpwssd), AVX-512BW / AVX2 (vpmaddwd + vpaddd) and plain
// loops below give the same integers as the PyTorch reference's float64 GEMM; the
// epilogues then perform its IEEE operations in its order (built with
// -ffp-contract=off): acc * 2^-(s+e), + bias, relu^2.
//
// Layouts: A is int16 rows (the reduction dimension K padded to even, contiguous);
// B is "panels": ceil(N / 16) blocks of K/2 x 16 x 2 int16, the 16 outputs of a block
// side by side and the pairs of K that one multiply-add instruction takes.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "exact_math.h"
#include "exact_ops.h"

namespace exact {
namespace {

constexpr int kLanes = 16;  // outputs per panel
#if defined(__AVX512BW__)
constexpr int kRows = 4, kPanels = 4;  // 16 zmm accumulators
#elif defined(__AVX2__)
constexpr int kRows = 4, kPanels = 1;  // 8 ymm accumulators
#else
constexpr int kRows = 4, kPanels = 2;
#endif
constexpr int kTile = kPanels * kLanes;  // int32 per row of a tile

// tile[r][c] = sum_k a[r][k] * panel_c[k] for MR rows and NP panels (exact int32)
template <int MR, int NP>
inline void micro(const int16_t* a, int64_t lda, const int16_t* b, int64_t pstride, int64_t kp2, int32_t* tile) {
#if defined(__AVX512BW__)
  __m512i acc[MR][NP];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NP; ++j) acc[r][j] = _mm512_setzero_si512();
  for (int64_t p = 0; p < kp2; ++p) {
    __m512i bv[NP];
    for (int j = 0; j < NP; ++j) bv[j] = _mm512_loadu_si512(b + j * pstride + p * 2 * kLanes);
    for (int r = 0; r < MR; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + r * lda + 2 * p, sizeof pair);
      const __m512i av = _mm512_set1_epi32(pair);
      for (int j = 0; j < NP; ++j) {
#if defined(__AVX512VNNI__)
        acc[r][j] = _mm512_dpwssd_epi32(acc[r][j], av, bv[j]);
#else
        acc[r][j] = _mm512_add_epi32(acc[r][j], _mm512_madd_epi16(av, bv[j]));
#endif
      }
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NP; ++j) _mm512_storeu_si512(tile + r * kTile + j * kLanes, acc[r][j]);
#elif defined(__AVX2__)
  __m256i acc[MR][NP][2];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NP; ++j) acc[r][j][0] = acc[r][j][1] = _mm256_setzero_si256();
  for (int64_t p = 0; p < kp2; ++p) {
    __m256i bv[NP][2];
    for (int j = 0; j < NP; ++j)
      for (int h = 0; h < 2; ++h)
        bv[j][h] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j * pstride + p * 2 * kLanes + h * kLanes));
    for (int r = 0; r < MR; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + r * lda + 2 * p, sizeof pair);
      const __m256i av = _mm256_set1_epi32(pair);
      for (int j = 0; j < NP; ++j)
        for (int h = 0; h < 2; ++h) acc[r][j][h] = _mm256_add_epi32(acc[r][j][h], _mm256_madd_epi16(av, bv[j][h]));
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NP; ++j)
      for (int h = 0; h < 2; ++h)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(tile + r * kTile + j * kLanes + h * 8), acc[r][j][h]);
#else
  int32_t acc[MR][NP * kLanes] = {};
  for (int64_t p = 0; p < kp2; ++p)
    for (int r = 0; r < MR; ++r) {
      const int32_t a0 = a[r * lda + 2 * p], a1 = a[r * lda + 2 * p + 1];
      for (int j = 0; j < NP; ++j) {
        const int16_t* bp = b + j * pstride + p * 2 * kLanes;
        for (int l = 0; l < kLanes; ++l) acc[r][j * kLanes + l] += a0 * bp[2 * l] + a1 * bp[2 * l + 1];
      }
    }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NP * kLanes; ++c) tile[r * kTile + c] = acc[r][c];
#endif
}

template <int NP>
void micro_rows(int mr, const int16_t* a, int64_t lda, const int16_t* b, int64_t pstride, int64_t kp2, int32_t* tile) {
  static_assert(kRows == 4, "micro_rows dispatches 1..4 rows");
  switch (mr) {
    case 4: micro<4, NP>(a, lda, b, pstride, kp2, tile); break;
    case 3: micro<3, NP>(a, lda, b, pstride, kp2, tile); break;
    case 2: micro<2, NP>(a, lda, b, pstride, kp2, tile); break;
    default: micro<1, NP>(a, lda, b, pstride, kp2, tile); break;
  }
}

void micro_any(int mr, int np, const int16_t* a, int64_t lda, const int16_t* b, int64_t pstride, int64_t kp2,
               int32_t* tile) {
  switch (std::min(np, kPanels)) {
    case 4: return micro_rows<4>(mr, a, lda, b, pstride, kp2, tile);
    case 3: return micro_rows<3>(mr, a, lda, b, pstride, kp2, tile);
    case 2: return micro_rows<2>(mr, a, lda, b, pstride, kp2, tile);
    default: return micro_rows<1>(mr, a, lda, b, pstride, kp2, tile);
  }
}

// C = A B^T over `rows` rows of A and `cols` outputs of B (panels), handing each tile
// of at most kRows x kTile int32 to epi(row0, nrows, col0, ncols, tile).  Work is split
// over tiles only: each output's sum is computed whole by one thread.
template <class Epi>
void gemm(const int16_t* a, int64_t rows, int64_t lda, const int16_t* b, int64_t cols, int64_t kp2, Epi&& epi) {
  const int64_t panels = (cols + kLanes - 1) / kLanes, pstride = kp2 * 2 * kLanes;
  const int64_t groups = (panels + kPanels - 1) / kPanels, blocks = (rows + kRows - 1) / kRows;
  const bool par = rows * cols * kp2 > (1 << 20);
#pragma omp parallel for schedule(static) collapse(2) if (par)
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t rb = 0; rb < blocks; ++rb) {
      alignas(64) int32_t tile[kRows * kTile];
      const int64_t p0 = g * kPanels, r0 = rb * kRows;
      const int np = static_cast<int>(std::min<int64_t>(kPanels, panels - p0));
      const int mr = static_cast<int>(std::min<int64_t>(kRows, rows - r0));
      micro_any(mr, np, a + r0 * lda, lda, b + p0 * pstride, pstride, kp2, tile);
      epi(r0, mr, p0 * kLanes, std::min<int64_t>(np * kLanes, cols - p0 * kLanes), tile);
    }
  }
}

void check_panels(const torch::Tensor& panels, int64_t kp2, int64_t cols) {
  TORCH_CHECK(panels.scalar_type() == torch::kInt16 && panels.is_contiguous() && panels.dim() == 4 &&
                  panels.size(1) == kp2 && panels.size(2) == kLanes && panels.size(3) == 2 &&
                  panels.size(0) * kLanes >= cols,
              "int gemm: B must be int16 panels P x K/2 x 16 x 2");
}

// The row exponent of int_ops._exponents: 14 - exponent(max |x_r|) (frexp is exact),
// 0 for a zero row, at most 900; below -900 the row is out of range (the caller raises).
int64_t row_exponent(double m) {
  if (m == 0.0) return 0;
  int e;
  std::frexp(m, &e);
  return std::min<int64_t>(14 - e, 900);
}

// max |v| over n values, and whether all are finite (x - x is 0 exactly when x is)
inline double row_absmax(const double* v, int64_t n, bool& finite) {
  double mx = 0.0, z = 0.0;
#pragma omp simd reduction(max : mx) reduction(+ : z)
  for (int64_t k = 0; k < n; ++k) {
    const double a = std::fabs(v[k]);
    mx = a > mx ? a : mx;
    z += v[k] - v[k];
  }
  if (z != 0.0 || !std::isfinite(mx)) finite = false;
  return mx;
}

// one row onto the grid: q = round(v * 2^s), padded with a zero to width kp
inline int64_t quantize_row(const double* v, int64_t n, int16_t* q, int64_t kp, bool& ok) {
  const int64_t s = row_exponent(row_absmax(v, n, ok));
  if (s < -900) ok = false;
  const double f = pow2(std::max<int64_t>(s, -900));
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) q[k] = static_cast<int16_t>(round_even(v[k] * f));
  for (int64_t k = n; k < kp; ++k) q[k] = 0;
  return s;
}

enum Act : int64_t { kNone = 0, kReluSquare = 1, kSigmoid = 2 };

// out = residual + gamma * (gate * act(acc * 2^-(s+e) + bias)) over a run of columns, each
// optional term skipped when null: one loop per activation, so that the vectorised loop
// computes only its own (a select inside it would compute every branch)
template <int64_t kAct, int kTerms>
inline void epilogue(const int32_t* acc, int64_t s, const int64_t* e, const double* bias, const double* gate,
                     const double* gamma, const double* residual, double* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    double v = static_cast<double>(acc[i]) * pow2(-(s + e[i]));
    out[i] = bias ? v + bias[i] : v;
  }
  if (kAct == kReluSquare) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const double pos = out[i] > 0.0 ? out[i] : 0.0;
      out[i] = pos * pos;
    }
  } else if (kAct == kSigmoid) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = 1.0 / (1.0 + dexp<kTerms>(-out[i]));
  }
  if (gate) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = gate[i] * out[i];
  }
  if (gamma) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = gamma[i] * out[i];
  }
  if (residual) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = residual[i] + out[i];
  }
}

}  // namespace

// The layers of int_ops.linear / linear_many in one pass over blocks of rows: the input
// rows onto the grid (after x * gate when given; or given already as int16 rows and
// exponents), the exact GEMM, then per output part: * 2^-(s+e), + bias, the activation
// (relu^2 or sigmoid), and for a single part the epilogue residual + gamma * (out_gate * y);
// a part asked `quantised` leaves as int16 rows with their exponents (the next layer's
// input), otherwise as float64.  Each step is the reference's IEEE operation in its order.
std::vector<torch::Tensor> int_linear_op(torch::Tensor x, c10::optional<torch::Tensor> xs, c10::optional<torch::Tensor> gate,
                                         torch::Tensor panels, torch::Tensor e, torch::Tensor bias,
                                         std::vector<int64_t> parts, std::vector<int64_t> acts,
                                         std::vector<bool> quantised, c10::optional<torch::Tensor> residual,
                                         c10::optional<torch::Tensor> gamma, c10::optional<torch::Tensor> out_gate,
                                         int64_t terms) {
  TORCH_CHECK(terms == 14 || terms == 9, "int_linear: sigmoid with 14 or 9 series terms");
  const bool given = xs.has_value();
  // a 3-D x is B x K x L, channels first (a 1x1 convolution's input): row m is position
  // m % L of image m / L, gathered in blocks of rows
  const bool planes = x.dim() == 3;
  TORCH_CHECK((x.dim() == 2 || (planes && !given && !gate.has_value())) && x.is_contiguous() &&
                  x.scalar_type() == (given ? torch::kInt16 : torch::kFloat64),
              "int_linear: x M x K or B x K x L float64, or M x K (even) int16 with its exponents");
  TORCH_CHECK(parts.size() == acts.size() && parts.size() == quantised.size() && !parts.empty(),
              "int_linear: an activation and a quantised flag per part");
  const int64_t L = planes ? x.size(2) : 1, M = planes ? x.size(0) * L : x.size(0), K = x.size(1);
  const int64_t kp = K + (K & 1), kp2 = kp / 2;
  int64_t N = 0;
  for (int64_t n : parts) N += n;
  check_panels(panels, kp2, N);
  TORCH_CHECK(e.scalar_type() == torch::kInt64 && e.numel() == N, "int_linear: one exponent per output");
  TORCH_CHECK(bias.scalar_type() == torch::kFloat64 && (bias.numel() == 0 || bias.numel() == N), "int_linear: bias");
  const int64_t* xsp = nullptr;
  if (given) {
    TORCH_CHECK(K % 2 == 0 && xs->scalar_type() == torch::kInt64 && xs->numel() == M, "int_linear: int16 rows of even width, M exponents");
    xsp = xs->data_ptr<int64_t>();
  }
  const double* gp = nullptr;
  if (gate.has_value()) {
    TORCH_CHECK(!given && gate->sizes() == x.sizes() && gate->scalar_type() == torch::kFloat64 && gate->is_contiguous(),
                "int_linear: gate like x");
    gp = gate->data_ptr<double>();
  }
  const bool epi = residual.has_value() || gamma.has_value() || out_gate.has_value();
  TORCH_CHECK(!epi || (parts.size() == 1 && !quantised[0]), "int_linear: the epilogue takes one float64 part");
  const double* rp = nullptr;
  const double* gmp = nullptr;
  const double* ogp = nullptr;
  for (auto* t : {&residual, &out_gate}) {
    if (t->has_value())
      TORCH_CHECK((*t)->dim() == 2 && (*t)->size(0) == M && (*t)->size(1) == N && (*t)->is_contiguous() &&
                      (*t)->scalar_type() == torch::kFloat64, "int_linear: residual and out_gate M x N float64");
  }
  if (residual.has_value()) rp = residual->data_ptr<double>();
  if (out_gate.has_value()) ogp = out_gate->data_ptr<double>();
  if (gamma.has_value()) {
    TORCH_CHECK(gamma->numel() == N && gamma->scalar_type() == torch::kFloat64 && gamma->is_contiguous(), "int_linear: gamma N float64");
    gmp = gamma->data_ptr<double>();
  }

  // outputs, and where each column goes
  std::vector<torch::Tensor> outs;
  const size_t P = parts.size();
  std::vector<double*> dst(P, nullptr);
  std::vector<int16_t*> qdst(P, nullptr);
  std::vector<int64_t*> sdst(P, nullptr);
  std::vector<int64_t> lo(P), width(P), boff(P);
  int64_t buffered = 0;  // float64 columns a block of rows keeps before quantising
  for (size_t i = 0, l = 0; i < P; l += parts[i], ++i) {
    lo[i] = l;
    boff[i] = buffered;
    if (quantised[i]) {
      width[i] = parts[i] + (parts[i] & 1);
      outs.push_back(torch::empty({M, width[i]}, torch::kInt16));
      qdst[i] = outs.back().data_ptr<int16_t>();
      outs.push_back(torch::empty({M}, torch::kInt64));
      sdst[i] = outs.back().data_ptr<int64_t>();
      buffered += parts[i];
    } else {
      outs.push_back(torch::empty({M, parts[i]}, torch::TensorOptions().dtype(torch::kFloat64)));
      dst[i] = outs.back().data_ptr<double>();
    }
  }
  std::vector<int64_t> part_of(N);
  for (size_t i = 0; i < P; ++i)
    for (int64_t n = lo[i]; n < lo[i] + parts[i]; ++n) part_of[n] = static_cast<int64_t>(i);

  const double* xp = given ? nullptr : x.data_ptr<double>();
  const int16_t* xq_given = given ? x.data_ptr<int16_t>() : nullptr;
  const int64_t* ep = e.data_ptr<int64_t>();
  const double* bp = bias.numel() ? bias.data_ptr<double>() : nullptr;
  const int16_t* pp = panels.data_ptr<int16_t>();
  const int64_t panel_count = (N + kLanes - 1) / kLanes, pstride = kp2 * 2 * kLanes;
  constexpr int64_t kBlockRows = 16;  // rows whose GEMM, epilogue and quantisation run together
  const int64_t blocks = (M + kBlockRows - 1) / kBlockRows;
  bool ok = true;
#pragma omp parallel if (M * N * kp > (int64_t{1} << 22)) reduction(&& : ok)
  {
    std::vector<int16_t> qbuf(given ? 0 : kBlockRows * kp);
    std::vector<int64_t> sbuf(kBlockRows);
    std::vector<double> ybuf(kBlockRows * std::max<int64_t>(buffered, 1)), gated(gp ? K : 0);
    std::vector<double> gathered(planes ? kBlockRows * K : 0);
    alignas(64) int32_t tile[kRows * kTile];
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t r0 = blk * kBlockRows, nr = std::min(kBlockRows, M - r0);
      const int16_t* a;
      const int64_t* sr;
      if (given) {
        a = xq_given + r0 * kp;
        sr = xsp + r0;
      } else {
        if (planes) {
          int64_t base[kBlockRows];
          for (int64_t r = 0; r < nr; ++r) base[r] = (r0 + r) / L * K * L + (r0 + r) % L;
          for (int64_t k = 0; k < K; ++k)
            for (int64_t r = 0; r < nr; ++r) gathered[r * K + k] = xp[base[r] + k * L];
        }
        for (int64_t r = 0; r < nr; ++r) {
          const double* row = planes ? gathered.data() + r * K : xp + (r0 + r) * K;
          if (gp) {
            const double* g = gp + (r0 + r) * K;
#pragma omp simd
            for (int64_t k = 0; k < K; ++k) gated[k] = row[k] * g[k];
            row = gated.data();
          }
          sbuf[r] = quantize_row(row, K, qbuf.data() + r * kp, kp, ok);
        }
        a = qbuf.data();
        sr = sbuf.data();
      }
      for (int64_t p0 = 0; p0 < panel_count; p0 += kPanels) {
        const int np = static_cast<int>(std::min<int64_t>(kPanels, panel_count - p0));
        const int64_t c0 = p0 * kLanes, nc = std::min<int64_t>(np * kLanes, N - c0);
        for (int64_t rr = 0; rr < nr; rr += kRows) {
          const int mr = static_cast<int>(std::min<int64_t>(kRows, nr - rr));
          micro_any(mr, np, a + rr * kp, kp, pp + p0 * pstride, pstride, kp2, tile);
          for (int r = 0; r < mr; ++r) {
            const int64_t m = r0 + rr + r, sm = sr[rr + r];
            for (int64_t c = 0; c < nc;) {  // runs of columns within one part
              const int64_t n0 = c0 + c, pi = part_of[n0];
              const int64_t run = std::min<int64_t>(nc - c, lo[pi] + parts[pi] - n0);
              const int64_t col = n0 - lo[pi];
              const int32_t* t = tile + r * kTile + c;
              const int64_t* en = ep + n0;
              const int64_t act = acts[pi];
              double* out = quantised[pi] ? ybuf.data() + (rr + r) * buffered + boff[pi] + col
                                          : dst[pi] + m * parts[pi] + col;
              const double* og = ogp ? ogp + m * N + n0 : nullptr;
              const double* res = rp ? rp + m * N + n0 : nullptr;
              const double* gm = gmp ? gmp + n0 : nullptr;
              const double* bb = bp ? bp + n0 : nullptr;
              if (act == kReluSquare)
                epilogue<kReluSquare, 14>(t, sm, en, bb, og, gm, res, out, run);
              else if (act == kSigmoid && terms == 9)
                epilogue<kSigmoid, 9>(t, sm, en, bb, og, gm, res, out, run);
              else if (act == kSigmoid)
                epilogue<kSigmoid, 14>(t, sm, en, bb, og, gm, res, out, run);
              else
                epilogue<kNone, 14>(t, sm, en, bb, og, gm, res, out, run);
              c += run;
            }
          }
        }
      }
      for (size_t i = 0; i < P; ++i) {  // quantised parts: each row onto the grid
        if (!quantised[i]) continue;
        for (int64_t r = 0; r < nr; ++r)
          sdst[i][r0 + r] = quantize_row(ybuf.data() + r * buffered + boff[i], parts[i], qdst[i] + (r0 + r) * width[i],
                                         width[i], ok);
      }
    }
  }
  TORCH_CHECK_VALUE(ok, "portable ops: non-finite input, or beyond the integer grid's range");
  return outs;
}

// A convolution (no groups) as im2col into panels and the exact GEMM with the weight rows,
// then acc * 2^-(e + s) + bias.  `taps` lists the (channel, row, column) indices the rows
// keep (those of a checkerboard mask's nonzero taps: a zero product changes no sum), or
// is empty for all of them.
torch::Tensor int_conv2d_op(torch::Tensor x, int64_t s, torch::Tensor wrows, torch::Tensor e, torch::Tensor bias,
                            int64_t kh, int64_t kw, int64_t stride, int64_t padding, torch::Tensor taps) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat64 && x.is_contiguous(), "int_conv2d: x B x C x H x W float64");
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t full = C * kh * kw, K = taps.numel() ? taps.numel() : full, kp = K + (K & 1), kp2 = kp / 2;
  const int64_t cout = wrows.size(0);
  TORCH_CHECK(taps.scalar_type() == torch::kInt64 && taps.is_contiguous(), "int_conv2d: taps int64");
  const int64_t* tp = taps.numel() ? taps.data_ptr<int64_t>() : nullptr;
  for (int64_t i = 0; tp && i < K; ++i) TORCH_CHECK(tp[i] >= 0 && tp[i] < full, "int_conv2d: tap out of range");
  TORCH_CHECK(wrows.scalar_type() == torch::kInt16 && wrows.is_contiguous() && wrows.dim() == 2 && wrows.size(1) == kp,
              "int_conv2d: weight rows cout x K (even) int16");
  TORCH_CHECK(e.scalar_type() == torch::kInt64 && e.numel() == cout, "int_conv2d: one exponent per output channel");
  TORCH_CHECK(bias.scalar_type() == torch::kFloat64 && (bias.numel() == 0 || bias.numel() == cout), "int_conv2d: bias");
  TORCH_CHECK(s >= -900 && s <= 900, "int_conv2d: exponent out of range");
  const int64_t OH = (H + 2 * padding - kh) / stride + 1, OW = (W + 2 * padding - kw) / stride + 1, L = OH * OW;
  TORCH_CHECK(OH > 0 && OW > 0, "int_conv2d: kernel larger than the padded input");
  const int64_t panels = (L + kLanes - 1) / kLanes;
  auto out = torch::empty({B, cout, OH, OW}, x.options());
  // the input on the grid, zero-padded: every tap of every output reads in bounds
  const int64_t HP = H + 2 * padding, WP = W + 2 * padding;
  auto xq = torch::zeros({C, HP, WP}, torch::kInt16);
  auto cols = torch::empty({panels, kp2, kLanes, 2}, torch::kInt16);
  const double f = pow2(s);
  const int64_t* ep = e.data_ptr<int64_t>();
  const double* bp = bias.numel() ? bias.data_ptr<double>() : nullptr;
  for (int64_t b = 0; b < B; ++b) {
    const double* src = x.data_ptr<double>() + b * C * H * W;
    int16_t* q = xq.data_ptr<int16_t>();
#pragma omp parallel for schedule(static) if (C * H * W > 262144)
    for (int64_t cy = 0; cy < C * H; ++cy) {
      const double* in = src + cy * W;
      int16_t* row = q + ((cy / H) * HP + cy % H + padding) * WP + padding;
#pragma omp simd
      for (int64_t i = 0; i < W; ++i) row[i] = static_cast<int16_t>(round_even(in[i] * f));
    }
    // im2col into panels, K in (channel, tap row, tap column) order as F.unfold; a
    // panel's 16 outputs read 16 offsets of each tap's shifted plane
    int16_t* pc = cols.data_ptr<int16_t>();
#pragma omp parallel for schedule(static) if (panels * kp > 262144)
    for (int64_t p = 0; p < panels; ++p) {
      int64_t base[kLanes];
      bool run = true;  // the 16 outputs are neighbours in one row: contiguous reads
      for (int l = 0; l < kLanes; ++l) {
        const int64_t pos = std::min(p * kLanes + l, L - 1);
        base[l] = (pos / OW) * stride * WP + (pos % OW) * stride;
        run = run && (p * kLanes + l < L) && base[l] == base[0] + l * stride && stride == 1;
      }
      int16_t* dst = pc + p * kp2 * 2 * kLanes;
      for (int64_t kk = 0; kk < kp; ++kk) {
        int16_t* d = dst + (kk / 2) * 2 * kLanes + (kk & 1);
        if (kk >= K) {
          for (int l = 0; l < kLanes; ++l) d[2 * l] = 0;
          continue;
        }
        const int64_t k = tp ? tp[kk] : kk, c = k / (kh * kw), i = (k / kw) % kh, j = k % kw;
        const int16_t* plane = q + c * HP * WP + i * WP + j;
        if (run) {
          const int16_t* r = plane + base[0];
          for (int l = 0; l < kLanes; ++l) d[2 * l] = r[l];
        } else {
          for (int l = 0; l < kLanes; ++l) d[2 * l] = p * kLanes + l < L ? plane[base[l]] : 0;
        }
      }
    }
    double* ob = out.data_ptr<double>() + b * cout * L;
    gemm(wrows.data_ptr<int16_t>(), cout, kp, pc, L, kp2, [&](int64_t r0, int mr, int64_t c0, int64_t nc, const int32_t* tile) {
      for (int r = 0; r < mr; ++r) {
        const int64_t n = r0 + r;
        const double scale = pow2(-(ep[n] + s));
        const int32_t* t = tile + r * kTile;
        double* o = ob + n * L + c0;
        if (bp) {
          const double add = bp[n];
#pragma omp simd
          for (int64_t i = 0; i < nc; ++i) o[i] = static_cast<double>(t[i]) * scale + add;
        } else {
#pragma omp simd
          for (int64_t i = 0; i < nc; ++i) o[i] = static_cast<double>(t[i]) * scale;
        }
      }
    });
  }
  return out;
}

torch::Tensor int_gemm_op(torch::Tensor a, torch::Tensor panels, int64_t cols) {
  TORCH_CHECK(a.scalar_type() == torch::kInt16 && a.is_contiguous() && a.dim() == 2 && a.size(1) % 2 == 0,
              "int_gemm: A rows x K (even) int16");
  const int64_t rows = a.size(0), kp2 = a.size(1) / 2;
  check_panels(panels, kp2, cols);
  auto out = torch::empty({rows, cols}, torch::kInt32);
  int32_t* o = out.data_ptr<int32_t>();
  gemm(a.data_ptr<int16_t>(), rows, a.size(1), panels.data_ptr<int16_t>(), cols, kp2,
       [&](int64_t r0, int mr, int64_t c0, int64_t nc, const int32_t* tile) {
         for (int r = 0; r < mr; ++r) std::memcpy(o + (r0 + r) * cols + c0, tile + r * kTile, nc * sizeof(int32_t));
       });
  return out;
}

torch::Tensor shift_op(torch::Tensor x, torch::Tensor weight, int64_t h, int64_t w) {
  // out = 0.0, then + weight[c, i, j] * x[neighbour (i, j)] for the in-range taps in row
  // order: the reference's operations, one per tap, vectorised along the channels
  TORCH_CHECK(x.dim() == 3 && x.scalar_type() == torch::kFloat64 && x.is_contiguous() && x.size(1) == h * w,
              "shift: x B x (h w) x C float64");
  TORCH_CHECK(weight.dim() == 3 && weight.scalar_type() == torch::kFloat64 && weight.size(0) == x.size(2),
              "shift: weight C x kh x kw float64");
  const int64_t B = x.size(0), C = x.size(2), kh = weight.size(1), kw = weight.size(2), ph = kh / 2, pw = kw / 2;
  const auto taps = weight.permute({1, 2, 0}).contiguous();  // kh x kw x C
  const double* tp = taps.data_ptr<double>();
  const double* xp = x.data_ptr<double>();
  auto out = torch::empty_like(x);
  double* op = out.data_ptr<double>();
#pragma omp parallel for schedule(static) if (B * h * w * C > 262144)
  for (int64_t bt = 0; bt < B * h * w; ++bt) {
    const int64_t b = bt / (h * w), y = (bt / w) % h, xx = bt % w;
    double* o = op + bt * C;
    for (int64_t c = 0; c < C; ++c) o[c] = 0.0;
    for (int64_t i = 0; i < kh; ++i) {
      const int64_t iy = y + i - ph;
      if (iy < 0 || iy >= h) continue;
      for (int64_t j = 0; j < kw; ++j) {
        const int64_t ix = xx + j - pw;
        if (ix < 0 || ix >= w) continue;
        const double* in = xp + ((b * h + iy) * w + ix) * C;
        const double* wt = tp + (i * kw + j) * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) o[c] = o[c] + wt[c] * in[c];
      }
    }
  }
  return out;
}

}  // namespace exact
