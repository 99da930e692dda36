// Tensor-core operand traits shared by the WMMA kernels: TF32 (operands stored as fp32
// rounded to tf32, m16n16k8) and bf16 (m16n16k16); accumulation is fp32 in both.
#pragma once
#include "cuda_compat.cuh"

namespace mzsr {
namespace wmma = nvcuda::wmma;

template <typename T>
struct TcTraits;

template <>
struct TcTraits<float> {  // TF32
  using Prec = wmma::precision::tf32;
  static constexpr int kK = 8;     // WMMA k
  static constexpr int kPad = 4;   // smem row padding in elements (16 bytes)
  __device__ __forceinline__ static float cvt(float v) { return wmma::__float_to_tf32(v); }
};

template <>
struct TcTraits<__nv_bfloat16> {  // bf16
  using Prec = __nv_bfloat16;
  static constexpr int kK = 16;
  static constexpr int kPad = 8;
  __device__ __forceinline__ static __nv_bfloat16 cvt(float v) { return __float2bfloat16_rn(v); }
};

// Store 4 floats converted to T at dst (dst 16-byte aligned for float, 8 for bf16).
template <typename T>
__device__ __forceinline__ void store4(T* dst, float4 v) {
  dst[0] = TcTraits<T>::cvt(v.x);
  dst[1] = TcTraits<T>::cvt(v.y);
  dst[2] = TcTraits<T>::cvt(v.z);
  dst[3] = TcTraits<T>::cvt(v.w);
}

__device__ __forceinline__ float4 zero4() { return make_float4(0.f, 0.f, 0.f, 0.f); }

__device__ __forceinline__ float4 ldg4(const float* src) { return *reinterpret_cast<const float4*>(src); }

inline bool aligned16(const void* ptr) {
  return ptr == nullptr || (reinterpret_cast<unsigned long long>(ptr) & 15ull) == 0;
}

}  // namespace mzsr
