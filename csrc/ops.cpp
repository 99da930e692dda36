// The one registration file of the mzsr_fast operator library: op schemas and the Python
// module init of mzsr_fast._C.  Implementations register per dispatch key elsewhere:
//   csrc/cpu/*.cpp   TORCH_LIBRARY_IMPL(mzsr_fast, CPU, m)
//   csrc/cuda/*.cpp  TORCH_LIBRARY_IMPL(mzsr_fast, CUDA, m)
// The pure-PyTorch reference of every op, same names and semantics, is
// mzsr_fast/reference.py.  Layouts: activations NHWC (N, H, W, C) contiguous float32;
// weights OIHW (Cout, Cin, 3, 3); lr a 0-d float32 tensor on the device.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing mzsr_fast._C runs the static TORCH_LIBRARY initialisers below; the module
// itself exposes nothing.
PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "mzsr_fast compiled ops (torch.ops.mzsr_fast)", -1,
                                   nullptr};
  return PyModule_Create(&def);
}
}

TORCH_LIBRARY(mzsr_fast, m) {
  // y = [relu](conv3x3(x, w) + b) [+ residual]
  m.def("conv3x3_fwd(Tensor x, Tensor w, Tensor? b, bool relu, Tensor? residual) -> Tensor");
  // gx = conv3x3^T(gy, w) [* (mask_src > 0)]
  m.def("conv3x3_dgrad(Tensor gy, Tensor w, Tensor? mask_src) -> Tensor");
  // (gw (Cout,Cin,3,3), gb (Cout,)) summed over N, H, W
  m.def("conv3x3_wgrad(Tensor x, Tensor gy) -> (Tensor, Tensor)");
  // (mean |pred - target|, sign(pred - target) / numel)
  m.def("l1_loss_grad(Tensor pred, Tensor target) -> (Tensor, Tensor)");
  // p -= lr * g for every pair, in place
  m.def("sgd_update_(Tensor(a!)[] params, Tensor[] grads, Tensor lr) -> ()");
  // one whole SGD step of the L1 loss of x + net(x) vs target (NHWC); params
  // [w0, b0, ..., w7, b7] updated in place; returns the loss before the update
  m.def("adapt_step(Tensor(a!)[] params, Tensor x, Tensor target, Tensor lr) -> Tensor");
}
