// Element-wise and depthwise operators of the portable entropy path (exact_ops.cpp).
#pragma once

#include <torch/extension.h>

namespace exact {

torch::Tensor exp_op(torch::Tensor x);
torch::Tensor sigmoid_op(torch::Tensor x);
double absmax_op(torch::Tensor x);
torch::Tensor scale_round_op(torch::Tensor x, int64_t s);
torch::Tensor scale_bias_op(torch::Tensor acc, int64_t s, c10::optional<torch::Tensor> bias, int64_t dim);
torch::Tensor layer_norm_op(torch::Tensor x, int64_t s, torch::Tensor weight, torch::Tensor bias, double eps);
torch::Tensor depthwise_conv2d_op(torch::Tensor xq, torch::Tensor wq, int64_t padding);

}  // namespace exact
