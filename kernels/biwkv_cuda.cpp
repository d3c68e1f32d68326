// Python binding of the CUDA BiWKV kernels (biwkv_cuda.cu).
#include <torch/extension.h>

// c10 headers only (ATen/cuda/CUDAContext.h would also need the cuBLAS/cuSPARSE headers)
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <vector>

void biwkv_cuda_forward(int B, int T, int C, const float* w, const float* u, const float* k,
                        const float* v, float* y, void* scratch, cudaStream_t stream);
void biwkv_cuda_backward(int B, int T, int C, const float* w, const float* u, const float* k,
                         const float* v, const float* gy, float* gk, float* gv, double* gw,
                         double* gu, void* scratch, cudaStream_t stream);

namespace {

void check(const torch::Tensor& x, const torch::Tensor& like, const char* name) {
  TORCH_CHECK(x.is_cuda() && x.device() == like.device(), "biwkv_cuda: ", name,
              " must be on the same CUDA device as k");
  TORCH_CHECK(x.scalar_type() == torch::kFloat32, "biwkv_cuda: ", name, " must be float32");
  TORCH_CHECK(x.is_contiguous(), "biwkv_cuda: ", name, " must be contiguous");
}

void check_inputs(const torch::Tensor& w, const torch::Tensor& u, const torch::Tensor& k,
                  const torch::Tensor& v) {
  check(k, k, "k");
  check(v, k, "v");
  check(w, k, "w");
  check(u, k, "u");
  TORCH_CHECK(k.dim() == 3 && v.sizes() == k.sizes(), "biwkv_cuda: k, v must be B x T x C");
  TORCH_CHECK(w.dim() == 1 && u.dim() == 1 && w.size(0) == k.size(2) && u.size(0) == k.size(2),
              "biwkv_cuda: w, u must have shape (C,)");
  // positions and anchors (within +-3T) must be exact in float32
  TORCH_CHECK(k.size(1) < (1 << 22), "biwkv_cuda: T too large");
  TORCH_CHECK(k.size(0) * k.size(2) < (int64_t(1) << 31), "biwkv_cuda: B * C too large");
}

// Scratch of `bytes_per_element` bytes for every element of k.
torch::Tensor scratch(const torch::Tensor& k, int64_t bytes_per_element) {
  return torch::empty({k.numel() * bytes_per_element}, k.options().dtype(torch::kUInt8));
}

torch::Tensor forward(torch::Tensor w, torch::Tensor u, torch::Tensor k, torch::Tensor v) {
  check_inputs(w, u, k, v);
  const c10::cuda::CUDAGuard guard(k.device());
  auto y = torch::empty_like(k);
  if (k.numel() == 0) return y;
  auto s = scratch(k, 16 + 8);  // double2 + float2
  biwkv_cuda_forward(k.size(0), k.size(1), k.size(2), w.data_ptr<float>(), u.data_ptr<float>(),
                     k.data_ptr<float>(), v.data_ptr<float>(), y.data_ptr<float>(), s.data_ptr(),
                     c10::cuda::getCurrentCUDAStream().stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

std::vector<torch::Tensor> backward(torch::Tensor w, torch::Tensor u, torch::Tensor k,
                                    torch::Tensor v, torch::Tensor gy) {
  check_inputs(w, u, k, v);
  check(gy, k, "gy");
  TORCH_CHECK(gy.sizes() == k.sizes(), "biwkv_cuda: gy must be shaped like k");
  const c10::cuda::CUDAGuard guard(k.device());
  auto gk = torch::zeros_like(k), gv = torch::zeros_like(k);
  auto gw = torch::zeros({k.size(0), k.size(2)}, k.options().dtype(torch::kFloat64));
  auto gu = torch::zeros_like(gw);
  if (k.numel() > 0) {
    auto s = scratch(k, 16 + 16 + 8);  // 2 x double2 + float2
    biwkv_cuda_backward(k.size(0), k.size(1), k.size(2), w.data_ptr<float>(),
                        u.data_ptr<float>(), k.data_ptr<float>(), v.data_ptr<float>(),
                        gy.data_ptr<float>(), gk.data_ptr<float>(), gv.data_ptr<float>(),
                        gw.data_ptr<double>(), gu.data_ptr<double>(), s.data_ptr(),
                        c10::cuda::getCurrentCUDAStream().stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {gw.sum(0).to(torch::kFloat32), gu.sum(0).to(torch::kFloat32), gk, gv};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "BiWKV operator (CUDA)";
  m.def("forward", &forward, "BiWKV forward: (w, u, k, v) -> y");
  m.def("backward", &backward, "BiWKV backward: (w, u, k, v, gy) -> (gw, gu, gk, gv)");
}
