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

// Store 4 floats converted to T at dst (dst 16-byte aligned for float, 8 for bf16): one
// 16- or 8-byte shared-memory store instead of four scalar ones.
template <typename T>
__device__ __forceinline__ void store4(T* dst, float4 v);

template <>
__device__ __forceinline__ void store4<float>(float* dst, float4 v) {
  *reinterpret_cast<float4*>(dst) = make_float4(TcTraits<float>::cvt(v.x), TcTraits<float>::cvt(v.y),
                                                TcTraits<float>::cvt(v.z), TcTraits<float>::cvt(v.w));
}

template <>
__device__ __forceinline__ void store4<__nv_bfloat16>(__nv_bfloat16* dst, float4 v) {
  auto bits = [](float f) { return static_cast<unsigned>(__bfloat16_as_ushort(__float2bfloat16_rn(f))); };
  *reinterpret_cast<uint2*>(dst) = make_uint2(bits(v.x) | (bits(v.y) << 16), bits(v.z) | (bits(v.w) << 16));
}

__device__ __forceinline__ float4 zero4() { return make_float4(0.f, 0.f, 0.f, 0.f); }

__device__ __forceinline__ float4 ldg4(const float* src) { return *reinterpret_cast<const float4*>(src); }

__device__ __forceinline__ float bf16_bits_to_float(unsigned bits16) { return __uint_as_float(bits16 << 16); }

// 4 consecutive values as floats from fp32 (one 16-byte load, src 16-byte aligned) or bf16
// storage (one 8-byte load, src 8-byte aligned): the loads of kernels whose activations may
// be stored either way (Conv3x3Params::act16).
template <typename T>
__device__ __forceinline__ float4 ld4(const T* src);

template <>
__device__ __forceinline__ float4 ld4<float>(const float* src) {
  return ldg4(src);
}

template <>
__device__ __forceinline__ float4 ld4<__nv_bfloat16>(const __nv_bfloat16* src) {
  const uint2 u = *reinterpret_cast<const uint2*>(src);
  return make_float4(bf16_bits_to_float(u.x & 0xFFFFu), bf16_bits_to_float(u.x >> 16),
                     bf16_bits_to_float(u.y & 0xFFFFu), bf16_bits_to_float(u.y >> 16));
}

// 4 values stored as fp32 (exactly) or bf16 (round to nearest even), one vector store.
template <typename T>
__device__ __forceinline__ void st4(T* dst, float4 v) {
  if constexpr (sizeof(T) == 4)
    *reinterpret_cast<float4*>(dst) = v;
  else
    store4<T>(dst, v);
}

// The conv epilogue of conv3x3_params.h on 4 consecutive channels co..co+3 of output
// element offset o (16-byte aligned): + bias, ReLU, * (mask > 0), + residual, one vector
// store.  TW: storage of y / mask / residual (float, or bf16 for the act16 kernels).
template <typename TW = float>
__device__ __forceinline__ void conv_epilogue_store4(const Conv3x3Params& p, long long o, int co, float (&v)[4]) {
  if (p.bias) {
#pragma unroll
    for (int q = 0; q < 4; ++q) v[q] += p.bias[co + q];
  }
  if (p.relu) {
#pragma unroll
    for (int q = 0; q < 4; ++q) v[q] = fmaxf(v[q], 0.f);
  }
  if (p.mask) {
    const float4 mk = ld4(reinterpret_cast<const TW*>(p.mask) + o);
    v[0] = mk.x > 0.f ? v[0] : 0.f;
    v[1] = mk.y > 0.f ? v[1] : 0.f;
    v[2] = mk.z > 0.f ? v[2] : 0.f;
    v[3] = mk.w > 0.f ? v[3] : 0.f;
  }
  if (p.residual) {
    const float4 rs = ld4(reinterpret_cast<const TW*>(p.residual) + o);
    v[0] += rs.x;
    v[1] += rs.y;
    v[2] += rs.z;
    v[3] += rs.w;
  }
  st4(reinterpret_cast<TW*>(p.y) + o, make_float4(v[0], v[1], v[2], v[3]));
}

// Global -> shared copy of `total` items, item e = threadIdx.x + k * kThreads: ld(e)
// loads one (a float4, or a uint4 of 8 bf16), st(e, v) stores it.  B loads are issued
// before their B stores, so B memory requests are in flight per thread (a plain loop waits
// one latency per item).
template <int kThreads, int B, typename Ld, typename St>
__device__ __forceinline__ void staged_copy(int total, Ld ld, St st) {
  using V = decltype(ld(0));
  for (int e0 = static_cast<int>(threadIdx.x); e0 < total; e0 += B * kThreads) {
    V v[B] = {};
#pragma unroll
    for (int u = 0; u < B; ++u) {
      const int e = e0 + u * kThreads;
      if (e < total) v[u] = ld(e);
    }
#pragma unroll
    for (int u = 0; u < B; ++u) {
      const int e = e0 + u * kThreads;
      if (e < total) st(e, v[u]);
    }
  }
}

// Zero a 3-d array of WMMA accumulator fragments (the weight-gradient kernels' [3 taps][2][2]).
template <typename Frag, int A, int B, int C>
__device__ __forceinline__ void zero_fragments(Frag (&acc)[A][B][C]) {
#pragma unroll
  for (int a = 0; a < A; ++a)
#pragma unroll
    for (int b = 0; b < B; ++b)
#pragma unroll
      for (int c = 0; c < C; ++c) wmma::fill_fragment(acc[a][b][c], 0.f);
}

inline bool aligned16(const void* ptr) {
  return ptr == nullptr || (reinterpret_cast<unsigned long long>(ptr) & 15ull) == 0;
}

}  // namespace mzsr
