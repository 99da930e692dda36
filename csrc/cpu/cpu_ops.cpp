// Native CPU implementation of the mzsr_fast ops (schemas in csrc/ops.cpp, semantics in
// mzsr_fast/reference.py): float32, NHWC, OpenMP over output rows, vectorised with
// AVX-512 (16 lanes) or AVX2+FMA (8 lanes) chosen at run time, plain C++ elsewhere.
//
// Design (measured numbers: benchmarks/results/<machine>.csv, docs/benchmarks.md):
// * direct conv on zero-padded NHWC buffers (no im2col, no edge branches): a block of
//   6 pixels x 64 output channels lives in registers over the whole K = 9 taps x Cin,
//   packed weights [tap][ci][co] stream from L1/L2 (conv_kernels.inc; the whole K in
//   registers won: rows ops/conv3x3_fwd_64to64/k_block of benchmarks/results/cpu-amd-epyc-2c.csv);
// * the 64 -> 3 last layer: vectorised over input channels (narrow_row), not over 3 of
//   16 output lanes (rows ops/conv3x3_64to3_row_sweep, same table);
// * precision "bf16" (AVX512_BF16): conv_bf16.inc, vdpbf16ps on channel pairs (forward,
//   dgrad) and pixel pairs (wgrad), 2x the fp32 rate; kept because the whole call is
//   faster: rows e2e/adapt_and_upscale_steps10, cpu_bf16 vs cpu_fp32, cpu-amd-epyc-2c.csv;
// * dgrad = the same kernel with flipped/transposed weights, ReLU mask fused in the
//   epilogue and written in place over the layer's input activation (it is not needed
//   after its own weight gradient), so a step keeps only the 8 activations;
// * wgrad: 6 rows of the packed gradient x 64 channels in registers, summed over pixels,
//   per-thread partials reduced at the end; bias grad in the same pass; the SGD update is
//   fused into the reduction;
// * Winograd F(2x2,3x3) (conv_winograd.inc) for the 64 -> 64 layers: forward, input
//   gradient and weight gradient with 16 instead of 36 multiplies per 2x2 outputs; 16 GEMMs
//   per chunk of 30 tiles with the same 6 x 64 register block, faster than the direct
//   kernels per conv (see wino_mode below); AVX-512 by default, switch
//   MZSR_FAST_CPU_WINOGRAD / op cpu_winograd;
// * the L1 loss and its gradient are fused into the last layer's forward epilogue;
// * adapt_step / net forward carve all buffers from one per-thread arena that only grows,
//   so after the first call at a given size nothing is allocated.
#include <ATen/Parallel.h>
#include <c10/util/irange.h>
#include <omp.h>
#include <torch/library.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MZSR_X86 1
#endif

// ----------------------------------------------------------------------------- ISA variants
namespace kref {
struct I {
  using V = float;
  static constexpr int VW = 1, NVMAX = 4, CB = 8;
  template <int NV>
  static constexpr int np() { return 4; }
  template <int NV>
  static constexpr int mk() { return 4; }
  static inline V load(const float* p) { return *p; }
  static inline void store(float* p, V v) { *p = v; }
  static inline V bcast(float s) { return s; }
  static inline V fma(V a, V b, V c) { return a * b + c; }
  static inline V zero() { return 0.f; }
  static inline V add(V a, V b) { return a + b; }
  static inline V sub(V a, V b) { return a - b; }
  static inline V relu(V a) { return a > 0.f ? a : 0.f; }
  static inline V mask_gt0(V m, V a) { return m > 0.f ? a : 0.f; }
  static inline float hsum(V a) { return a; }
  static constexpr int NARROW_NP = 4;
};
#include "conv_kernels.inc"
#include "conv_winograd.inc"
}  // namespace kref

#ifdef MZSR_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace k256 {
struct I {
  using V = __m256;
  // 16 ymm registers: 6 pixels x 2 vectors = 12 accumulators + 2 weights + 1 broadcast.
  static constexpr int VW = 8, NVMAX = 2, CB = 64;
  template <int NV>
  static constexpr int np() { return NV == 1 ? 12 : 6; }
  template <int NV>
  static constexpr int mk() { return NV == 1 ? 12 : 6; }
  static inline V load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static inline V bcast(float s) { return _mm256_set1_ps(s); }
  static inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static inline V zero() { return _mm256_setzero_ps(); }
  static inline V add(V a, V b) { return _mm256_add_ps(a, b); }
  static inline V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static inline V relu(V a) { return _mm256_max_ps(a, _mm256_setzero_ps()); }
  static inline V mask_gt0(V m, V a) { return _mm256_and_ps(a, _mm256_cmp_ps(m, _mm256_setzero_ps(), _CMP_GT_OQ)); }
  static inline float hsum(V a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // 3 pixels x 3 outputs = 9 accumulators + 3 weights + 1 input of 16 ymm
  static constexpr int NARROW_NP = 3;
};
#include "conv_kernels.inc"
#include "conv_winograd.inc"
}  // namespace k256
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,fma")
namespace k512 {
struct I {
  using V = __m512;
  // 32 zmm registers: 6 pixels x 4 vectors (64 channels) = 24 accumulators + 4 weights.
  static constexpr int VW = 16, NVMAX = 4, CB = 64;
  template <int NV>
  static constexpr int np() { return NV == 4 ? 6 : NV == 3 ? 7 : 12; }
  template <int NV>
  static constexpr int mk() { return NV == 4 ? 6 : NV == 3 ? 7 : 12; }
  static inline V load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static inline V bcast(float s) { return _mm512_set1_ps(s); }
  static inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static inline V zero() { return _mm512_setzero_ps(); }
  static inline V add(V a, V b) { return _mm512_add_ps(a, b); }
  static inline V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static inline V relu(V a) { return _mm512_max_ps(a, _mm512_setzero_ps()); }
  static inline V mask_gt0(V m, V a) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_GT_OQ), a);
  }
  static inline float hsum(V a) { return _mm512_reduce_add_ps(a); }
  // 6 pixels x 3 outputs = 18 accumulators + 3 weights + 1 input
  static constexpr int NARROW_NP = 6;
};
#include "conv_kernels.inc"
#include "conv_winograd.inc"
}  // namespace k512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,fma")
namespace kbf {
#include "conv_bf16.inc"
}  // namespace kbf
#pragma GCC pop_options
#endif

namespace mzsr_cpu {

using ConvRowFn = void (*)(int, const float*, long, long, int, const float*, int, const float*, float*, float*, long,
                           const float*, long);
using WgradRowFn = void (*)(int, const float*, long, int, const long*, const float*, long, int, float*);
using NarrowRowFn = void (*)(int, const float*, long, long, int, const float*, int, const float*, float*, long);

using WinoChunkFn = void (*)(int, int, int, int, int, const float*, long, long, int, const float*, int, const float*,
                             float*, long, long, const float*, long, long, float*, float*);
using WinoWgradFn = void (*)(int, int, int, int, int, const float*, long, long, int, const float*, long, long, int,
                             float*, float*, float*, float*);

struct Kernels {
  const char* name;
  int VW;
  ConvRowFn conv[3];  // EPI 0 none, 1 relu, 2 mask
  WgradRowFn wgrad;
  NarrowRowFn narrow;
  WinoChunkFn wino[3];  // Winograd F(2x2,3x3) chunk, EPI as conv
  WinoWgradFn wino_wgrad;
};

#define MZ_WINO(ns) {ns::wino_chunk<0>, ns::wino_chunk<1>, ns::wino_chunk<2>}, ns::wino_wgrad_chunk
static const Kernels kRef = {"scalar", 1, {kref::conv_row<0>, kref::conv_row<1>, kref::conv_row<2>}, kref::wgrad_row,
                             kref::narrow_row, MZ_WINO(kref)};
#ifdef MZSR_X86
static const Kernels k256T = {"avx2", 8, {k256::conv_row<0>, k256::conv_row<1>, k256::conv_row<2>}, k256::wgrad_row,
                              k256::narrow_row, MZ_WINO(k256)};
static const Kernels k512T = {"avx512", 16, {k512::conv_row<0>, k512::conv_row<1>, k512::conv_row<2>},
                              k512::wgrad_row, k512::narrow_row, MZ_WINO(k512)};
#endif
#undef MZ_WINO

static const Kernels* pick_best() {
#ifdef MZSR_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma"))
    return &k512T;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &k256T;
#endif
  return &kRef;
}

static const Kernels* pick_named(const std::string& s) {
  const Kernels* best = pick_best();
  if (s == "scalar") return &kRef;
#ifdef MZSR_X86
  if (s == "avx2" && best != &kRef) return &k256T;
  if (s == "avx512" && best == &k512T) return &k512T;
#endif
  if (s == "best" || s.empty()) return best;
  TORCH_CHECK(false, "mzsr_fast cpu: unknown or unsupported ISA '", s, "' (best here: ", best->name, ")");
}

using ConvRowBfFn = void (*)(int, const uint16_t*, long, long, int, const uint16_t*, int, const float*, float*, long,
                             const float*, long, uint16_t*, long);
using EpiCvtFn = void (*)(const float*, float*, const float*, bool, uint16_t*, long);
using WgradRowBfFn = void (*)(int, const float*, long, long, int, const long*, const float*, long, int, float*,
                              uint16_t*);
struct KernelsBf {
  ConvRowBfFn conv[3];
  EpiCvtFn epi_cvt;
  WgradRowBfFn wgrad;
  long (*wgrad_scr)(int, int, int);
  void (*wgrad_koff)(int, int, long*);
};
#ifdef MZSR_X86
static const KernelsBf kBfT = {{kbf::conv_row_bf<0>, kbf::conv_row_bf<1>, kbf::conv_row_bf<2>}, kbf::epi_cvt_row,
                               kbf::wgrad_row_bf, kbf::wgrad_bf_scratch, kbf::wgrad_bf_koff};
#endif
// the bf16 kernels, or null where the CPU has no AVX512_BF16
static const KernelsBf* bf_kernels() {
#ifdef MZSR_X86
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("fma");
  }();
  if (ok && !std::getenv("MZSR_FAST_CPU_NO_BF16")) return &kBfT;
#endif
  return nullptr;
}

static std::atomic<const Kernels*> g_kern{nullptr};

static const Kernels& K() {
  const Kernels* k = g_kern.load();
  if (!k) {
    const char* env = std::getenv("MZSR_FAST_CPU_ISA");
    k = env ? pick_named(env) : pick_best();
    g_kern.store(k);
  }
  return *k;
}

static inline int round_up(int v, int m) { return (v + m - 1) / m * m; }

// ----------------------------------------------------------------------------- Winograd switch
// Winograd F(2x2, 3x3) (conv_winograd.inc) for the forward, the input gradient and the
// weight gradient of the wide layers (Cin, Cout >= 64, multiples of 16: the six 64 -> 64
// layers of this net) in fp32; precision "bf16" keeps its direct vdpbf16ps kernels.
// Mode: 0 off, 1 auto (on with the AVX-512 kernels, where it was measured faster), 2 on
// with every ISA (tests).  Env MZSR_FAST_CPU_WINOGRAD=0 / 1 / auto at first use, then the
// op cpu_winograd("off" | "auto" | "on").
// Winograd wins per conv: rows ops/conv3x3_{fwd,wgrad}_64to64, cpu_fp32:direct vs
// cpu_fp32:winograd, of benchmarks/results/cpu-amd-epyc-2c.csv (the whole call with it on
// and off: rows e2e/adapt_and_upscale_steps10, cpu_fp32 vs cpu_fp32:direct, same table).
// AVX2 is left on the direct kernels by default (not measured on an AVX2-only machine);
// "on" runs the same algorithm with the AVX2 / plain C++ kernels (tested, not tuned).
static std::atomic<int> g_wino{-1};
static int wino_mode() {
  int m = g_wino.load();
  if (m < 0) {
    const char* e = std::getenv("MZSR_FAST_CPU_WINOGRAD");
    m = 1;
    if (e && (std::strcmp(e, "0") == 0 || std::strcmp(e, "off") == 0)) m = 0;
    if (e && (std::strcmp(e, "1") == 0 || std::strcmp(e, "on") == 0)) m = 2;
    g_wino.store(m);
  }
  return m;
}
static bool use_wino(int Cin, int Cout) {
  const int m = wino_mode();
  if (m == 0 || Cin < 64 || Cout < 64 || Cin % 16 || Cout % 16) return false;
  return m == 2 || std::strcmp(K().name, "avx512") == 0;
}
static constexpr int WINO_MT = 30;  // tiles per chunk (a multiple of the 6-tile GEMM block)
static long wino_es(int nt, int C) { return kref::wino_es(nt, C); }
// per-thread V and M scratch of run_wino
static size_t wino_scratch_size(int K, int N) {
  return (size_t)omp_get_max_threads() * 16 * (wino_es(WINO_MT, K) + wino_es(WINO_MT, N)) + 64;
}
// Transformed weights U[e][k][n] = (G g_{n,k} G^T)[e] (e = 4i + j) of the conv k -> n:
// forward (K = Cin, N = Cout): g_{co,ci} = w[co][ci]; input gradient (K = Cout, N = Cin):
// g_{ci,co} = w[co][ci] rotated by 180 degrees.  w: OIHW (Cout, Cin, 3, 3).
static void wino_weights(const float* w, int Cout, int Cin, bool dgrad, float* U) {
  static const float G[4][3] = {{1.f, 0.f, 0.f}, {.5f, .5f, .5f}, {.5f, -.5f, .5f}, {0.f, 0.f, 1.f}};
  const int Kd = dgrad ? Cout : Cin, Nd = dgrad ? Cin : Cout;
  for (int co = 0; co < Cout; ++co)
    for (int ci = 0; ci < Cin; ++ci) {
      const float* w9 = w + ((long)co * Cin + ci) * 9;
      float g[9];
      for (int t = 0; t < 9; ++t) g[t] = dgrad ? w9[8 - t] : w9[t];
      float tq[4][3];  // G g
      for (int i = 0; i < 4; ++i)
        for (int c = 0; c < 3; ++c) tq[i][c] = G[i][0] * g[c] + G[i][1] * g[3 + c] + G[i][2] * g[6 + c];
      const int k = dgrad ? co : ci, n = dgrad ? ci : co;
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j)
          U[((long)(4 * i + j) * Kd + k) * Nd + n] = G[j][0] * tq[i][0] + G[j][1] * tq[i][1] + G[j][2] * tq[i][2];
    }
}

// ----------------------------------------------------------------------------- arena
// One growing 64-byte aligned block per thread; every call carves its buffers from it.
struct Arena {
  float* p = nullptr;
  size_t cap = 0;  // floats
  size_t used = 0;
  ~Arena() { std::free(p); }
  void reset(size_t need) {
    need += 1024;  // slack for the 16-float rounding of every take()
    if (need > cap) {
      std::free(p);
      p = nullptr;
      cap = 0;
      void* q = nullptr;
      TORCH_CHECK(posix_memalign(&q, 64, need * sizeof(float)) == 0, "mzsr_fast cpu: out of memory (",
                  need * sizeof(float), " bytes)");
      p = static_cast<float*>(q);
      cap = need;
    }
    used = 0;
  }
  float* take(size_t n) {
    n = (n + 15) / 16 * 16;
    TORCH_INTERNAL_ASSERT(used + n <= cap);
    float* r = p + used;
    used += n;
    return r;
  }
};
static thread_local Arena t_arena;
static std::atomic<long> g_arena_allocs{0};

// ----------------------------------------------------------------------------- geometry
// A zero-padded NHWC buffer: N x (H+2) x (W+2) x ps floats, interior at (y+1, x+1).
struct Pad {
  float* p;
  int N, H, W, ps;
  long rs() const { return (long)(W + 2) * ps; }
  long is() const { return (long)(H + 2) * rs(); }
  size_t size() const { return (size_t)N * is(); }
  float* row(int n, int y) const { return p + n * is() + (long)y * rs(); }  // padded row y
  float* at(int n, int y, int x) const { return p + n * is() + (long)(y + 1) * rs() + (long)(x + 1) * ps; }
  void zero_border() const {
    const long rsz = rs();
    at::parallel_for(0, N, 1, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        float* base = p + n * is();
        std::memset(base, 0, rsz * sizeof(float));
        std::memset(base + (long)(H + 1) * rsz, 0, rsz * sizeof(float));
        for (int y = 1; y <= H; ++y) {
          std::memset(base + y * rsz, 0, ps * sizeof(float));
          std::memset(base + y * rsz + (long)(W + 1) * ps, 0, ps * sizeof(float));
        }
      }
    });
  }
  void zero_all() const { std::memset(p, 0, size() * sizeof(float)); }
};
static size_t pad_size(int N, int H, int W, int ps) { return (size_t)N * (H + 2) * (W + 2) * ps; }

// packed forward weights: [tap][Cin][CoutP] from OIHW (Cout, Cin, 3, 3)
static void pack_fwd(const float* w, int Cout, int Cin, int CoutP, float* out) {
  std::memset(out, 0, sizeof(float) * 9 * Cin * CoutP);
  for (int co = 0; co < Cout; ++co)
    for (int ci = 0; ci < Cin; ++ci)
      for (int t = 0; t < 9; ++t) out[((long)t * Cin + ci) * CoutP + co] = w[((long)co * Cin + ci) * 9 + t];
}
// packed dgrad weights: a conv from Cout to Cin channels with taps flipped:
// [t'][co][CinP] = w[co][ci][8 - t']
static void pack_dgrad(const float* w, int Cout, int Cin, int CinP, float* out) {
  std::memset(out, 0, sizeof(float) * 9 * Cout * CinP);
  for (int co = 0; co < Cout; ++co)
    for (int ci = 0; ci < Cin; ++ci)
      for (int t = 0; t < 9; ++t) out[((long)(8 - t) * Cout + co) * CinP + ci] = w[((long)co * Cin + ci) * 9 + t];
}
static inline uint16_t f2bf(float f) {  // round to nearest even, NaN kept NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
// bf16 forward weights [tap][Cin/2][CoutP][2] (Cin even)
static void pack_fwd_bf(const float* w, int Cout, int Cin, int CoutP, uint16_t* out) {
  std::memset(out, 0, sizeof(uint16_t) * 9 * Cin * CoutP);
  const int C2 = Cin / 2;
  for (int co = 0; co < Cout; ++co)
    for (int ci = 0; ci < Cin; ++ci)
      for (int t = 0; t < 9; ++t)
        out[(((long)t * C2 + ci / 2) * CoutP + co) * 2 + (ci & 1)] = f2bf(w[((long)co * Cin + ci) * 9 + t]);
}
// bf16 dgrad weights: conv Cout -> Cin, taps flipped, [t'][Cout/2][CinP][2] (Cout even)
static void pack_dgrad_bf(const float* w, int Cout, int Cin, int CinP, uint16_t* out) {
  std::memset(out, 0, sizeof(uint16_t) * 9 * Cout * CinP);
  const int C2 = Cout / 2;
  for (int co = 0; co < Cout; ++co)
    for (int ci = 0; ci < Cin; ++ci)
      for (int t = 0; t < 9; ++t)
        out[(((long)(8 - t) * C2 + co / 2) * CinP + ci) * 2 + (co & 1)] = f2bf(w[((long)co * Cin + ci) * 9 + t]);
}
// a bf16 view of a padded buffer allocated as floats (ps floats = 2 ps bf16)
struct PadB {
  uint16_t* p;
  int N, H, W, ps;  // ps in bf16 elements
  explicit PadB(const Pad& f) : p(reinterpret_cast<uint16_t*>(f.p)), N(f.N), H(f.H), W(f.W), ps(2 * f.ps) {}
  long rs() const { return (long)(W + 2) * ps; }
  long is() const { return (long)(H + 2) * rs(); }
  uint16_t* row(int n, int y) const { return p + n * is() + (long)y * rs(); }
  uint16_t* at(int n, int y, int x) const { return p + n * is() + (long)(y + 1) * rs() + (long)(x + 1) * ps; }
};

static void make_koff(int Cin, long ips, long irs, long* koff) {
  for (int t = 0; t < 9; ++t)
    for (int ci = 0; ci < Cin; ++ci) koff[t * Cin + ci] = (t / 3) * irs + (t % 3) * ips + ci;
}

// ----------------------------------------------------------------------------- layer drivers
struct ConvJob {
  const Pad* in;   // padded input, Cin channels at pixel stride in->ps
  int Cin;
  const float* w;  // packed [9][Cin][CoutP]
  int Cout, CoutP;
  const float* bias;  // CoutP or null
  int epi;            // 0 none, 1 relu, 2 mask
  // direct output (aligned Cout and no custom epilogue): out(n, y) row pointers
  float* out;
  long out_is, out_rs, out_ps;
  const float* mask;
  long mask_is, mask_rs, mask_ps;
};

// Runs a conv over all N*H rows. `fin(n, y, row)`, when given, receives the finished
// row (CoutP channels per pixel, epilogue EPI applied) instead of a direct store.
template <class Fin>
static void run_conv(const ConvJob& j, float* scratch, bool use_fin, Fin fin) {
  const Kernels& k = K();
  const Pad& in = *j.in;
  const int N = in.N, H = in.H, W = in.W;
  const long ssz = (long)W * j.CoutP;
  ConvRowFn fn = k.conv[j.epi];
#pragma omp parallel
  {
    const int tid = omp_get_thread_num();
    float* scr = scratch + (long)tid * 2 * ssz;
    float* fsc = scr + ssz;
#pragma omp for schedule(dynamic, 1)
    for (long r = 0; r < (long)N * H; ++r) {
      const int n = r / H, y = r % H;
      const float* inr = in.row(n, y);
      if (use_fin) {
        fn(W, inr, in.ps, in.rs(), j.Cin, j.w, j.CoutP, j.bias, scr, fsc, j.CoutP, nullptr, 0);
        fin(n, y, fsc, tid);
      } else {
        float* o = j.out + n * j.out_is + y * j.out_rs;
        const float* m = j.mask ? j.mask + n * j.mask_is + y * j.mask_rs : nullptr;
        fn(W, inr, in.ps, in.rs(), j.Cin, j.w, j.CoutP, j.bias, scr, o, j.out_ps, m, j.mask_ps);
      }
    }
  }
}
// Winograd F(2x2,3x3) conv of a whole padded input (K channels) into out (N channels,
// epilogue epi, as ConvJob's direct output), U from wino_weights; OpenMP over chunks of
// WINO_MT tiles of one tile row.  scratch: wino_scratch_size(K, N) floats.
static void run_wino(const Pad& in, int K_, const float* U, int N_, const float* bias, int epi, float* out, long out_is,
                     long out_rs, long out_ps, const float* mask, long mask_is, long mask_rs, long mask_ps,
                     float* scratch) {
  const Kernels& k = K();
  const int N = in.N, H = in.H, W = in.W;
  const int TH = (H + 1) / 2, TW = (W + 1) / 2, nch = (TW + WINO_MT - 1) / WINO_MT;
  const long vsz = 16 * wino_es(WINO_MT, K_), msz = 16 * wino_es(WINO_MT, N_);
  WinoChunkFn fn = k.wino[epi];
#pragma omp parallel
  {
    const int tid = omp_get_thread_num();
    float* vs = scratch + (long)tid * (vsz + msz);
    float* ms = vs + vsz;
#pragma omp for schedule(dynamic, 1)
    for (long u = 0; u < (long)N * TH * nch; ++u) {
      const int n = u / ((long)TH * nch), r = u % ((long)TH * nch), ty = r / nch, tx0 = (r % nch) * WINO_MT;
      const int nt = std::min(WINO_MT, TW - tx0);
      fn(nt, tx0, ty, H, W, in.row(n, 0), in.ps, in.rs(), K_, U, N_, bias, out + n * out_is, out_rs, out_ps,
         mask ? mask + n * mask_is : nullptr, mask_rs, mask_ps, vs, ms);
    }
  }
}

// Deterministic parallel sum of per-item contributions: each thread zeroes its own partial
// (partials + tid * psz, psz floats) and accumulates a *static* share of items 0..n-1 into it
// (which items feed which partial must not depend on timing, else the float sums differ run
// to run: measured up to 1.4e-6 with 2 threads), then out[i] = the partials summed in thread
// order (out may be `partials` itself).  fn(item, tid, partial).
template <class Fn>
static void sum_partials(long n, long psz, float* partials, float* out, Fn fn) {
  int nth = 1;
#pragma omp parallel
  {
    const int tid = omp_get_thread_num();
#pragma omp single
    nth = omp_get_num_threads();
    float* p = partials + tid * psz;
    std::memset(p, 0, psz * sizeof(float));
#pragma omp for schedule(static)
    for (long i = 0; i < n; ++i) fn(i, tid, p);
  }
  for (long i = 0; i < psz; ++i) {
    float s = partials[i];
    for (int t = 1; t < nth; ++t) s += partials[t * psz + i];
    out[i] = s;
  }
}

// Winograd weight + bias gradient of one layer (K -> N channels): per-thread dU partials
// [16][K][N] + bias [N] (partials: wino_wgrad_partials_size floats), reduced, then
// gw = G^T dU G written in run_wgrad's layout gw_out [9*K + 1][N] (row 9*K = bias).
static size_t wino_wgrad_partials_size(int K, int N) {
  return (size_t)omp_get_max_threads() * (16 * K * N + N) + 12 * (size_t)N + 64;  // + the transform's 12 rows
}
static void run_wino_wgrad(const Pad& in, int K_, const float* gy, long gy_is, long gy_rs, long gy_ps, int N_,
                           float* partials, float* gw_out, float* scratch) {
  const Kernels& k = K();
  const int N = in.N, H = in.H, W = in.W;
  const int TH = (H + 1) / 2, TW = (W + 1) / 2, nch = (TW + WINO_MT - 1) / WINO_MT;
  const long vsz = 16 * wino_es(WINO_MT, K_), msz = 16 * wino_es(WINO_MT, N_);
  const long psz = 16L * K_ * N_ + N_;
  sum_partials((long)N * TH * nch, psz, partials, partials, [&](long u, int tid, float* du) {
    float* vs = scratch + (long)tid * (vsz + msz);
    float* ms = vs + vsz;
    const int n = u / ((long)TH * nch), r = u % ((long)TH * nch), ty = r / nch, tx0 = (r % nch) * WINO_MT;
    const int nt = std::min(WINO_MT, TW - tx0);
    k.wino_wgrad(nt, tx0, ty, H, W, in.row(n, 0), in.ps, in.rs(), K_, gy + n * gy_is, gy_rs, gy_ps, N_, du,
                 du + 16L * K_ * N_, vs, ms);
  });
  // gw[a][b] = sum_ij G[i][a] G[j][b] dU[4i+j]: columns of G = (1 .5 .5 0), (0 .5 -.5 0), (0 .5 .5 1)
  float* tq = partials + (long)omp_get_max_threads() * psz;  // 12 rows of N_
  for (int kk = 0; kk < K_; ++kk) {
    for (int j = 0; j < 4; ++j) {
      const float* d0 = partials + ((long)(0 + j) * K_ + kk) * N_;
      const float* d1 = partials + ((long)(4 + j) * K_ + kk) * N_;
      const float* d2 = partials + ((long)(8 + j) * K_ + kk) * N_;
      const float* d3 = partials + ((long)(12 + j) * K_ + kk) * N_;
      float* t0 = tq + (0 * 4 + j) * N_;
      float* t1 = tq + (1 * 4 + j) * N_;
      float* t2 = tq + (2 * 4 + j) * N_;
      for (int n = 0; n < N_; ++n) {
        const float h = .5f * (d1[n] + d2[n]);
        t0[n] = d0[n] + h;
        t1[n] = .5f * (d1[n] - d2[n]);
        t2[n] = h + d3[n];
      }
    }
    for (int a = 0; a < 3; ++a) {
      const float* e0 = tq + (a * 4 + 0) * N_;
      const float* e1 = tq + (a * 4 + 1) * N_;
      const float* e2 = tq + (a * 4 + 2) * N_;
      const float* e3 = tq + (a * 4 + 3) * N_;
      float* g0 = gw_out + ((long)(3 * a + 0) * K_ + kk) * N_;
      float* g1 = gw_out + ((long)(3 * a + 1) * K_ + kk) * N_;
      float* g2 = gw_out + ((long)(3 * a + 2) * K_ + kk) * N_;
      for (int n = 0; n < N_; ++n) {
        const float h = .5f * (e1[n] + e2[n]);
        g0[n] = e0[n] + h;
        g1[n] = .5f * (e1[n] - e2[n]);
        g2[n] = h + e3[n];
      }
    }
  }
  std::memcpy(gw_out + 9L * K_ * N_, partials + 16L * K_ * N_, N_ * sizeof(float));
}

struct ConvJobBf {
  const PadB* in;
  int Cin;
  const uint16_t* w;
  int CoutP;
  const float* bias;
  int epi;
  float* out;  // fp32 output (may be null), pixel stride out_ps
  long out_is, out_rs, out_ps;
  const float* mask;
  long mask_is, mask_rs, mask_ps;
  const PadB* outb;  // bf16 copy (may be null)
};
template <class Fin>
static void run_conv_bf(const ConvJobBf& j, float* scratch, bool use_fin, Fin fin) {
  const KernelsBf* kb = bf_kernels();
  TORCH_CHECK(kb, "mzsr_fast cpu: bf16 kernels need AVX512_BF16");
  const PadB& in = *j.in;
  const int N = in.N, H = in.H, W = in.W;
  const long ssz = (long)W * j.CoutP;
  ConvRowBfFn fn = kb->conv[j.epi];
#pragma omp parallel
  {
    const int tid = omp_get_thread_num();
    float* scr = scratch + (long)tid * 2 * ssz;
#pragma omp for schedule(dynamic, 1)
    for (long r = 0; r < (long)N * H; ++r) {
      const int n = r / H, y = r % H;
      const uint16_t* inr = in.row(n, y);
      if (use_fin) {
        fn(W, inr, in.ps, in.rs(), j.Cin, j.w, j.CoutP, j.bias, scr, j.CoutP, nullptr, 0, nullptr, 0);
        fin(n, y, scr, tid);
      } else {
        float* o = j.out ? j.out + n * j.out_is + y * j.out_rs : nullptr;
        const float* m = j.mask ? j.mask + n * j.mask_is + y * j.mask_rs : nullptr;
        uint16_t* ob = j.outb ? j.outb->at(n, y, 0) : nullptr;
        fn(W, inr, in.ps, in.rs(), j.Cin, j.w, j.CoutP, j.bias, o, j.out_ps, m, j.mask_ps, ob,
           j.outb ? j.outb->ps : 0);
      }
    }
  }
}

// Narrow conv (Cout <= 4, Cin % VW == 0) over all rows; each finished row (CoutP stride
// in scratch, lanes >= Cout unused) goes to fin(n, y, row, tid).
static bool narrow_ok(int Cin, int Cout) { return Cout <= 4 && Cin % K().VW == 0; }
static void pack_narrow(const float* w, int Cout, int Cin, float* out) {  // [co][tap][Cin]
  for (int co = 0; co < Cout; ++co)
    for (int ci = 0; ci < Cin; ++ci)
      for (int t = 0; t < 9; ++t) out[((long)co * 9 + t) * Cin + ci] = w[((long)co * Cin + ci) * 9 + t];
}
template <class Fin>
static void run_narrow(const Pad& in, int Cin, const float* wn, int Cout, int CoutP, const float* bias, float* scratch,
                       Fin fin) {
  const Kernels& k = K();
  const int N = in.N, H = in.H, W = in.W;
  const long ssz = (long)W * CoutP;
#pragma omp parallel
  {
    const int tid = omp_get_thread_num();
    float* scr = scratch + (long)tid * 2 * ssz;
#pragma omp for schedule(dynamic, 1)
    for (long r = 0; r < (long)N * H; ++r) {
      const int n = r / H, y = r % H;
      k.narrow(W, in.row(n, y), in.ps, in.rs(), Cin, wn, Cout, bias, scr, CoutP);
      fin(n, y, scr, tid);
    }
  }
}

static size_t conv_scratch_size(int W, int CoutP) { return (size_t)omp_get_max_threads() * 2 * W * CoutP + 64; }

// Weight + bias gradient of one layer: packed partials per thread, reduced into
// gw_out [9*Cin+1][CoutP] (row 9*Cin = bias).
static void run_wgrad(const Pad& in, int Cin, const float* gy, long gy_is, long gy_rs, long gy_ps, int CoutP,
                      const long* koff, float* partials, float* gw_out) {
  const Kernels& k = K();
  const int N = in.N, H = in.H, W = in.W;
  const long gsz = (long)(9 * Cin + 1) * CoutP;
  sum_partials((long)N * H, gsz, partials, gw_out, [&](long r, int, float* gw) {
    const int n = r / H, y = r % H;
    k.wgrad(W, in.row(n, y), in.ps, Cin, koff, gy + n * gy_is + y * gy_rs, gy_ps, CoutP, gw);
  });
}
// bf16 weight gradient (Cin % 16 == 0): as run_wgrad, pixel pairs per bf16 lane.
// bscr: per-thread bf16 scratch of kb->wgrad_scr(W, Cin, CoutP) elements each.
static void run_wgrad_bf(const Pad& in, int Cin, const float* gy, long gy_is, long gy_rs, long gy_ps, int CoutP,
                         const long* koff, float* partials, float* gw_out, uint16_t* bscr) {
  const KernelsBf* kb = bf_kernels();
  const int N = in.N, H = in.H, W = in.W;
  const long gsz = (long)(9 * Cin + 1) * CoutP;
  const long bsz = kb->wgrad_scr(W, Cin, CoutP);
  sum_partials((long)N * H, gsz, partials, gw_out, [&](long r, int tid, float* gw) {
    const int n = r / H, y = r % H;
    kb->wgrad(W, in.row(n, y), in.ps, in.rs(), Cin, koff, gy + n * gy_is + y * gy_rs, gy_ps, CoutP, gw,
              bscr + tid * bsz);
  });
}

static size_t wgrad_scratch_size(int Cin, int CoutP) { return (size_t)omp_get_max_threads() * (9 * Cin + 1) * CoutP + 64; }

// ----------------------------------------------------------------------------- checks
static void check_nhwc(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu(), "mzsr_fast cpu: ", what, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat, "mzsr_fast cpu: ", what, " must be float32, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 4, "mzsr_fast cpu: ", what, " must be (N, H, W, C), got ", t.sizes());
}
static void check_w(const at::Tensor& w) {
  TORCH_CHECK(w.device().is_cpu() && w.scalar_type() == at::kFloat, "mzsr_fast cpu: w must be CPU float32");
  TORCH_CHECK(w.dim() == 4 && w.size(2) == 3 && w.size(3) == 3, "mzsr_fast cpu: w must be (Cout, Cin, 3, 3), got ",
              w.sizes());
}

// copy an NHWC tensor into the interior of a padded buffer (ps >= C; lanes C..ps-1 zeroed)
static void fill_pad(const Pad& P, const float* src, int C) {
  const int N = P.N, H = P.H, W = P.W;
  at::parallel_for(0, (int64_t)N * H, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int n = r / H, y = r % H;
      float* d = P.at(n, y, 0);
      const float* s = src + ((long)n * H + y) * W * C;
      if (P.ps == C) {
        std::memcpy(d, s, sizeof(float) * W * C);
      } else {
        for (int x = 0; x < W; ++x) {
          for (int c = 0; c < C; ++c) d[(long)x * P.ps + c] = s[(long)x * C + c];
          for (int c = C; c < P.ps; ++c) d[(long)x * P.ps + c] = 0.f;
        }
      }
    }
  });
}

// ----------------------------------------------------------------------------- single ops
at::Tensor conv3x3_fwd(const at::Tensor& x_, const at::Tensor& w_, const c10::optional<at::Tensor>& b_, bool relu,
                       const c10::optional<at::Tensor>& res_) {
  check_nhwc(x_, "x");
  check_w(w_);
  auto x = x_.contiguous();
  auto w = w_.contiguous();
  const int N = x.size(0), H = x.size(1), W = x.size(2), Cin = x.size(3), Cout = w.size(0);
  TORCH_CHECK(w.size(1) == Cin, "mzsr_fast cpu: conv3x3_fwd: x has ", Cin, " channels, w expects ", w.size(1));
  at::Tensor res;
  if (res_.has_value() && res_->defined()) {
    res = res_->contiguous();
    check_nhwc(res, "residual");
    TORCH_CHECK(res.sizes() == at::IntArrayRef({N, H, W, Cout}), "mzsr_fast cpu: residual shape ", res.sizes());
  }
  auto y = at::empty({N, H, W, Cout}, x.options());
  if (y.numel() == 0) return y;
  const int VW = K().VW, CoutP = round_up(Cout, VW);
  const bool wino = use_wino(Cin, Cout) && !(res_.has_value() && res_->defined());
  Arena a;
  a.reset(pad_size(N, H, W, Cin) + (size_t)9 * Cin * CoutP + CoutP + conv_scratch_size(W, CoutP) + 64 +
          (wino ? (size_t)16 * Cin * Cout + wino_scratch_size(Cin, Cout) : 0));
  Pad P{a.take(pad_size(N, H, W, Cin)), N, H, W, Cin};
  P.zero_border();
  fill_pad(P, x.data_ptr<float>(), Cin);
  float* wp = a.take((size_t)9 * Cin * CoutP);
  pack_fwd(w.data_ptr<float>(), Cout, Cin, CoutP, wp);
  float* bp = nullptr;
  if (b_.has_value() && b_->defined()) {
    auto b = b_->contiguous();
    TORCH_CHECK(b.numel() == Cout && b.scalar_type() == at::kFloat, "mzsr_fast cpu: bias must be (Cout,) float32");
    bp = a.take(CoutP);
    std::memset(bp, 0, CoutP * sizeof(float));
    std::memcpy(bp, b.data_ptr<float>(), Cout * sizeof(float));
  }
  float* scratch = a.take(conv_scratch_size(W, CoutP));
  float* yp = y.data_ptr<float>();
  const float* rp = res.defined() ? res.data_ptr<float>() : nullptr;
  if (wino) {
    float* U = a.take((size_t)16 * Cin * Cout);
    wino_weights(w.data_ptr<float>(), Cout, Cin, false, U);
    run_wino(P, Cin, U, Cout, bp, relu ? 1 : 0, yp, (long)H * W * Cout, (long)W * Cout, Cout, nullptr, 0, 0, 0,
             a.take(wino_scratch_size(Cin, Cout)));
    return y;
  }
  ConvJob j{&P, Cin, wp, Cout, CoutP, bp, relu ? 1 : 0, yp, (long)H * W * Cout, (long)W * Cout, Cout, nullptr, 0, 0, 0};
  const bool direct = CoutP == Cout && rp == nullptr;
  run_conv(j, scratch, !direct, [&](int n, int yy, const float* row, int) {
    float* o = yp + ((long)n * H + yy) * W * Cout;
    const float* rr = rp ? rp + ((long)n * H + yy) * W * Cout : nullptr;
    for (int xx = 0; xx < W; ++xx)
      for (int c = 0; c < Cout; ++c) {
        float v = row[(long)xx * CoutP + c];
        if (rr) v += rr[(long)xx * Cout + c];
        o[(long)xx * Cout + c] = v;
      }
  });
  return y;
}

at::Tensor conv3x3_dgrad(const at::Tensor& gy_, const at::Tensor& w_, const c10::optional<at::Tensor>& m_) {
  check_nhwc(gy_, "gy");
  check_w(w_);
  auto gy = gy_.contiguous();
  auto w = w_.contiguous();
  const int N = gy.size(0), H = gy.size(1), W = gy.size(2), Cout = gy.size(3), Cin = w.size(1);
  TORCH_CHECK(w.size(0) == Cout, "mzsr_fast cpu: conv3x3_dgrad: gy has ", Cout, " channels, w has Cout ", w.size(0));
  at::Tensor m;
  if (m_.has_value() && m_->defined()) {
    m = m_->contiguous();
    check_nhwc(m, "mask_src");
    TORCH_CHECK(m.sizes() == at::IntArrayRef({N, H, W, Cin}), "mzsr_fast cpu: mask_src shape ", m.sizes());
  }
  auto gx = at::empty({N, H, W, Cin}, gy.options());
  if (gx.numel() == 0) return gx;
  const int VW = K().VW, CinP = round_up(Cin, VW);
  const bool wino = use_wino(Cout, Cin);
  Arena a;
  a.reset(pad_size(N, H, W, Cout) + (size_t)9 * Cout * CinP + conv_scratch_size(W, CinP) + 64 +
          (wino ? (size_t)16 * Cin * Cout + wino_scratch_size(Cout, Cin) : 0));
  Pad P{a.take(pad_size(N, H, W, Cout)), N, H, W, Cout};
  P.zero_border();
  fill_pad(P, gy.data_ptr<float>(), Cout);
  float* wp = a.take((size_t)9 * Cout * CinP);
  pack_dgrad(w.data_ptr<float>(), Cout, Cin, CinP, wp);
  float* scratch = a.take(conv_scratch_size(W, CinP));
  float* gp = gx.data_ptr<float>();
  const float* mp = m.defined() ? m.data_ptr<float>() : nullptr;
  const long is = (long)H * W * Cin, rs = (long)W * Cin;
  if (wino) {
    float* U = a.take((size_t)16 * Cin * Cout);
    wino_weights(w.data_ptr<float>(), Cout, Cin, true, U);
    run_wino(P, Cout, U, Cin, nullptr, mp ? 2 : 0, gp, is, rs, Cin, mp, is, rs, Cin,
             a.take(wino_scratch_size(Cout, Cin)));
    return gx;
  }
  ConvJob j{&P, Cout, wp, Cin, CinP, nullptr, mp ? 2 : 0, gp, is, rs, Cin, mp, is, rs, Cin};
  const bool direct = CinP == Cin;
  if (!direct) j.epi = 0;
  run_conv(j, scratch, !direct, [&](int n, int yy, const float* row, int) {
    float* o = gp + n * is + yy * rs;
    const float* mr = mp ? mp + n * is + yy * rs : nullptr;
    for (int xx = 0; xx < W; ++xx)
      for (int c = 0; c < Cin; ++c) {
        float v = row[(long)xx * CinP + c];
        if (mr && !(mr[(long)xx * Cin + c] > 0.f)) v = 0.f;
        o[(long)xx * Cin + c] = v;
      }
  });
  return gx;
}

std::tuple<at::Tensor, at::Tensor> conv3x3_wgrad(const at::Tensor& x_, const at::Tensor& gy_) {
  check_nhwc(x_, "x");
  check_nhwc(gy_, "gy");
  auto x = x_.contiguous();
  auto gy = gy_.contiguous();
  const int N = x.size(0), H = x.size(1), W = x.size(2), Cin = x.size(3), Cout = gy.size(3);
  TORCH_CHECK(gy.size(0) == N && gy.size(1) == H && gy.size(2) == W, "mzsr_fast cpu: conv3x3_wgrad: x ", x.sizes(),
              " vs gy ", gy.sizes());
  auto gw = at::zeros({Cout, Cin, 3, 3}, x.options());
  auto gb = at::zeros({Cout}, x.options());
  if (x.numel() == 0 || gy.numel() == 0) return {gw, gb};
  const int VW = K().VW, CoutP = round_up(Cout, VW);
  const bool copy_gy = CoutP != Cout;
  const bool wino = use_wino(Cin, Cout) && !copy_gy;
  Arena a;
  a.reset(pad_size(N, H, W, Cin) + (copy_gy ? (size_t)N * H * W * CoutP : 0) + (size_t)9 * Cin + 16 +
          wgrad_scratch_size(Cin, CoutP) + (size_t)(9 * Cin + 1) * CoutP + 64 +
          (wino ? wino_wgrad_partials_size(Cin, Cout) + wino_scratch_size(Cin, Cout) : 0));
  Pad P{a.take(pad_size(N, H, W, Cin)), N, H, W, Cin};
  P.zero_border();
  fill_pad(P, x.data_ptr<float>(), Cin);
  const float* g = gy.data_ptr<float>();
  if (copy_gy) {
    float* gc = a.take((size_t)N * H * W * CoutP);
    const long npx = (long)N * H * W;
    at::parallel_for(0, npx, 4096, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        for (int c = 0; c < Cout; ++c) gc[p * CoutP + c] = g[p * Cout + c];
        for (int c = Cout; c < CoutP; ++c) gc[p * CoutP + c] = 0.f;
      }
    });
    g = gc;
  }
  long* koff = reinterpret_cast<long*>(a.take((size_t)9 * Cin * 2 + 16));
  make_koff(Cin, P.ps, P.rs(), koff);
  float* parts = a.take(wgrad_scratch_size(Cin, CoutP));
  float* red = a.take((size_t)(9 * Cin + 1) * CoutP);
  if (wino) {
    float* wp = a.take(wino_wgrad_partials_size(Cin, Cout));
    run_wino_wgrad(P, Cin, g, (long)H * W * CoutP, (long)W * CoutP, CoutP, CoutP, wp, red,
                   a.take(wino_scratch_size(Cin, Cout)));
  } else {
    run_wgrad(P, Cin, g, (long)H * W * CoutP, (long)W * CoutP, CoutP, CoutP, koff, parts, red);
  }
  float* gwp = gw.data_ptr<float>();
  float* gbp = gb.data_ptr<float>();
  for (int co = 0; co < Cout; ++co) {
    for (int ci = 0; ci < Cin; ++ci)
      for (int t = 0; t < 9; ++t) gwp[((long)co * Cin + ci) * 9 + t] = red[((long)t * Cin + ci) * CoutP + co];
    gbp[co] = red[(long)9 * Cin * CoutP + co];
  }
  return {gw, gb};
}

std::tuple<at::Tensor, at::Tensor> l1_loss_grad(const at::Tensor& pred_, const at::Tensor& target_) {
  TORCH_CHECK(pred_.device().is_cpu() && pred_.scalar_type() == at::kFloat && target_.scalar_type() == at::kFloat,
              "mzsr_fast cpu: l1_loss_grad needs CPU float32 tensors");
  TORCH_CHECK(pred_.sizes() == target_.sizes(), "mzsr_fast cpu: l1_loss_grad: pred ", pred_.sizes(), " vs target ",
              target_.sizes());
  auto pred = pred_.contiguous();
  auto target = target_.contiguous();
  auto g = at::empty_like(pred);
  const int64_t n = pred.numel();
  const float* p = pred.data_ptr<float>();
  const float* t = target.data_ptr<float>();
  float* gp = g.data_ptr<float>();
  const float inv = 1.0f / (float)n;
  double s = 0.0;
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float d = p[i] - t[i];
    s += std::fabs(d);
    gp[i] = (float)((d > 0.f) - (d < 0.f)) * inv;
  }
  auto loss = at::scalar_tensor(n ? (float)(s / (double)n) : NAN, pred.options());
  return {loss, g};
}

void sgd_update_(at::TensorList params, at::TensorList grads, const at::Tensor& lr_t) {
  TORCH_CHECK(params.size() == grads.size(), "sgd_update_: ", params.size(), " params but ", grads.size(), " grads");
  const float lr = lr_t.item<float>();
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& p = params[i];
    TORCH_CHECK(p.is_contiguous() && p.scalar_type() == at::kFloat && p.device().is_cpu(),
                "mzsr_fast cpu: sgd_update_ params must be contiguous CPU float32");
    TORCH_CHECK(grads[i].sizes() == p.sizes(), "sgd_update_: param ", i, " ", p.sizes(), " vs grad ", grads[i].sizes());
    auto g = grads[i].to(at::kFloat).contiguous();
    float* pp = p.data_ptr<float>();
    const float* gp = g.data_ptr<float>();
    const int64_t n = p.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t k = 0; k < n; ++k) pp[k] -= lr * gp[k];
  }
}

// ----------------------------------------------------------------------------- whole net
static constexpr int NL = 8;

struct Net {
  int cin[NL], cout[NL], coutp[NL], cinp[NL];
};

static Net net_shape(at::TensorList params) {
  TORCH_CHECK(params.size() == 2 * NL, "mzsr_fast cpu: expected ", 2 * NL, " params [w0, b0, ..., w7, b7], got ",
              params.size());
  Net n;
  const int VW = K().VW;
  for (int i = 0; i < NL; ++i) {
    const at::Tensor& w = params[2 * i];
    const at::Tensor& b = params[2 * i + 1];
    check_w(w);
    TORCH_CHECK(w.is_contiguous(), "mzsr_fast cpu: params must be contiguous");
    TORCH_CHECK(b.is_contiguous() && b.scalar_type() == at::kFloat && b.numel() == w.size(0),
                "mzsr_fast cpu: bias ", i, " must be contiguous float32 (Cout,)");
    n.cout[i] = w.size(0);
    n.cin[i] = w.size(1);
    n.coutp[i] = round_up(n.cout[i], VW);
    n.cinp[i] = round_up(n.cin[i], VW);
    if (i > 0) TORCH_CHECK(n.cin[i] == n.cout[i - 1], "mzsr_fast cpu: layer ", i, " Cin ", n.cin[i], " != previous Cout");
  }
  TORCH_CHECK(n.cout[NL - 1] == n.cin[0], "mzsr_fast cpu: the residual needs Cout of the last layer == Cin of the first");
  return n;
}

// Forward of the whole net: x (N, H, W, C) NHWC -> x + net(x).  Ping-pong between two
// padded buffers carved from the arena.
static void check_bf16_net(const Net& S) {
  TORCH_CHECK(bf_kernels(), "mzsr_fast cpu: precision bf16 needs a CPU with AVX512_BF16");
  for (int i = 0; i < NL - 1; ++i)
    TORCH_CHECK(S.cout[i] == S.cout[0] && S.cout[i] % 16 == 0,
                "mzsr_fast cpu: bf16 needs equal hidden widths, multiples of 16");
}

static bool want_bf16(const std::string& precision) {
  TORCH_CHECK(precision == "fp32" || precision == "bf16", "mzsr_fast cpu: precision must be fp32 or bf16, got ",
              precision);
  return precision == "bf16";
}

at::Tensor net_forward(at::TensorList params, const at::Tensor& x_, std::string precision) {
  const bool bf16 = want_bf16(precision);
  check_nhwc(x_, "x");
  const Net S = net_shape(params);
  auto x = x_.contiguous();
  const int N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  TORCH_CHECK(C == S.cin[0], "mzsr_fast cpu: x has ", C, " channels, net expects ", S.cin[0]);
  auto y = at::empty_like(x);
  if (x.numel() == 0) return y;
  int cmax = 0, cpmax = 0;
  size_t wsz = 0;
  for (int i = 0; i < NL; ++i) {
    cmax = std::max(cmax, S.cout[i]);
    cpmax = std::max(cpmax, S.coutp[i]);
    wsz += (size_t)9 * S.cin[i] * S.coutp[i] + S.coutp[i] + 32;
  }
  Arena& a = t_arena;
  if (bf16) {
    check_bf16_net(S);
    const int ch = S.cout[0];
    const size_t need = pad_size(N, H, W, C) + 2 * pad_size(N, H, W, ch / 2) + wsz + conv_scratch_size(W, cpmax) + 256;
    if (need > a.cap) g_arena_allocs++;
    a.reset(need);
    Pad X{a.take(pad_size(N, H, W, C)), N, H, W, C};
    Pad Bf[2] = {{a.take(pad_size(N, H, W, ch / 2)), N, H, W, ch / 2}, {a.take(pad_size(N, H, W, ch / 2)), N, H, W, ch / 2}};
    float* w0 = a.take((size_t)9 * S.cin[0] * S.coutp[0]);
    pack_fwd(params[0].data_ptr<float>(), S.cout[0], S.cin[0], S.coutp[0], w0);
    uint16_t* wb[NL];
    float* bp[NL];
    for (int i = 0; i < NL; ++i) {
      if (i > 0) {
        wb[i] = reinterpret_cast<uint16_t*>(a.take((size_t)9 * S.cin[i] * S.coutp[i] / 2 + 1));
        pack_fwd_bf(params[2 * i].data_ptr<float>(), S.cout[i], S.cin[i], S.coutp[i], wb[i]);
      }
      bp[i] = a.take(S.coutp[i]);
      std::memset(bp[i], 0, S.coutp[i] * sizeof(float));
      std::memcpy(bp[i], params[2 * i + 1].data_ptr<float>(), S.cout[i] * sizeof(float));
    }
    float* scratch = a.take(conv_scratch_size(W, cpmax));
    X.zero_border();
    Bf[0].zero_border();
    Bf[1].zero_border();
    fill_pad(X, x.data_ptr<float>(), C);
    const KernelsBf* kb = bf_kernels();
    PadB b0(Bf[0]), b1(Bf[1]);
    const PadB* bb[2] = {&b0, &b1};
    {  // layer 0 (3 input channels) in fp32, its ReLU output rounded to bf16
      ConvJob j{&X, S.cin[0], w0, S.cout[0], S.coutp[0], bp[0], 0, nullptr, 0, 0, 0, nullptr, 0, 0, 0};
      run_conv(j, scratch, true, [&](int n, int yy, const float* row, int) {
        kb->epi_cvt(row, nullptr, nullptr, true, b0.at(n, yy, 0), (long)W * ch);
      });
    }
    for (int i = 1; i < NL - 1; ++i) {
      ConvJobBf j{bb[(i - 1) & 1], S.cin[i], wb[i], S.coutp[i], bp[i], 1, nullptr, 0, 0, 0, nullptr, 0, 0, 0,
                  bb[i & 1]};
      run_conv_bf(j, scratch, false, [](int, int, const float*, int) {});
    }
    const int L = NL - 1, Co = S.cout[L], CoP = S.coutp[L];
    float* yp = y.data_ptr<float>();
    ConvJobBf j{bb[(L - 1) & 1], S.cin[L], wb[L], CoP, bp[L], 0, nullptr, 0, 0, 0, nullptr, 0, 0, 0, nullptr};
    run_conv_bf(j, scratch, true, [&](int n, int yy, const float* row, int) {
      const float* xr = X.at(n, yy, 0);
      float* d = yp + ((long)n * H + yy) * W * Co;
      for (int xx = 0; xx < W; ++xx)
        for (int c = 0; c < Co; ++c) d[(long)xx * Co + c] = xr[(long)xx * C + c] + row[(long)xx * CoP + c];
    });
    return y;
  }
  const size_t wino_sz = (size_t)16 * cmax * cmax + wino_scratch_size(cmax, cmax) + 32;
  const size_t need =
      pad_size(N, H, W, C) + 2 * pad_size(N, H, W, cmax) + wsz + conv_scratch_size(W, cpmax) + 256 + wino_sz;
  if (need > a.cap) g_arena_allocs++;
  a.reset(need);
  Pad X{a.take(pad_size(N, H, W, C)), N, H, W, C};
  Pad B[2] = {{a.take(pad_size(N, H, W, cmax)), N, H, W, cmax}, {a.take(pad_size(N, H, W, cmax)), N, H, W, cmax}};
  float* wU = a.take((size_t)16 * cmax * cmax);  // Winograd weights of the current layer
  float* wscr = a.take(wino_scratch_size(cmax, cmax));
  float* wp[NL];
  float* bp[NL];
  for (int i = 0; i < NL; ++i) {
    wp[i] = a.take((size_t)9 * S.cin[i] * S.coutp[i]);
    pack_fwd(params[2 * i].data_ptr<float>(), S.cout[i], S.cin[i], S.coutp[i], wp[i]);
    bp[i] = a.take(S.coutp[i]);
    std::memset(bp[i], 0, S.coutp[i] * sizeof(float));
    std::memcpy(bp[i], params[2 * i + 1].data_ptr<float>(), S.cout[i] * sizeof(float));
  }
  float* scratch = a.take(conv_scratch_size(W, cpmax));
  X.zero_border();
  fill_pad(X, x.data_ptr<float>(), C);
  const Pad* cur = &X;
  for (int i = 0; i < NL; ++i) {
    const bool last = i == NL - 1;
    if (!last) {
      Pad& o = B[i & 1];
      o.ps = S.cout[i];
      o.zero_border();
      ConvJob j{cur, S.cin[i], wp[i], S.cout[i], S.coutp[i], bp[i], 1, o.at(0, 0, 0), o.is(), o.rs(), o.ps,
                nullptr, 0, 0, 0};
      const bool direct = S.coutp[i] == S.cout[i];
      if (use_wino(S.cin[i], S.cout[i])) {
        wino_weights(params[2 * i].data_ptr<float>(), S.cout[i], S.cin[i], false, wU);
        run_wino(*cur, S.cin[i], wU, S.cout[i], bp[i], 1, o.at(0, 0, 0), o.is(), o.rs(), o.ps, nullptr, 0, 0, 0, wscr);
      } else if (direct) {
        run_conv(j, scratch, false, [](int, int, const float*, int) {});
      } else {
        j.epi = 0;
        run_conv(j, scratch, true, [&](int n, int yy, const float* row, int) {
          float* d = o.at(n, yy, 0);
          for (int xx = 0; xx < W; ++xx)
            for (int c = 0; c < o.ps; ++c) d[(long)xx * o.ps + c] = std::max(row[(long)xx * S.coutp[i] + c], 0.f);
        });
      }
      cur = &o;
    } else {
      const int Co = S.cout[i], CoP = S.coutp[i];
      float* yp = y.data_ptr<float>();
      ConvJob j{cur, S.cin[i], wp[i], Co, CoP, bp[i], 0, nullptr, 0, 0, 0, nullptr, 0, 0, 0};
      auto fin = [&](int n, int yy, const float* row, int) {
        const float* xr = X.at(n, yy, 0);
        float* d = yp + ((long)n * H + yy) * W * Co;
        for (int xx = 0; xx < W; ++xx)
          for (int c = 0; c < Co; ++c) d[(long)xx * Co + c] = xr[(long)xx * C + c] + row[(long)xx * CoP + c];
      };
      if (narrow_ok(S.cin[i], Co)) {
        pack_narrow(params[2 * i].data_ptr<float>(), Co, S.cin[i], wp[i]);  // same size as the wide packing
        run_narrow(*cur, S.cin[i], wp[i], Co, CoP, bp[i], scratch, fin);
      } else {
        run_conv(j, scratch, true, fin);
      }
    }
  }
  return y;
}

// One whole step.  update: p -= lr * grad in place (adapt_step); otherwise the gradients
// are written to grads_out (OIHW / (Cout,)).  Returns the loss before the update.
static at::Tensor step_impl(at::TensorList params, const at::Tensor& x_, const at::Tensor& t_, float lr, bool update,
                            std::vector<at::Tensor>* grads_out, bool bf16) {
  check_nhwc(x_, "x");
  check_nhwc(t_, "target");
  const Net S = net_shape(params);
  if (bf16) check_bf16_net(S);
  const int ch = S.cout[0];
  auto x = x_.contiguous();
  auto tg = t_.contiguous();
  const int N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  TORCH_CHECK(C == S.cin[0], "mzsr_fast cpu: x has ", C, " channels, net expects ", S.cin[0]);
  TORCH_CHECK(tg.sizes() == x.sizes(), "mzsr_fast cpu: target ", tg.sizes(), " must match x ", x.sizes());
  TORCH_CHECK(x.numel() > 0, "mzsr_fast cpu: empty input");
  const int nth = omp_get_max_threads();
  // sizes
  size_t need = pad_size(N, H, W, C);  // a[0] = x
  for (int i = 0; i < NL - 1; ++i) need += pad_size(N, H, W, S.cout[i]) + 16;  // a[1..7]
  const int CoL = S.cout[NL - 1], CoLP = S.coutp[NL - 1];
  need += pad_size(N, H, W, CoLP) + 16;  // gradient of the last layer's output (CoutP lanes)
  int cpmax = 0;
  size_t wpk = 0, gmax = 0;
  for (int i = 0; i < NL; ++i) {
    cpmax = std::max({cpmax, S.coutp[i], S.cinp[i]});
    wpk += (size_t)9 * S.cin[i] * S.coutp[i] + S.coutp[i] + (size_t)9 * S.cout[i] * S.cinp[i] + 64;
    gmax = std::max(gmax, wgrad_scratch_size(S.cin[i], S.coutp[i]) + (size_t)(9 * S.cin[i] + 1) * S.coutp[i] +
                              (size_t)9 * S.cin[i] * 2 + 64);
  }
  need += wpk + conv_scratch_size(W, cpmax) + gmax + 2 * (size_t)nth * 16 + 512;
  const size_t wino_sz = bf16 ? 0
                              : (size_t)16 * cpmax * cpmax + wino_scratch_size(cpmax, cpmax) +
                                    wino_wgrad_partials_size(cpmax, cpmax) + 48;
  need += wino_sz;
  size_t bwsz = 0;  // bf16 wgrad scratch (floats)
  if (bf16) {
    bwsz = (size_t)nth * bf_kernels()->wgrad_scr(W, cpmax, cpmax) / 2 + 64;
    need += 2 * pad_size(N, H, W, ch / 2) + wpk / 2 + bwsz + 64;
  }
  Arena& a = t_arena;
  if (need > a.cap) g_arena_allocs++;
  a.reset(need);
  Pad A[NL];
  A[0] = Pad{a.take(pad_size(N, H, W, C)), N, H, W, C};
  for (int i = 1; i < NL; ++i) A[i] = Pad{a.take(pad_size(N, H, W, S.cout[i - 1])), N, H, W, S.cout[i - 1]};
  Pad G{a.take(pad_size(N, H, W, CoLP)), N, H, W, CoLP};
  float *wf[NL], *bf[NL], *wd[NL];
  for (int i = 0; i < NL; ++i) {
    wf[i] = a.take((size_t)9 * S.cin[i] * S.coutp[i]);
    bf[i] = a.take(S.coutp[i]);
    wd[i] = a.take((size_t)9 * S.cout[i] * S.cinp[i]);
    const float* w = params[2 * i].data_ptr<float>();
    pack_fwd(w, S.cout[i], S.cin[i], S.coutp[i], wf[i]);
    if (i > 0) pack_dgrad(w, S.cout[i], S.cin[i], S.cinp[i], wd[i]);
    std::memset(bf[i], 0, S.coutp[i] * sizeof(float));
    std::memcpy(bf[i], params[2 * i + 1].data_ptr<float>(), S.cout[i] * sizeof(float));
  }
  // bf16 copies: ping-pong activations / gradients, packed weights (fwd and dgrad, layers >= 1)
  Pad Bf[2] = {{nullptr, N, H, W, ch / 2}, {nullptr, N, H, W, ch / 2}};
  uint16_t *wfb[NL] = {}, *wdb[NL] = {};
  if (bf16) {
    Bf[0].p = a.take(pad_size(N, H, W, ch / 2));
    Bf[1].p = a.take(pad_size(N, H, W, ch / 2));
    for (int i = 1; i < NL; ++i) {
      const float* w = params[2 * i].data_ptr<float>();
      wfb[i] = reinterpret_cast<uint16_t*>(a.take((size_t)9 * S.cin[i] * S.coutp[i] / 2 + 1));
      pack_fwd_bf(w, S.cout[i], S.cin[i], S.coutp[i], wfb[i]);
      if (S.cout[i] % 2 == 0) {
        wdb[i] = reinterpret_cast<uint16_t*>(a.take((size_t)9 * S.cout[i] * S.cinp[i] / 2 + 1));
        pack_dgrad_bf(w, S.cout[i], S.cin[i], S.cinp[i], wdb[i]);
      }
    }
    Bf[0].zero_border();
    Bf[1].zero_border();
  }
  const KernelsBf* kb = bf16 ? bf_kernels() : nullptr;
  uint16_t* bwscr = bf16 ? reinterpret_cast<uint16_t*>(a.take(bwsz)) : nullptr;
  PadB b0(Bf[0]), b1(Bf[1]);
  const PadB* bb[2] = {&b0, &b1};
  float* scratch = a.take(conv_scratch_size(W, cpmax));
  float* gscr = a.take(gmax);
  double* lpart = reinterpret_cast<double*>(a.take((size_t)nth * 16 * 2));
  // Winograd weights of the layer being run (transformed just before each use) + scratch
  float* wU = bf16 ? nullptr : a.take((size_t)16 * cpmax * cpmax);
  float* wscr = bf16 ? nullptr : a.take(wino_scratch_size(cpmax, cpmax));
  float* wparts = bf16 ? nullptr : a.take(wino_wgrad_partials_size(cpmax, cpmax));
  for (int i = 0; i < NL; ++i) A[i].zero_border();
  G.zero_border();
  fill_pad(A[0], x.data_ptr<float>(), C);

  // ---- forward
  for (int i = 0; i < NL - 1; ++i) {
    Pad& o = A[i + 1];
    if (bf16) {
      if (i == 0) {  // 3 input channels: fp32 kernel, output in fp32 and bf16
        ConvJob j{&A[0], S.cin[0], wf[0], S.cout[0], S.coutp[0], bf[0], 0, nullptr, 0, 0, 0, nullptr, 0, 0, 0};
        run_conv(j, scratch, true, [&](int n, int yy, const float* row, int) {
          kb->epi_cvt(row, o.at(n, yy, 0), nullptr, true, b0.at(n, yy, 0), (long)W * ch);
        });
      } else {
        ConvJobBf j{bb[(i - 1) & 1], S.cin[i], wfb[i], S.coutp[i], bf[i], 1, o.at(0, 0, 0), o.is(), o.rs(), o.ps,
                    nullptr, 0, 0, 0, bb[i & 1]};
        run_conv_bf(j, scratch, false, [](int, int, const float*, int) {});
      }
      continue;
    }
    ConvJob j{&A[i], S.cin[i], wf[i], S.cout[i], S.coutp[i], bf[i], 1, o.at(0, 0, 0), o.is(), o.rs(), o.ps,
              nullptr, 0, 0, 0};
    if (use_wino(S.cin[i], S.cout[i])) {
      wino_weights(params[2 * i].data_ptr<float>(), S.cout[i], S.cin[i], false, wU);
      run_wino(A[i], S.cin[i], wU, S.cout[i], bf[i], 1, o.at(0, 0, 0), o.is(), o.rs(), o.ps, nullptr, 0, 0, 0, wscr);
    } else if (S.coutp[i] == S.cout[i]) {
      run_conv(j, scratch, false, [](int, int, const float*, int) {});
    } else {
      j.epi = 0;
      const int cp = S.coutp[i];
      run_conv(j, scratch, true, [&](int n, int yy, const float* row, int) {
        float* d = o.at(n, yy, 0);
        for (int xx = 0; xx < W; ++xx)
          for (int c = 0; c < o.ps; ++c) d[(long)xx * o.ps + c] = std::max(row[(long)xx * cp + c], 0.f);
      });
    }
  }
  // last layer + residual + L1 loss and its gradient, fused in the epilogue
  for (int t = 0; t < nth; ++t) lpart[t * 8] = 0.0;
  {
    const float inv = 1.0f / (float)x.numel();
    const float* tp = tg.data_ptr<float>();
    const int L = NL - 1;
    ConvJob j{&A[L], S.cin[L], wf[L], CoL, CoLP, bf[L], 0, nullptr, 0, 0, 0, nullptr, 0, 0, 0};
    auto l1 = [&](int n, int yy, const float* row, int tid) {
      const float* xr = A[0].at(n, yy, 0);
      const float* tr = tp + ((long)n * H + yy) * W * C;
      float* g = G.at(n, yy, 0);
      double s = 0.0;
      for (int xx = 0; xx < W; ++xx) {
        for (int c = 0; c < CoL; ++c) {
          const float d = (xr[(long)xx * C + c] + row[(long)xx * CoLP + c]) - tr[(long)xx * C + c];
          s += std::fabs(d);
          g[(long)xx * CoLP + c] = (float)((d > 0.f) - (d < 0.f)) * inv;
        }
        for (int c = CoL; c < CoLP; ++c) g[(long)xx * CoLP + c] = 0.f;
      }
      lpart[tid * 8] += s;
    };
    if (bf16) {
      ConvJobBf jb{bb[(L - 1) & 1], S.cin[L], wfb[L], CoLP, bf[L], 0, nullptr, 0, 0, 0, nullptr, 0, 0, 0, nullptr};
      run_conv_bf(jb, scratch, true, l1);
    } else if (narrow_ok(S.cin[L], CoL)) {
      float* wn = gscr;  // free until the backward; 9*Cin*Cout floats <= its size
      pack_narrow(params[2 * L].data_ptr<float>(), CoL, S.cin[L], wn);
      run_narrow(A[L], S.cin[L], wn, CoL, CoLP, bf[L], scratch, l1);
    } else {
      run_conv(j, scratch, true, l1);
    }
  }
  double ls = 0.0;
  for (int t = 0; t < nth; ++t) ls += lpart[t * 8];
  auto loss = at::scalar_tensor((float)(ls / (double)x.numel()), x.options());

  // ---- backward: gy of layer i lives in G (i = 7) or, after dgrad, in A[i+1]
  int bcur = 0;  // which bf16 buffer holds the current gradient
  const float* gy = G.at(0, 0, 0);
  long gis = G.is(), grs = G.rs(), gps = G.ps;
  for (int i = NL - 1; i >= 0; --i) {
    const int Ci = S.cin[i], Co = S.cout[i], CoP = S.coutp[i];
    long* koff = reinterpret_cast<long*>(gscr);
    make_koff(Ci, A[i].ps, A[i].rs(), koff);
    float* red = gscr + (size_t)9 * Ci * 2 + 32;
    float* parts = red + (size_t)(9 * Ci + 1) * CoP + 32;
    // gy must have CoP readable lanes: true for G (CoLP) and for A[i+1] when Co == CoP
    TORCH_INTERNAL_ASSERT(gps >= CoP || i == NL - 1);
    if (bf16 && Ci % 16 == 0 && CoP % 16 == 0) {
      kb->wgrad_koff(W, Ci, koff);
      run_wgrad_bf(A[i], Ci, gy, gis, grs, gps, CoP, koff, parts, red, bwscr);
    } else if (!bf16 && use_wino(Ci, Co)) {
      run_wino_wgrad(A[i], Ci, gy, gis, grs, gps, Co, wparts, red, wscr);
    } else {
      run_wgrad(A[i], Ci, gy, gis, grs, gps, CoP, koff, parts, red);
    }
    if (i > 0) {
      // gx = conv^T(gy, w_i) * (A[i] > 0), in place over A[i] (its last use was the wgrad above)
      Pad& o = A[i];
      Pad gin{const_cast<float*>(gy) - grs - gps, N, H, W, (int)gps};
      const int CiP = S.cinp[i];
      ConvJob j{&gin, Co, wd[i], Ci, CiP, nullptr, 2, o.at(0, 0, 0), o.is(), o.rs(), o.ps, o.at(0, 0, 0), o.is(),
                o.rs(), o.ps};
      if (bf16 && wdb[i]) {
        // bf16 gradient in, fp32 (masked, in place) + bf16 copy out for the next dgrad
        ConvJobBf jb{bb[bcur], Co, wdb[i], CiP, nullptr, 2, o.at(0, 0, 0), o.is(), o.rs(), o.ps, o.at(0, 0, 0),
                     o.is(), o.rs(), o.ps, i > 1 ? bb[bcur ^ 1] : nullptr};
        run_conv_bf(jb, scratch, false, [](int, int, const float*, int) {});
        bcur ^= 1;
      } else if (bf16) {
        // the last layer's 3-channel gradient: fp32 kernel, masked output in fp32 + bf16
        j.epi = 0;
        const PadB* ob = bb[bcur];
        run_conv(j, scratch, true, [&](int n, int yy, const float* row, int) {
          float* d = o.at(n, yy, 0);
          kb->epi_cvt(row, d, d, false, ob->at(n, yy, 0), (long)W * Ci);
        });
      } else if (use_wino(Co, Ci)) {
        // w_i is not updated yet (the update below comes after this layer's dgrad)
        wino_weights(params[2 * i].data_ptr<float>(), Co, Ci, true, wU);
        run_wino(gin, Co, wU, Ci, nullptr, 2, o.at(0, 0, 0), o.is(), o.rs(), o.ps, o.at(0, 0, 0), o.is(), o.rs(),
                 o.ps, wscr);
      } else if (CiP == Ci) {
        run_conv(j, scratch, false, [](int, int, const float*, int) {});
      } else {
        j.epi = 0;
        run_conv(j, scratch, true, [&](int n, int yy, const float* row, int) {
          float* d = o.at(n, yy, 0);
          for (int xx = 0; xx < W; ++xx)
            for (int c = 0; c < Ci; ++c) {
              const float m = d[(long)xx * Ci + c];
              d[(long)xx * Ci + c] = m > 0.f ? row[(long)xx * CiP + c] : 0.f;
            }
        });
      }
    }
    // the gradient (and the fused SGD update) of layer i
    float* w = params[2 * i].data_ptr<float>();
    float* b = params[2 * i + 1].data_ptr<float>();
    if (update) {
      for (int co = 0; co < Co; ++co) {
        for (int ci = 0; ci < Ci; ++ci)
          for (int t = 0; t < 9; ++t) w[((long)co * Ci + ci) * 9 + t] -= lr * red[((long)t * Ci + ci) * CoP + co];
        b[co] -= lr * red[(long)9 * Ci * CoP + co];
      }
    } else {
      float* gw = (*grads_out)[2 * i].data_ptr<float>();
      float* gb = (*grads_out)[2 * i + 1].data_ptr<float>();
      for (int co = 0; co < Co; ++co) {
        for (int ci = 0; ci < Ci; ++ci)
          for (int t = 0; t < 9; ++t) gw[((long)co * Ci + ci) * 9 + t] = red[((long)t * Ci + ci) * CoP + co];
        gb[co] = red[(long)9 * Ci * CoP + co];
      }
    }
    if (i > 0) {
      gy = A[i].at(0, 0, 0);
      gis = A[i].is();
      grs = A[i].rs();
      gps = A[i].ps;
    }
  }
  return loss;
}

at::Tensor adapt_step(at::TensorList params, const at::Tensor& x, const at::Tensor& target, const at::Tensor& lr) {
  const float l = lr.item<float>();
  return step_impl(params, x, target, l, true, nullptr, false);
}

at::Tensor adapt_step_prec(at::TensorList params, const at::Tensor& x, const at::Tensor& target, const at::Tensor& lr,
                           std::string precision) {
  const bool bf16 = want_bf16(precision);
  const float l = lr.item<float>();
  return step_impl(params, x, target, l, true, nullptr, bf16);
}

std::tuple<at::Tensor, std::vector<at::Tensor>> net_grads(at::TensorList params, const at::Tensor& x,
                                                          const at::Tensor& target, std::string precision) {
  const bool bf16 = want_bf16(precision);
  std::vector<at::Tensor> g;
  for (const auto& p : params) g.push_back(at::empty_like(p));
  auto loss = step_impl(params, x, target, 0.f, false, &g, bf16);
  return {loss, g};
}

std::string cpu_isa(std::string request) {
  if (!request.empty()) g_kern.store(pick_named(request));
  return K().name;
}

bool cpu_has_bf16() { return bf_kernels() != nullptr; }

int64_t cpu_arena_allocs() { return g_arena_allocs.load(); }

// Winograd mode: "" queries; "off" / "auto" / "on" sets (see wino_mode).  Returns the mode
// and whether the current kernels use it for a 64 -> 64 conv: e.g. "auto:1".
std::string cpu_winograd(std::string request) {
  if (request == "off") g_wino.store(0);
  else if (request == "auto") g_wino.store(1);
  else if (request == "on") g_wino.store(2);
  else TORCH_CHECK(request.empty(), "mzsr_fast cpu: cpu_winograd takes '', 'off', 'auto' or 'on', got '", request, "'");
  static const char* names[] = {"off", "auto", "on"};
  return std::string(names[wino_mode()]) + (use_wino(64, 64) ? ":1" : ":0");
}

void cpu_release_workspace() {
  Arena& a = t_arena;
  std::free(a.p);
  a.p = nullptr;
  a.cap = 0;
  a.used = 0;
}

}  // namespace mzsr_cpu

TORCH_LIBRARY_FRAGMENT(mzsr_fast, m) {
  // whole-net forward x + net(x), NHWC; params [w0, b0, ..., w7, b7]
  m.def("net_forward(Tensor[] params, Tensor x, str precision=\"fp32\") -> Tensor");
  // loss and gradients [gw0, gb0, ...] of the L1 loss of x + net(x) vs target, no update
  m.def("net_grads(Tensor[] params, Tensor x, Tensor target, str precision=\"fp32\") -> (Tensor, Tensor[])");
  // adapt_step with a precision: "fp32" (= adapt_step) or "bf16" (bf16 operands and fp32
  // accumulation in the forward, input-gradient and weight-gradient convs of layers 1..7;
  // layer 0, the loss, the master weights and the update stay fp32)
  m.def("adapt_step_prec(Tensor(a!)[] params, Tensor x, Tensor target, Tensor lr, str precision) -> Tensor");
  // does this CPU run precision="bf16" (AVX512_BF16)?
  m.def("cpu_has_bf16() -> bool", &mzsr_cpu::cpu_has_bf16);
  // CPU kernel variant: "" queries, "avx512" / "avx2" / "scalar" / "best" selects
  m.def("cpu_isa(str request) -> str", &mzsr_cpu::cpu_isa);
  // Winograd F(2x2,3x3) for the wide layers: "" queries, "off" / "auto" / "on" sets;
  // returns "<mode>:<1 if a 64 -> 64 conv uses it now>"
  m.def("cpu_winograd(str request) -> str", &mzsr_cpu::cpu_winograd);
  // number of times a per-thread arena grew (allocation accounting for tests)
  m.def("cpu_arena_allocs() -> int", &mzsr_cpu::cpu_arena_allocs);
  // frees this thread's arena (the next net call allocates it again)
  m.def("cpu_release_workspace() -> ()", &mzsr_cpu::cpu_release_workspace);
}

TORCH_LIBRARY_IMPL(mzsr_fast, CPU, m) {
  m.impl("conv3x3_fwd", &mzsr_cpu::conv3x3_fwd);
  m.impl("conv3x3_dgrad", &mzsr_cpu::conv3x3_dgrad);
  m.impl("conv3x3_wgrad", &mzsr_cpu::conv3x3_wgrad);
  m.impl("l1_loss_grad", &mzsr_cpu::l1_loss_grad);
  m.impl("sgd_update_", &mzsr_cpu::sgd_update_);
  m.impl("adapt_step", &mzsr_cpu::adapt_step);
  m.impl("net_forward", &mzsr_cpu::net_forward);
  m.impl("net_grads", &mzsr_cpu::net_grads);
  m.impl("adapt_step_prec", &mzsr_cpu::adapt_step_prec);
}
