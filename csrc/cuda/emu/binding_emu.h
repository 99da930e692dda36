// Shims that let csrc/cuda/binding.cpp compile against the CPU emulator of the kernels
// (-DMZSR_CUDA_EMU, tests only): no CUDA runtime, no NVTX; every launch runs synchronously
// on host memory (csrc/cuda/emu/cuda_emu.h), so the binding's whole-net ops (allocation,
// activation storage, launch order) run on CPU tensors.  binding_emu_module.h exposes them
// as a Python module (torch.utils.cpp_extension.load, tests/test_cuda_backend.py).
#pragma once
#include <torch/extension.h>

#define C10_CUDA_KERNEL_LAUNCH_CHECK() ((void)0)

inline void nvtxRangePushA(const char*) {}
inline void nvtxRangePop() {}

namespace c10 {
namespace cuda {
struct CUDAGuard {  // one (host) device: nothing to switch
  explicit CUDAGuard(c10::Device) {}
};
}  // namespace cuda
}  // namespace c10
