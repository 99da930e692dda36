// Schemas of the CUDA backend's own ops (precision variants and whole-net / k-step ops),
// in addition to the core schemas of csrc/ops.cpp.  Implemented for CUDA tensors in
// csrc/cuda/binding.cpp.  precision: "fp32" (exact SIMT FFMA kernels), "tf32" or "bf16"
// (tensor-core kernels with fp32 accumulation where the shape allows, i.e. the 64-channel
// layers; the 3-channel first/last layers always run the fp32 kernels).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(mzsr_fast, m) {
  // conv3x3_fwd / conv3x3_dgrad / conv3x3_wgrad of csrc/ops.cpp at a given precision;
  // every precision string here may carry ":1" (tensor-core conv warp layout variant 1)
  m.def("cuda_conv3x3_fwd(Tensor x, Tensor w, Tensor? b, bool relu, Tensor? residual, str precision) -> Tensor");
  m.def("cuda_conv3x3_dgrad(Tensor gy, Tensor w, Tensor? mask_src, str precision) -> Tensor");
  m.def("cuda_conv3x3_wgrad(Tensor x, Tensor gy, str precision) -> (Tensor, Tensor)");
  // x + net(x), NHWC; params [w0, b0, ..., w7, b7] (or [w0, ..., w7] without biases)
  m.def("cuda_net_forward(Tensor[] params, Tensor x, str precision) -> Tensor");
  // (loss, gradients in the order of params) of mean|x + net(x) - target|, no update
  m.def("cuda_net_grads(Tensor[] params, Tensor x, Tensor target, str precision) -> (Tensor, Tensor[])");
  // adapt_step of csrc/ops.cpp at a given precision
  m.def("cuda_adapt_step(Tensor(a!)[] params, Tensor x, Tensor target, Tensor lr, str precision) -> Tensor");
  // k = lrs.numel() SGD steps in one call, lr of step i read from lrs[i] on the device;
  // returns the k losses (each before its step).  One op for a whole CUDA-graph capture.
  m.def("cuda_adapt(Tensor(a!)[] params, Tensor x, Tensor target, Tensor lrs, str precision) -> Tensor");
}
