// Kernel variant 2 of the NHWC 3x3 conv (forward, input gradient, weight gradient), the
// Triton path's structure in CUDA (same semantics and epilogue as conv3x3_simt.cu):
//
//  * halo (bf16 tensor cores, Cin == 64, Cout % 64 == 0): a block owns an 8 x 16 pixel
//    tile of one image and 64 output channels.  The tile's (8+2) x (16+2) x 64 input halo
//    is read from global memory once, converted to bf16 into shared memory, and the nine
//    taps are nine K = 64 GEMM steps on shifted views of it (a 16-pixel row segment of
//    the halo is a WMMA A fragment, leading dimension = the padded channel stride).  The
//    variant-0 kernel (conv3x3_tc.cu) instead reloads and reconverts the input from global
//    memory for every tap and 16-channel step (36 K steps with a __syncthreads each).  Only
//    one tap of weights (64 x 64, read from a bf16 copy of the packed weights) is in
//    shared memory at a time; the next tap's weights are loaded into registers while the
//    current tap computes.
//  * thin (exact fp32 FFMA, any precision): the 3-channel layers.  thin-out (Cout <= 4,
//    Cin % 4 == 0, Cin <= 128): four threads per pixel each sum a quarter of the channels
//    (float4 loads, weights in shared memory) and one adds the four in a fixed order;
//    thin-in (Cin <= 4, Cout % 4 == 0, Cout <= 128): one thread per pixel and 4 output
//    channels, 8 pixels per thread.  Both replace the BK = 16 tiled GEMM of
//    conv3x3_simt.cu, whose K loop is latency bound for these shapes.
//  * wgrad halo (bf16, Cin == Cout == 64): weight-gradient partials over whole 8 x 16
//    tiles, the three taps of a kernel row per block sharing the staged gy tile; wgrad
//    thin (exact fp32) for the 3-channel layers (below).
//
// Every kernel here also runs with Conv3x3Params::act16 = 1 (kernel variant 3, the
// whole-net ops of the binding in bf16): the wide (64-channel) tensors are stored as bf16,
// the 3-channel ones as fp32, as the Triton path stores its activations.  The halo
// staging then copies 16-byte chunks of 8 channels as they are (no conversion) and every
// 64-channel activation / gradient moves half the bytes: at 256^2 one 64-channel tensor is
// 16.8 MB in fp32, and a step reads and writes about 40 of them.
//
// Written without a GPU (2026-11-26) and tested on the CPU emulator (csrc/cuda/emu) only;
// the performance choices here are reasoned, not measured.  Selected by the "bf16:2" /
// "tf32:2" / "fp32:2" / "bf16:3" precision strings (MZSR_FAST_CUDA_VARIANT=2 or 3 for the
// cuda backend) so the GPU check compares them with variant 0 before one becomes the default.
#include "cuda_compat.cuh"
#include "tc_common.cuh"

namespace mzsr {

// ---------------------------------------------------------------------------- halo (bf16)
constexpr int kHaloTH = 8, kHaloTW = 16;             // output tile: 8 rows x 16 columns
constexpr int kHaloRows = kHaloTH + 2, kHaloCols = kHaloTW + 2;
constexpr int kHaloC = 64;                           // input channels held (Cin == 64)
constexpr int kHaloCP = 80;                          // padded channel stride (elements):
// 80 bf16 = 160 bytes, a multiple of 32 so that every pixel of the halo is a legal WMMA
// fragment start (256-bit alignment), and 40 words so that the 8 rows of an ldmatrix
// phase fall on 4 bank groups (2-way conflicts; a stride of 64 would be 8-way).
constexpr int kHaloBN = 64;                          // output channels per block
constexpr int kHaloWLD = kHaloBN + 16;               // weight tile row stride (elements), same reasoning
constexpr int kHaloThreads = 128;                    // 4 warps, 2 x 2: warp tile 4 rows x 32 channels
constexpr int kHaloLDC = kHaloBN + 4;                // fp32 epilogue staging stride

struct HaloSmem {
  static constexpr int HALO_ELEMS = kHaloRows * kHaloCols * kHaloCP;  // 14400 bf16 = 28800 B
  static constexpr int W_ELEMS = kHaloC * kHaloWLD;                   // 5120 bf16 = 10240 B
  static constexpr int OPER_BYTES = (HALO_ELEMS + W_ELEMS) * 2;
  static constexpr int C_BYTES = kHaloTH * kHaloTW * kHaloLDC * 4;    // 34816 B
  static constexpr int BYTES = OPER_BYTES > C_BYTES ? OPER_BYTES : C_BYTES;
  static_assert((HALO_ELEMS * 2) % 32 == 0, "weight tile must start 256-bit aligned");
  static_assert(BYTES <= 48 * 1024, "static shared memory limit");
};

// Stage npix pixels of 64 channels of an NHWC tensor (fp32, or bf16 with act16) into bf16
// shared-memory rows of stride kHaloCP: src(pix) = the element offset of pixel pix in x, or
// -1 for zero padding.  fp32: float4 loads converted to bf16; bf16: 16-byte chunks of 8
// channels copied as they are.
template <int kThreads, typename TW, typename Src>
__device__ __forceinline__ void stage_pixels64(const TW* x, __nv_bfloat16* dst, int npix, Src src) {
  if constexpr (sizeof(TW) == 4) {
    staged_copy<kThreads, 6>(
        npix * 16,
        [&](int e) {
          const long long o = src(e / 16);
          return o >= 0 ? ldg4(x + o + (e % 16) * 4) : zero4();
        },
        [&](int e, float4 v) { store4<__nv_bfloat16>(dst + (e / 16) * kHaloCP + (e % 16) * 4, v); });
  } else {
    staged_copy<kThreads, 6>(
        npix * 8,
        [&](int e) {
          const long long o = src(e / 8);
          return o >= 0 ? *reinterpret_cast<const uint4*>(x + o + (e % 8) * 8) : make_uint4(0u, 0u, 0u, 0u);
        },
        [&](int e, uint4 v) { *reinterpret_cast<uint4*>(dst + (e / 8) * kHaloCP + (e % 8) * 8) = v; });
  }
}

template <typename TW>
__device__ __forceinline__ void halo_epilogue(const Conv3x3Params& p, const float* Cs, int n, int h0, int w0,
                                              int n0) {
  const int tid = threadIdx.x;
  const int c4 = tid % (kHaloBN / 4);
  const int co = n0 + c4 * 4;
  constexpr int kStride = kHaloThreads / (kHaloBN / 4);  // 8 pixels per pass
  for (int m = tid / (kHaloBN / 4); m < kHaloTH * kHaloTW; m += kStride) {
    const int h = h0 + m / kHaloTW, w = w0 + m % kHaloTW;
    if (h >= p.H || w >= p.W) continue;
    const long long o = ((static_cast<long long>(n) * p.H + h) * p.W + w) * p.Cout + co;
    float v[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) v[q] = Cs[m * kHaloLDC + c4 * 4 + q];
    conv_epilogue_store4<TW>(p, o, co, v);
  }
}

// TW: storage of x / y / mask / residual (float, or bf16 with act16)
template <typename TW>
__device__ __forceinline__ void conv3x3_halo_body(const Conv3x3Params& p) {
  using T = __nv_bfloat16;
  using S = HaloSmem;
  __shared__ __align__(128) unsigned char smem[S::BYTES];
  T* halo = reinterpret_cast<T*>(smem);
  T* Ws = halo + S::HALO_ELEMS;
  float* Cs = reinterpret_cast<float*>(smem);

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int wm = warp / 2, wn = warp % 2;  // warp rows wm*4 .. wm*4+3, channels wn*32 .. +31
  const int tiles_w = (p.W + kHaloTW - 1) / kHaloTW;
  const int tiles_h = (p.H + kHaloTH - 1) / kHaloTH;
  const int tile = blockIdx.x;
  const int n = tile / (tiles_w * tiles_h);
  const int rem = tile - n * tiles_w * tiles_h;
  const int h0 = (rem / tiles_w) * kHaloTH, w0 = (rem % tiles_w) * kHaloTW;
  const int n0 = blockIdx.y * kHaloBN;

  // ---- halo: rows h0-1 .. h0+8, columns w0-1 .. w0+16, 64 channels; zero outside the image
  stage_pixels64<kHaloThreads>(reinterpret_cast<const TW*>(p.x), halo, kHaloRows * kHaloCols, [&](int pix) {
    const int h = h0 - 1 + pix / kHaloCols, w = w0 - 1 + pix % kHaloCols;
    return h >= 0 && h < p.H && w >= 0 && w < p.W ? ((static_cast<long long>(n) * p.H + h) * p.W + w) * kHaloC : -1LL;
  });

  // ---- weights of one tap from the bf16 packing: Ws[ci][co] = wpack16[tap * 64 + ci, n0 + co];
  // 4 x 16 bytes (8 bf16) per thread.  Reading bf16 halves the L2 traffic of the weights,
  // which every block re-reads (9 x 64 x 64 x 2 = 72 KB per block, 512 blocks at 256^2).
  constexpr int kWR = kHaloC * kHaloBN / 8 / kHaloThreads;
  uint4 rw[kWR];
  auto load_w = [&](int tap) {
#pragma unroll
    for (int r = 0; r < kWR; ++r) {
      const int e = tid + kHaloThreads * r;
      const int ci = e / (kHaloBN / 8), c8 = e % (kHaloBN / 8);
      rw[r] = *reinterpret_cast<const uint4*>(p.wpack16 + (static_cast<long long>(tap) * kHaloC + ci) * p.Cout +
                                              n0 + c8 * 8);
    }
  };
  auto store_w = [&]() {
#pragma unroll
    for (int r = 0; r < kWR; ++r) {
      const int e = tid + kHaloThreads * r;
      const int ci = e / (kHaloBN / 8), c8 = e % (kHaloBN / 8);
      *reinterpret_cast<uint4*>(Ws + ci * kHaloWLD + c8 * 8) = rw[r];
    }
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  load_w(0);
  store_w();
  __syncthreads();
  for (int tap = 0; tap < 9; ++tap) {
    if (tap + 1 < 9) load_w(tap + 1);  // in flight during this tap's MMAs
    const int kh = tap / 3, kw = tap % 3;
    // not unrolled: unrolling hoists the fragment loads of all four K steps and spills at
    // the register cap of kHaloMinBlocks blocks/SM (ptxas, sm_80/sm_90)
#pragma unroll 1
    for (int kk = 0; kk < kHaloC; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[4];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb[2];
#pragma unroll
      for (int i = 0; i < 4; ++i)  // output row wm*4+i, columns 0..15 <- halo row +kh, columns +kw
        wmma::load_matrix_sync(fa[i], halo + ((wm * 4 + i + kh) * kHaloCols + kw) * kHaloCP + kk, kHaloCP);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], Ws + kk * kHaloWLD + wn * 32 + j * 16, kHaloWLD);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();  // every warp is done with Ws (and, after the last tap, with the halo)
    if (tap + 1 < 9) {
      store_w();
      __syncthreads();
    }
  }

  // ---- epilogue through shared memory (the operand buffers are free now)
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + ((wm * 4 + i) * kHaloTW) * kHaloLDC + wn * 32 + j * 16, acc[i][j], kHaloLDC,
                              wmma::mem_row_major);
  __syncthreads();
  halo_epilogue<TW>(p, Cs, n, h0, w0, n0);
}

// sm_90: 4 blocks/SM (128 registers, ptxas fits the body without spills; 153 at 3/SM): at
// 256^2 the 512 tiles then run as one wave on an H100's 132 SMs (528 slots) instead of 1.29
// waves (396 slots), at 512^2 (the upscale) as 3.9 instead of 5.2.  Reasoned, not yet
// measured.  sm_80 stays at 3: at 128 registers ptxas spills 24 bytes there.  (The device
// passes alone read this; the host code launches kHaloThreads whatever the arch.)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
constexpr int kHaloMinBlocks = 3;
#else
constexpr int kHaloMinBlocks = 4;
#endif

template <typename TW>
__global__ void __launch_bounds__(kHaloThreads, kHaloMinBlocks) mzsr_conv3x3_fwd_halo_bf16_nhwc(Conv3x3Params p) {
  conv3x3_halo_body<TW>(p);
}

template <typename TW>
__global__ void __launch_bounds__(kHaloThreads, kHaloMinBlocks) mzsr_conv3x3_dgrad_halo_bf16_nhwc(Conv3x3Params p) {
  conv3x3_halo_body<TW>(p);
}

// ---------------------------------------------------------------------------- thin (fp32)
// The thin-out epilogue: the Cout (<= 4) channels of pixel pix, fp32, scalar (a pixel's
// row of 1-4 floats need not be 16-byte aligned).
__device__ __forceinline__ void thin_out_epilogue(const Conv3x3Params& p, long long pix, float (&v)[4]) {
  const long long o = pix * p.Cout;
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    if (q >= p.Cout) break;
    float a = v[q];
    if (p.bias) a += p.bias[q];
    if (p.relu) a = fmaxf(a, 0.f);
    if (p.mask) a = p.mask[o + q] > 0.f ? a : 0.f;
    if (p.residual) a += p.residual[o + q];
    p.y[o + q] = a;
  }
}

// thin-out: Cout <= 4, Cin % 4 == 0, Cin <= kThinMaxC.  4 threads per pixel (channel
// quarters, interleaved by float4 so that a pixel's 4 threads read adjacent 16 bytes),
// 64 pixels per block.
constexpr int kThinThreads = 256;
constexpr int kThinMaxC = kMzsrThinMaxWide;
constexpr int kThinOutPix = kThinThreads / 4;

// TX: storage of the (wide) input x; y / mask / residual (<= 4 channels) are fp32
template <typename TX>
__global__ void __launch_bounds__(kThinThreads) mzsr_conv3x3_thin_out_nhwc(Conv3x3Params p) {
  __shared__ __align__(16) float Ws[9 * kThinMaxC][4];  // [tap * Cin + ci][co], co padded to 4
  __shared__ float red[kThinThreads][4];
  const int tid = threadIdx.x;
  const int K = 9 * p.Cin;
  for (int e = tid; e < K * 4; e += kThinThreads) {
    const int k = e / 4, co = e % 4;
    Ws[k][co] = co < p.Cout ? p.wpack[static_cast<long long>(k) * p.Cout + co] : 0.f;
  }
  __syncthreads();
  const int P = p.N * p.H * p.W;
  const int quarter = tid % 4;
  const PixelPos q = pixel_pos(blockIdx.x * kThinOutPix + tid / 4, P, p.H, p.W);
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  const int C4 = p.Cin / 4;
  for (int tap = 0; tap < 9; ++tap) {
    const int nb = neighbour(q, tap / 3 - 1, tap % 3 - 1, p.H, p.W);
    if (nb < 0) continue;
    const TX* src = reinterpret_cast<const TX*>(p.x) + static_cast<long long>(nb) * p.Cin;
    for (int c4 = quarter; c4 < C4; c4 += 4) {
      const float4 v = ld4(src + c4 * 4);
      const float xv[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const float4 wv = *reinterpret_cast<const float4*>(Ws[tap * p.Cin + c4 * 4 + u]);
        acc[0] = fmaf(xv[u], wv.x, acc[0]);
        acc[1] = fmaf(xv[u], wv.y, acc[1]);
        acc[2] = fmaf(xv[u], wv.z, acc[2]);
        acc[3] = fmaf(xv[u], wv.w, acc[3]);
      }
    }
  }
#pragma unroll
  for (int c = 0; c < 4; ++c) red[tid][c] = acc[c];
  __syncthreads();
  if (quarter == 0 && q.valid) {
    float v[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) v[c] = ((red[tid][c] + red[tid + 1][c]) + red[tid + 2][c]) + red[tid + 3][c];
    thin_out_epilogue(p, q.pix, v);
  }
}

// thin-in: Cin <= 4, Cout % 4 == 0, Cout <= kThinMaxC.  Thread = 4 output channels of
// kThinInPixPerThread pixels; Cout / 4 threads share a pixel (their input loads broadcast).
// TY: storage of the (wide) y / mask / residual; x (<= 4 channels) is fp32.
constexpr int kThinInPixPerThread = 8;

template <typename TY>
__global__ void __launch_bounds__(kThinThreads) mzsr_conv3x3_thin_in_nhwc(Conv3x3Params p) {
  __shared__ __align__(16) float Ws[9 * 4][kThinMaxC];  // [tap * Cin + ci][co]
  const int tid = threadIdx.x;
  const int K = 9 * p.Cin;
  for (int e = tid; e < K * p.Cout; e += kThinThreads) Ws[e / p.Cout][e % p.Cout] = p.wpack[e];
  __syncthreads();
  const int P = p.N * p.H * p.W;
  const int G = p.Cout / 4;                 // threads per pixel
  const int pix_per_pass = kThinThreads / G;  // pixels per block pass
  const int c4 = tid % G;
  if (tid >= G * pix_per_pass) return;  // no __syncthreads below
  const int base = blockIdx.x * pix_per_pass * kThinInPixPerThread;
  for (int r = 0; r < kThinInPixPerThread; ++r) {
    const PixelPos q = pixel_pos(base + r * pix_per_pass + tid / G, P, p.H, p.W);
    if (!q.valid) continue;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int tap = 0; tap < 9; ++tap) {
      const int nb = neighbour(q, tap / 3 - 1, tap % 3 - 1, p.H, p.W);
      if (nb < 0) continue;
      for (int ci = 0; ci < p.Cin; ++ci) {
        const float xv = p.x[static_cast<long long>(nb) * p.Cin + ci];
        const float4 wv = *reinterpret_cast<const float4*>(&Ws[tap * p.Cin + ci][c4 * 4]);
        acc[0] = fmaf(xv, wv.x, acc[0]);
        acc[1] = fmaf(xv, wv.y, acc[1]);
        acc[2] = fmaf(xv, wv.z, acc[2]);
        acc[3] = fmaf(xv, wv.w, acc[3]);
      }
    }
    conv_epilogue_store4<TY>(p, static_cast<long long>(q.pix) * p.Cout + c4 * 4, c4 * 4, acc);
  }
}

// ------------------------------------------------------------------ weight gradient (bf16)
// Partial sums of conv3x3_wgrad_params.h with the halo layout: block (chunk, kh) walks the
// chunk's 8 x 16 pixel tiles; per tile it stages the 8 x 18 x 64 input rows of kernel row
// kh and the 128 x 64 gy tile in shared memory once (bf16), then for each of the 8 output
// rows (K = 16 pixels) reuses the gy fragments for the 3 taps (kh, 0..2).  64 x 64 per tap
// over 4 warps (2 x 2, 32 x 32 each): 12 accumulator fragments per warp held across all the
// chunk's tiles, written once (the variant-0 kernel reloads the three shifted input tiles
// from global memory every 16 pixels).  At most kMzsrWgradHaloMaxChunks chunks of whole
// tiles, each a partial the reduction reads.
constexpr int kGyLD = 64 + 16;        // gy tile row stride (elements), 160 bytes as kHaloCP

struct WgradHaloSmem {
  static constexpr int X_ELEMS = kHaloTH * kHaloCols * kHaloCP;  // 8 x 18 x 80 bf16 = 23040 B
  static constexpr int G_ELEMS = kHaloTH * kHaloTW * kGyLD;      // 128 x 80 bf16 = 20480 B
  static constexpr int BYTES = (X_ELEMS + G_ELEMS) * 2;
  static_assert((X_ELEMS * 2) % 32 == 0 && BYTES <= 48 * 1024, "alignment / static shared memory");
};

// TW: storage of x and gy (float, or bf16 with act16)
template <typename TW>
__global__ void __launch_bounds__(kHaloThreads, 3) mzsr_conv3x3_wgrad_halo_bf16_nhwc(Conv3x3WgradParams p) {
  using T = __nv_bfloat16;
  using S = WgradHaloSmem;
  __shared__ __align__(128) unsigned char smem[S::BYTES];
  T* xs = reinterpret_cast<T*>(smem);
  T* gs = xs + S::X_ELEMS;

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int wm = warp / 2, wn = warp % 2;  // ci rows wm*32.., co columns wn*32..
  const int chunk = blockIdx.x, kh = blockIdx.y;
  const int tiles_w = (p.W + kHaloTW - 1) / kHaloTW;
  const int tiles_h = (p.H + kHaloTH - 1) / kHaloTH;
  const int tiles = p.N * tiles_w * tiles_h;
  const int tpc = (tiles + p.num_chunks - 1) / p.num_chunks;
  const int t0 = chunk * tpc, t1 = min(t0 + tpc, tiles);

  const bool do_bias = kh == 1;  // one of the three blocks of a chunk sums gy (fp32, before rounding)
  const int c4 = tid % 16;       // this thread's gy column (4 channels), pixels tid / 16 + 8 r
  float bsum[4] = {0.f, 0.f, 0.f, 0.f};

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[3][2][2];
  zero_fragments(acc);

  for (int t = t0; t < t1; ++t) {
    const int n = t / (tiles_w * tiles_h);
    const int rem = t - n * tiles_w * tiles_h;
    const int h0 = (rem / tiles_w) * kHaloTH, w0 = (rem % tiles_w) * kHaloTW;
    __syncthreads();  // the previous tile's fragments are consumed
    stage_pixels64<kHaloThreads>(reinterpret_cast<const TW*>(p.x), xs, kHaloTH * kHaloCols, [&](int pix) {
      const int h = h0 + pix / kHaloCols + kh - 1, w = w0 - 1 + pix % kHaloCols;
      return h >= 0 && h < p.H && w >= 0 && w < p.W ? ((static_cast<long long>(n) * p.H + h) * p.W + w) * 64 : -1LL;
    });
#pragma unroll 4
    for (int r = 0; r < kHaloTH * kHaloTW / (kHaloThreads / 16); ++r) {
      const int pix = tid / 16 + (kHaloThreads / 16) * r;
      const int h = h0 + pix / kHaloTW, w = w0 + pix % kHaloTW;
      float4 v = zero4();
      if (h < p.H && w < p.W)
        v = ld4(reinterpret_cast<const TW*>(p.gy) + ((static_cast<long long>(n) * p.H + h) * p.W + w) * 64 + c4 * 4);
      if (do_bias) {
        bsum[0] += v.x;
        bsum[1] += v.y;
        bsum[2] += v.z;
        bsum[3] += v.w;
      }
      store4<T>(gs + pix * kGyLD + c4 * 4, v);
    }
    __syncthreads();
#pragma unroll 1
    for (int r = 0; r < kHaloTH; ++r) {  // K step: the 16 pixels of output row r
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb[2];
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], gs + r * kHaloTW * kGyLD + wn * 32 + j * 16, kGyLD);
#pragma unroll
      for (int kw = 0; kw < 3; ++kw) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::col_major> fa[2];  // A[ci][pixel]
#pragma unroll
        for (int i = 0; i < 2; ++i)
          wmma::load_matrix_sync(fa[i], xs + (r * kHaloCols + kw) * kHaloCP + wm * 32 + i * 16, kHaloCP);
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[kw][i][j], fa[i], fb[j], acc[kw][i][j]);
      }
    }
  }

  if (do_bias) {  // block-uniform
    __syncthreads();
    float* red = reinterpret_cast<float*>(smem);  // [8 pixel streams][64 co]
#pragma unroll
    for (int q = 0; q < 4; ++q) red[(tid / 16) * 64 + c4 * 4 + q] = bsum[q];
    __syncthreads();
    if (tid < 64) {
      float b = 0.f;
      for (int s = 0; s < kHaloThreads / 16; ++s) b += red[s * 64 + tid];
      p.partial_b[static_cast<long long>(chunk) * 64 + tid] = b;
    }
  }
#pragma unroll
  for (int kw = 0; kw < 3; ++kw) {
    float* out = p.partial_w + (static_cast<long long>(chunk) * 9 + kh * 3 + kw) * 64 * 64;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j)
        wmma::store_matrix_sync(out + (wm * 32 + i * 16) * 64 + wn * 32 + j * 16, acc[kw][i][j], 64,
                                wmma::mem_row_major);
  }
}


// ------------------------------------------------------------------ weight gradient (thin, fp32)
// The 3-channel layers' weight gradients (9 x 3 x 64 = 1728 values over all pixels),
// exact fp32: block = one chunk of pixels, thread = (tap, 4 channels of the wide side),
// accumulating its 4 x (<= 4) products over the chunk's pixels in order; the thread of the
// centre tap also sums gy for the bias.  Same partial layout as the other wgrad kernels.
// THIN_IN: Cin <= 4 (x thin, gy wide: Cout % 4 == 0); else Cout <= 4 (x wide: Cin % 4 == 0).
// pixels per chunk: 512 chunks (blocks of 144 threads) at 256^2, ~4 blocks per SM of an
// H100; 256 gave 2 (9 warps per SM for a loop of dependent loads).  Reasoned, not measured.
constexpr int kWgradThinChunk = 128;

// TW: storage of the wide tensor (gy for THIN_IN, else x); the thin one is fp32.
template <bool THIN_IN, typename TW>
__global__ void __launch_bounds__(9 * kThinMaxC / 4) mzsr_conv3x3_wgrad_thin_nhwc(Conv3x3WgradParams p) {
  const int P = p.N * p.H * p.W;
  const int wide = THIN_IN ? p.Cout : p.Cin;
  const int thin = THIN_IN ? p.Cin : p.Cout;
  const int G = wide / 4;
  const int tid = threadIdx.x;
  const int tap = tid / G, w4 = tid % G;
  const int dh = tap / 3 - 1, dw = tap % 3 - 1;
  const int chunk = blockIdx.x;
  const int pstart = chunk * p.chunk_pixels;
  const int pend = min(pstart + p.chunk_pixels, P);
  float acc[4][4];  // [wide channel of the 4][thin channel]
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int b = 0; b < 4; ++b) acc[a][b] = 0.f;
  float bsum[4] = {0.f, 0.f, 0.f, 0.f};
  const bool centre = tap == 4;
  // kU pixels per iteration, their loads issued before any of their FMAs: a thread walks
  // its chunk alone, so one pixel at a time waited one memory latency per pixel.  Padding
  // and the chunk's tail load zeros instead of branching (fma(w, 0, acc) == acc); the
  // products are still summed in pixel order (a chunk's partial is what the one-pixel loop
  // gave, bit for bit).
  constexpr int kU = 4;
  for (int p0 = pstart; p0 < pend; p0 += kU) {
    float wv[kU][4], tv[kU][4];
#pragma unroll
    for (int j = 0; j < kU; ++j) {
      const int pix = p0 + j;
      const bool ok = pix < pend;
      const PixelPos q = pixel_pos(ok ? pix : pstart, P, p.H, p.W);
      const int nb = ok ? neighbour(q, dh, dw, p.H, p.W) : -1;  // x[p + tap] pairs with gy[p]
      float4 w4v = zero4();
#pragma unroll
      for (int b = 0; b < 4; ++b) tv[j][b] = 0.f;
      if (THIN_IN) {
        if (ok) w4v = ld4(reinterpret_cast<const TW*>(p.gy) + static_cast<long long>(pix) * p.Cout + w4 * 4);
        if (nb >= 0) {
#pragma unroll
          for (int b = 0; b < 4; ++b)
            if (b < thin) tv[j][b] = p.x[static_cast<long long>(nb) * p.Cin + b];
        }
      } else {
        if (ok) {
#pragma unroll
          for (int b = 0; b < 4; ++b)
            if (b < thin) tv[j][b] = p.gy[static_cast<long long>(pix) * p.Cout + b];
        }
        if (nb >= 0) w4v = ld4(reinterpret_cast<const TW*>(p.x) + static_cast<long long>(nb) * p.Cin + w4 * 4);
      }
      wv[j][0] = w4v.x;
      wv[j][1] = w4v.y;
      wv[j][2] = w4v.z;
      wv[j][3] = w4v.w;
    }
#pragma unroll
    for (int j = 0; j < kU; ++j) {
      if (centre) {  // bias: the sum of gy (the wide side for THIN_IN, else the thin one)
        if (THIN_IN) {
#pragma unroll
          for (int a = 0; a < 4; ++a) bsum[a] += wv[j][a];
        } else if (w4 == 0) {
#pragma unroll
          for (int b = 0; b < 4; ++b) bsum[b] += tv[j][b];
        }
      }
#pragma unroll
      for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int b = 0; b < 4; ++b) acc[a][b] = fmaf(wv[j][a], tv[j][b], acc[a][b]);
    }
  }
  // partial_w[chunk, tap * Cin + ci, co]
  float* out = p.partial_w + static_cast<long long>(chunk) * 9 * p.Cin * p.Cout;
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      if (b >= thin) continue;
      const int ci = THIN_IN ? b : w4 * 4 + a;
      const int co = THIN_IN ? w4 * 4 + a : b;
      out[(tap * p.Cin + ci) * p.Cout + co] = acc[a][b];
    }
  if (centre) {
    float* pb = p.partial_b + static_cast<long long>(chunk) * p.Cout;
    if (THIN_IN) {
#pragma unroll
      for (int a = 0; a < 4; ++a) pb[w4 * 4 + a] = bsum[a];
    } else if (w4 == 0) {
#pragma unroll
      for (int b = 0; b < 4; ++b)
        if (b < thin) pb[b] = bsum[b];
    }
  }
}

// Launch the fp32- or the bf16-storage instance of a kernel, by p.act16.
template <typename P>
void launch_by_storage(void (*f32)(P), void (*b16)(P), dim3 grid, dim3 block, cudaStream_t stream, const P& p) {
  if (p.act16) {
    MZSR_LAUNCH(b16, grid, block, 0, stream)(p);
  } else {
    MZSR_LAUNCH(f32, grid, block, 0, stream)(p);
  }
}

}  // namespace mzsr

bool mzsr_conv3x3_halo_ok(const Conv3x3Params& p) {
  using mzsr::aligned16;
  return mzsr_conv3x3_halo_shape_ok(p.Cin, p.Cout) && p.wpack16 != nullptr && aligned16(p.x) &&
         aligned16(p.wpack16) && aligned16(p.y) && aligned16(p.mask) && aligned16(p.residual);
}

void mzsr_launch_conv3x3_halo_bf16(const Conv3x3Params& p, Conv3x3Op op, cudaStream_t stream) {
  using namespace mzsr;
  const int tiles = p.N * ceil_div(p.H, kHaloTH) * ceil_div(p.W, kHaloTW);
  const dim3 grid(tiles, p.Cout / kHaloBN), block(kHaloThreads);
  if (op == Conv3x3Op::kFwd)
    launch_by_storage(mzsr_conv3x3_fwd_halo_bf16_nhwc<float>, mzsr_conv3x3_fwd_halo_bf16_nhwc<__nv_bfloat16>, grid,
                      block, stream, p);
  else
    launch_by_storage(mzsr_conv3x3_dgrad_halo_bf16_nhwc<float>, mzsr_conv3x3_dgrad_halo_bf16_nhwc<__nv_bfloat16>, grid,
                      block, stream, p);
}

bool mzsr_conv3x3_thin_ok(const Conv3x3Params& p) {
  using mzsr::aligned16;
  if (!mzsr_conv3x3_thin_shape_ok(p.Cin, p.Cout)) return false;
  if (p.Cout <= 4) return aligned16(p.x) && aligned16(p.wpack);
  return aligned16(p.wpack) && aligned16(p.y) && aligned16(p.mask) && aligned16(p.residual);  // vector epilogue
}

void mzsr_launch_conv3x3_thin(const Conv3x3Params& p, cudaStream_t stream) {
  using namespace mzsr;
  const long long P = static_cast<long long>(p.N) * p.H * p.W;
  const dim3 block(kThinThreads);
  if (p.Cout <= 4) {
    launch_by_storage(mzsr_conv3x3_thin_out_nhwc<float>, mzsr_conv3x3_thin_out_nhwc<__nv_bfloat16>,
                      dim3(ceil_div(P, kThinOutPix)), block, stream, p);
  } else {
    const int per_block = (kThinThreads / (p.Cout / 4)) * kThinInPixPerThread;
    launch_by_storage(mzsr_conv3x3_thin_in_nhwc<float>, mzsr_conv3x3_thin_in_nhwc<__nv_bfloat16>,
                      dim3(ceil_div(P, per_block)), block, stream, p);
  }
}

bool mzsr_conv3x3_wgrad_halo_ok(const Conv3x3WgradParams& p) {
  using mzsr::aligned16;
  return mzsr_conv3x3_wgrad_halo_shape_ok(p.Cin, p.Cout) && aligned16(p.x) && aligned16(p.gy) &&
         aligned16(p.partial_w);
}

int mzsr_wgrad_halo_chunks(int N, int H, int W, int max_chunks) {
  const long long tiles =
      static_cast<long long>(N) * mzsr::ceil_div(H, mzsr::kHaloTH) * mzsr::ceil_div(W, mzsr::kHaloTW);
  if (max_chunks < 1) max_chunks = 1;
  return static_cast<int>(tiles < max_chunks ? tiles : max_chunks);
}

void mzsr_launch_conv3x3_wgrad_halo_bf16(const Conv3x3WgradParams& p, cudaStream_t stream) {
  using namespace mzsr;
  launch_by_storage(mzsr_conv3x3_wgrad_halo_bf16_nhwc<float>, mzsr_conv3x3_wgrad_halo_bf16_nhwc<__nv_bfloat16>,
                    dim3(p.num_chunks, 3), dim3(kHaloThreads), stream, p);
}

bool mzsr_conv3x3_wgrad_thin_ok(const Conv3x3WgradParams& p) {
  using mzsr::aligned16;
  if (!mzsr_conv3x3_thin_shape_ok(p.Cin, p.Cout)) return false;
  return p.Cin <= 4 ? aligned16(p.gy) : aligned16(p.x);
}

int mzsr_wgrad_thin_chunk_pixels() { return mzsr::kWgradThinChunk; }

void mzsr_launch_conv3x3_wgrad_thin(const Conv3x3WgradParams& p, cudaStream_t stream) {
  using namespace mzsr;
  const int wide = p.Cin <= 4 ? p.Cout : p.Cin;
  const dim3 block(9 * wide / 4), grid(p.num_chunks);
  if (p.Cin <= 4)
    launch_by_storage(mzsr_conv3x3_wgrad_thin_nhwc<true, float>, mzsr_conv3x3_wgrad_thin_nhwc<true, __nv_bfloat16>,
                      grid, block, stream, p);
  else
    launch_by_storage(mzsr_conv3x3_wgrad_thin_nhwc<false, float>, mzsr_conv3x3_wgrad_thin_nhwc<false, __nv_bfloat16>,
                      grid, block, stream, p);
}
