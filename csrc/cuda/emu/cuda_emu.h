// CPU emulation of the small CUDA subset the mzsr_fast kernels use, to test their index
// logic without a GPU (tests/test_cuda_backend.py::test_kernels_on_cpu_emulator).
// Each CUDA thread of a block is a std::thread, __syncthreads a std::barrier, __shared__
// a function-local static (blocks run one at a time), a WMMA fragment a full per-thread
// copy of the 16x16 tile (every lane computes the whole tile; lane 0 stores it).  WMMA
// pointer alignment and leading-dimension rules are asserted.  Not a performance model.
// Build: g++ -std=c++20 -DMZSR_CUDA_EMU -x c++ ... (see tests).
#pragma once
#include <barrier>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

typedef void* cudaStream_t;

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }

inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

namespace emu {
inline thread_local std::barrier<>* g_barrier = nullptr;

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "cuda_emu: %s\n", what);
  std::abort();
}

template <typename K>
struct Launcher {
  K kernel;
  dim3 grid, block;
  template <typename... A>
  void operator()(A... args) const {
    // one std::thread per CUDA thread of a block, reused for every block in turn; a
    // barrier after each block keeps the blocks (and their __shared__ statics) apart.
    // Kernels must not return early from a thread while others still __syncthreads.
    const unsigned nt = block.x * block.y * block.z;
    std::barrier<> bar(nt);
    std::vector<std::thread> ts;
    ts.reserve(nt);
    for (unsigned t = 0; t < nt; ++t)
      ts.emplace_back([&, t] {
        threadIdx = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
        blockDim = block;
        gridDim = grid;
        g_barrier = &bar;
        for (unsigned bz = 0; bz < grid.z; ++bz)
          for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
              blockIdx = uint3{bx, by, bz};
              kernel(args...);
              bar.arrive_and_wait();
            }
      });
    for (auto& th : ts) th.join();
  }
};
template <typename K>
Launcher<K> launch(K k, dim3 g, dim3 b) {
  return Launcher<K>{k, g, b};
}
}  // namespace emu

#define MZSR_LAUNCH(kernel, grid, block, smem, stream) (static_cast<void>(smem), static_cast<void>(stream), ::emu::launch(kernel, grid, block))

inline void __syncthreads() { emu::g_barrier->arrive_and_wait(); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fsub_rn(float a, float b) { return a - b; }

struct __nv_bfloat16 {
  uint16_t bits;
  operator float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);  // round to nearest even
  return __nv_bfloat16{static_cast<uint16_t>(u >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 b) { return static_cast<float>(b); }
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.bits; }
struct alignas(8) uint2 {
  unsigned x, y;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline uint2 make_uint2(unsigned a, unsigned b) { return uint2{a, b}; }
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return uint4{a, b, c, d}; }

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

inline float __float_to_tf32(float f) {  // cvt.rna.tf32.f32: nearest, ties away
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u = (u + 0x1000u) & ~0x1FFFu;
  std::memcpy(&f, &u, 4);
  return f;
}

template <typename Use, int M, int N, int K>
struct FragShape;
template <int M, int N, int K>
struct FragShape<matrix_a, M, N, K> {
  static constexpr int R = M, C = K;
};
template <int M, int N, int K>
struct FragShape<matrix_b, M, N, K> {
  static constexpr int R = K, C = N;
};
template <int M, int N, int K>
struct FragShape<accumulator, M, N, K> {
  static constexpr int R = M, C = N;
};

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int R = FragShape<Use, M, N, K>::R, C = FragShape<Use, M, N, K>::C;
  float v[R][C];  // logical (row, col) of the operand
};

template <typename T>
struct StoreT {
  using type = T;
};
template <>
struct StoreT<precision::tf32> {
  using type = float;
};

inline void check_ptr(const void* p, unsigned ld, size_t elem) {
  if (reinterpret_cast<uintptr_t>(p) % 32) emu::fail("WMMA pointer not 256-bit aligned");
  if ((ld * elem) % 16) emu::fail("WMMA leading dimension not a multiple of 16 bytes");
}

template <typename Use, int M, int N, int K, typename T, typename Layout, typename P>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const P* p, unsigned ld) {
  static_assert(sizeof(P) == sizeof(typename StoreT<T>::type), "pointer type must match the fragment precision");
  check_ptr(p, ld, sizeof(P));
  using F = fragment<Use, M, N, K, T, Layout>;
  for (int r = 0; r < F::R; ++r)
    for (int c = 0; c < F::C; ++c)
      f.v[r][c] = std::is_same<Layout, row_major>::value ? static_cast<float>(p[r * ld + c])
                                                         : static_cast<float>(p[c * ld + r]);
}

template <int M, int N, int K, typename T>
void fill_fragment(fragment<accumulator, M, N, K, T>& f, float x) {
  for (auto& row : f.v)
    for (auto& e : row) e = x;
}

template <int M, int N, int K, typename TA, typename LA, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TA, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  fragment<accumulator, M, N, K, float> out;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double s = c.v[m][n];
      for (int k = 0; k < K; ++k) s += static_cast<double>(a.v[m][k]) * b.v[k][n];
      out.v[m][n] = static_cast<float>(s);
    }
  d = out;
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ld, layout_t layout) {
  check_ptr(p, ld, 4);
  if (threadIdx.x % 32 != 0) return;  // one lane writes the warp's tile
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      if (layout == mem_row_major)
        p[m * ld + n] = f.v[m][n];
      else
        p[n * ld + m] = f.v[m][n];
    }
}
}  // namespace wmma
}  // namespace nvcuda
