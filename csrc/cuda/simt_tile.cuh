// The register-blocked fp32 (FFMA) micro-kernel shared by the SIMT conv and wgrad
// kernels: acc[TM][TN] += As[k][tx*TM + i] * Bs[k][ty*TN + j] over k in [0, BK).
#pragma once
#include "cuda_compat.cuh"

namespace mzsr {

template <int N>
__device__ __forceinline__ void load_row(const float* src, float (&dst)[N]) {
  if constexpr (N == 4) {
    const float4 v = *reinterpret_cast<const float4*>(src);  // src 16-byte aligned
    dst[0] = v.x;
    dst[1] = v.y;
    dst[2] = v.z;
    dst[3] = v.w;
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) dst[i] = src[i];
  }
}

template <int BM, int BN, int TM, int TN, int BK, int LDA, int LDB>
__device__ __forceinline__ void simt_tile_fma(const float (*As)[LDA], const float (*Bs)[LDB], float (&acc)[TM][TN],
                                              int tx, int ty) {
#pragma unroll
  for (int k = 0; k < BK; ++k) {
    float a[TM], b[TN];
    load_row<TM>(&As[k][tx * TM], a);
    load_row<TN>(&Bs[k][ty * TN], b);
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
  }
}

}  // namespace mzsr
