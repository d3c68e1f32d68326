// Operators of the portable entropy path: element-wise and depthwise (exact_ops.cpp), and
// the integer GEMMs and fixed-order shift of arithmetic 2 (exact_gemm.cpp).
#pragma once

#include <torch/extension.h>

#include <vector>

namespace exact {

torch::Tensor exp_op(torch::Tensor x, int64_t terms);
torch::Tensor sigmoid_op(torch::Tensor x, int64_t terms);
double absmax_op(torch::Tensor x);
torch::Tensor scale_round_op(torch::Tensor x, int64_t s);
torch::Tensor scale_bias_op(torch::Tensor acc, int64_t s, c10::optional<torch::Tensor> bias, int64_t dim);
torch::Tensor layer_norm_op(torch::Tensor x, int64_t s, torch::Tensor weight, torch::Tensor bias, double eps);
torch::Tensor depthwise_conv2d_op(torch::Tensor xq, torch::Tensor wq, int64_t padding);
std::vector<torch::Tensor> int_linear_op(torch::Tensor x, c10::optional<torch::Tensor> xs, c10::optional<torch::Tensor> gate,
                                         torch::Tensor panels, torch::Tensor e, torch::Tensor bias,
                                         std::vector<int64_t> parts, std::vector<int64_t> acts,
                                         std::vector<bool> quantised, c10::optional<torch::Tensor> residual,
                                         c10::optional<torch::Tensor> gamma, c10::optional<torch::Tensor> out_gate,
                                         int64_t terms);
torch::Tensor int_conv2d_op(torch::Tensor x, int64_t s, torch::Tensor wrows, torch::Tensor e, torch::Tensor bias,
                            int64_t kh, int64_t kw, int64_t stride, int64_t padding, torch::Tensor taps);
torch::Tensor int_gemm_op(torch::Tensor a, torch::Tensor panels, int64_t cols);
torch::Tensor shift_op(torch::Tensor x, torch::Tensor weight, int64_t h, int64_t w);

}  // namespace exact
