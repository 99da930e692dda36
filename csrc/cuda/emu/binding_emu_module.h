// The emulated binding's ops as a Python module (included at the end of binding.cpp with
// -DMZSR_CUDA_EMU): the same functions the CUDA build registers for torch.ops.mzsr_fast,
// on CPU tensors.  Lists come in as Python lists, precision strings as str.
#pragma once

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using at::Tensor;
  using TL = std::vector<Tensor>;
  using mzsr_cuda::parse_precision;
  m.def("cuda_conv3x3_fwd", [](const Tensor& x, const Tensor& w, const std::optional<Tensor>& b, bool relu,
                               const std::optional<Tensor>& residual, const std::string& prec) {
    return mzsr_cuda::conv3x3_fwd_p(x, w, b, relu, residual, parse_precision(prec));
  });
  m.def("cuda_conv3x3_dgrad", [](const Tensor& gy, const Tensor& w, const std::optional<Tensor>& mask_src,
                                 const std::string& prec) {
    return mzsr_cuda::conv3x3_dgrad_p(gy, w, mask_src, parse_precision(prec));
  });
  m.def("cuda_conv3x3_wgrad", [](const Tensor& x, const Tensor& gy, const std::string& prec) {
    return mzsr_cuda::conv3x3_wgrad_p(x, gy, parse_precision(prec));
  });
  m.def("cuda_net_forward", [](const TL& params, const Tensor& x, const std::string& prec) {
    return mzsr_cuda::net_forward_p(params, x, parse_precision(prec));
  });
  m.def("cuda_net_grads", [](const TL& params, const Tensor& x, const Tensor& target, const std::string& prec) {
    return mzsr_cuda::net_grads_p(params, x, target, parse_precision(prec));
  });
  m.def("cuda_adapt", [](const TL& params, const Tensor& x, const Tensor& target, const Tensor& lrs,
                         const std::string& prec) {
    return mzsr_cuda::adapt_p(params, x, target, lrs, parse_precision(prec), false);
  });
  m.def("cuda_adapt_step", [](const TL& params, const Tensor& x, const Tensor& target, const Tensor& lr,
                              const std::string& prec) {
    return mzsr_cuda::adapt_p(params, x, target, lr, parse_precision(prec), true);
  });
  m.def("l1_loss_grad", &mzsr_cuda::l1_loss_grad);
  m.def("sgd_update_", [](const TL& params, const TL& grads, const Tensor& lr) {
    mzsr_cuda::sgd_update_(params, grads, lr);
  });
}
