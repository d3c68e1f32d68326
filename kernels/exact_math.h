// Element-wise math of the portable entropy path, shared by its kernels: the
// operations of lalic_cli/portable/ops.py (pow2, exp) one for one.  Compiled with
// -ffp-contract=off and without -ffast-math, every operation is the IEEE-754 one
// written here, rounded once, so it gives the PyTorch reference's bits on any CPU.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace exact {

constexpr double kLn2Hi = 0.693147180369123816490;
constexpr double kLn2Lo = 1.90821492927058770002e-10;
constexpr double kInvLn2 = 1.44269504088896338700;

inline double pow2(int64_t e) {
  const int64_t bits = (e + 1023) << 52;
  double r;
  std::memcpy(&r, &bits, sizeof r);
  return r;
}

// 2^n for an integer-valued double n in [-1022, 1023], without a float-to-int
// conversion (AVX2 has none for 64-bit lanes): n + 2^52 + 1023 is exact and holds
// n + 1023 in its low mantissa bits, which the shift moves into the exponent field.
inline double pow2_of(double n) {
  const double biased = n + 4503599627371519.0;  // 2^52 + 1023
  return std::bit_cast<double>(std::bit_cast<uint64_t>(biased) << 52);
}

// 1/13!, 1/12!, ..., 1/0!: each factorial is exact in a double (13! < 2^53) and the
// division is correctly rounded, as Python's 1.0 / math.factorial(k) in the reference
constexpr double kTaylor[14] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 1.0 / 2.0, 1.0 / 1.0, 1.0 / 1.0};

// Round to nearest, ties to even, as nearbyint in the default rounding mode and
// torch.round, for |v| < 2^51: adding 1.5 * 2^52 leaves no fraction bits, so the
// addition itself rounds (ties to even: the constant is even), and the subtraction
// is exact.  copysign restores the sign of a zero result (round(-0.3) = -0.0).  Two
// IEEE additions and a bit operation: unlike a nearbyint call, it vectorises.
inline double round_even(double v) {
  constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  const double r = (v + kMagic) - kMagic;
  return std::copysign(r, v);
}

// e^x by the last kTerms terms of the series (ops.exp's ``terms``): 14 for arithmetic 1
// and the shared operators, 9 for arithmetic 2 (relative error below 3e-10)
template <int kTerms = 14>
inline double dexp(double x) {
  static_assert(kTerms >= 1 && kTerms <= 14, "dexp: 1 to 14 terms");
  x = x < -700.0 ? -700.0 : x;
  x = x > 700.0 ? 700.0 : x;
  const double n = round_even(x * kInvLn2);
  const double r = (x - n * kLn2Hi) - n * kLn2Lo;
  double p = kTaylor[14 - kTerms];
#pragma GCC unroll 14
  for (int i = 15 - kTerms; i < 14; ++i) p = p * r + kTaylor[i];
  return p * pow2_of(n);
}

// evaluates the lambda given with a constexpr kTerms in scope, for the supported counts
#define EXACT_DISPATCH_TERMS(terms, ...)                                            \
  [&] {                                                                             \
    TORCH_CHECK((terms) == 14 || (terms) == 9, "exp: 14 or 9 series terms");       \
    if ((terms) == 9) {                                                             \
      constexpr int kTerms = 9;                                                     \
      return __VA_ARGS__();                                                         \
    }                                                                               \
    constexpr int kTerms = 14;                                                      \
    return __VA_ARGS__();                                                           \
  }()

}  // namespace exact
