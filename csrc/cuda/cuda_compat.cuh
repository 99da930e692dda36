// Device-side includes and the launch macro of the .cu files.  Building with
// -DMZSR_CUDA_EMU swaps CUDA for a CPU emulation (csrc/cuda/emu/cuda_emu.h) that runs
// the same kernel code with one std::thread per CUDA thread, to test index logic on
// machines without a GPU.
#pragma once

#ifdef MZSR_CUDA_EMU
#include "emu/cuda_emu.h"
#else
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <mma.h>
// kernel must be a single token (alias templates through a local function pointer).
#define MZSR_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#endif

#include "mzsr_cuda.h"

namespace mzsr {

__host__ __device__ inline int ceil_div(long long a, long long b) { return static_cast<int>((a + b - 1) / b); }

// Position of pixel index `pix` (flattened n, h, w) in its image.
struct PixelPos {
  int pix;  // flattened (n, h, w); meaningful only when valid
  int h, w;
  bool valid;
};

__device__ __forceinline__ PixelPos pixel_pos(int pix, int P, int H, int W) {
  PixelPos q;
  q.valid = pix < P;
  q.pix = pix;
  const int HW = H * W;
  const int rem = q.valid ? pix % HW : 0;
  q.h = rem / W;
  q.w = rem - q.h * W;
  return q;
}

// Flattened index of the neighbour (h + dh, w + dw) of q, or -1 if outside the image
// (zero padding) or q invalid.
__device__ __forceinline__ int neighbour(const PixelPos& q, int dh, int dw, int H, int W) {
  const int hh = q.h + dh, ww = q.w + dw;
  if (!q.valid || hh < 0 || hh >= H || ww < 0 || ww >= W) return -1;
  return q.pix + dh * W + dw;
}

}  // namespace mzsr
