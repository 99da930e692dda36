// Deterministic weight and bias gradient of the NHWC 3x3 SAME conv (see
// conv3x3_wgrad_params.h): per-chunk partial sums (SIMT fp32 or tensor-core kernel), a
// bias partial kernel, then one fixed-order reduction over the chunks.  No atomics.
//
// GEMM view per chunk: C[m, co] = sum_{p in chunk} A[m, p] * gy[p, co], with
// m = tap * Cin + ci (M = 9*Cin) and A[m, p] = x[p shifted by tap, ci] (0 outside).
#include "cuda_compat.cuh"
#include "simt_tile.cuh"
#include "tc_common.cuh"

namespace mzsr {

// ============================ SIMT fp32 partial (any Cin / Cout) ============================
constexpr int kSimtThreads = 256;

template <int BM, int BN, int TM, int TN, int BK>
__global__ void __launch_bounds__(kSimtThreads) mzsr_conv3x3_wgrad_fp32_nhwc(Conv3x3WgradParams p) {
  constexpr int TX = BM / TM;
  static_assert(TX * (BN / TN) == kSimtThreads, "tile must use 256 threads");
  static_assert(kSimtThreads % BM == 0, "each thread loads a fixed row m");
  static_assert(kMzsrWgradChunkAlign % BK == 0, "chunks are whole K tiles");
  constexpr int kPixPerPass = kSimtThreads / BM;
  constexpr int kPasses = BK / kPixPerPass;
  constexpr int LDA = BM + 4, LDB = BN + 4;
  __shared__ __align__(16) float As[BK][LDA];
  __shared__ __align__(16) float Bs[BK][LDB];
  __shared__ int s_pix[BK], s_h[BK], s_w[BK], s_valid[BK];

  const int tid = threadIdx.x;
  const int P = p.N * p.H * p.W;
  const int M = 9 * p.Cin;
  const int chunk = blockIdx.x;
  const int m0 = blockIdx.y * BM;
  const int n0 = blockIdx.z * BN;
  const int pstart = chunk * p.chunk_pixels;
  const int pend = min(pstart + p.chunk_pixels, P);

  // A loader: fixed row m (a (tap, ci) pair), pixels tid / BM + kPixPerPass * r
  const int a_m = tid % BM;
  const int mg = m0 + a_m;
  const bool a_mvalid = mg < M;
  const int a_tap = a_mvalid ? mg / p.Cin : 0;
  const int a_ci = mg - a_tap * p.Cin;
  const int dh = a_tap / 3 - 1, dw = a_tap % 3 - 1;

  const int tx = tid % TX, ty = tid / TX;
  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  for (int k0 = 0; k0 < p.chunk_pixels; k0 += BK) {
    if (tid < BK) {  // positions of this K tile's pixels
      const int pix = pstart + k0 + tid;
      const PixelPos q = pixel_pos(pix, pend, p.H, p.W);
      s_pix[tid] = pix;
      s_h[tid] = q.h;
      s_w[tid] = q.w;
      s_valid[tid] = q.valid;
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kPasses; ++r) {
      const int kk = tid / BM + kPixPerPass * r;
      PixelPos q;
      q.pix = s_pix[kk];
      q.h = s_h[kk];
      q.w = s_w[kk];
      q.valid = s_valid[kk] != 0 && a_mvalid;
      const int nb = neighbour(q, dh, dw, p.H, p.W);
      As[kk][a_m] = nb >= 0 ? p.x[static_cast<long long>(nb) * p.Cin + a_ci] : 0.f;
    }
    for (int e = tid; e < BK * BN; e += kSimtThreads) {
      const int n = e % BN, kk = e / BN;
      const int co = n0 + n;
      Bs[kk][n] = (s_valid[kk] && co < p.Cout) ? p.gy[static_cast<long long>(s_pix[kk]) * p.Cout + co] : 0.f;
    }
    __syncthreads();
    simt_tile_fma<BM, BN, TM, TN, BK, LDA, LDB>(As, Bs, acc, tx, ty);
    __syncthreads();
  }

  float* out = p.partial_w + static_cast<long long>(chunk) * M * p.Cout;
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + tx * TM + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int co = n0 + ty * TN + j;
      if (co < p.Cout) out[static_cast<long long>(m) * p.Cout + co] = acc[i][j];
    }
  }
}

template <int BM, int BN, int TM, int TN, int BK>
void launch_wgrad_simt(const Conv3x3WgradParams& p, cudaStream_t stream) {
  const dim3 grid(p.num_chunks, ceil_div(9LL * p.Cin, BM), ceil_div(p.Cout, BN));
  auto k = mzsr_conv3x3_wgrad_fp32_nhwc<BM, BN, TM, TN, BK>;
  MZSR_LAUNCH(k, grid, dim3(kSimtThreads), 0, stream)(p);
}

// ============================ tensor-core partial (Cin, Cout % 64 == 0) ============================
// Block: one kernel row kh (blockIdx.y), i.e. the 3 taps (kh, 0..2), a 64 (ci) x 64 (co)
// output tile per tap (blockIdx.z), one pixel chunk (blockIdx.x).  K = the chunk's pixels
// in steps of 16.  Per step: one G tile Gs[p][co] (row-major B operand, shared by the 3
// taps) and 3 X tiles Xs[kw][p][ci] (x shifted by (kh-1, kw-1), read as the col-major A
// operand A[ci][p]).  Sharing G over 3 taps cuts its L2 re-reads 3x against one tap per
// block.  4 warps in 2 x 2, each 32 x 32 per tap (3 x 2 x 2 accumulator fragments).
// Also writes partial_b (the bias partials): no separate bias kernel on this path.
// Register-staged, double-buffered shared memory as the conv kernel.
constexpr int kTcThreads = 128;
constexpr int TBM = 64, TBN = 64, TBK = 16;
static_assert(kMzsrWgradChunkAlign % TBK == 0, "chunks are whole K steps");

template <typename T>
struct WgradTcSmem {
  static constexpr int LDX = TBM + TcTraits<T>::kPad;
  static constexpr int LDG = TBN + TcTraits<T>::kPad;
  static constexpr int X_ELEMS = TBK * LDX;  // one tap's X tile
  static constexpr int G_ELEMS = TBK * LDG;
  static constexpr int STAGE_BYTES = (3 * X_ELEMS + G_ELEMS) * static_cast<int>(sizeof(T));
  static constexpr int BYTES = 2 * STAGE_BYTES;
  static_assert((X_ELEMS * sizeof(T)) % 32 == 0 && STAGE_BYTES % 32 == 0, "WMMA needs 256-bit aligned tiles");
};

template <typename T>
__global__ void __launch_bounds__(kTcThreads) mzsr_conv3x3_wgrad_tc_nhwc(Conv3x3WgradParams p) {
  using S = WgradTcSmem<T>;
  using Tr = TcTraits<T>;
  constexpr int LDX = S::LDX, LDG = S::LDG;
  __shared__ __align__(128) unsigned char smem[S::BYTES];
  auto Xs = [&](int s, int kw) { return reinterpret_cast<T*>(smem + s * S::STAGE_BYTES) + kw * S::X_ELEMS; };
  auto Gs = [&](int s) { return reinterpret_cast<T*>(smem + s * S::STAGE_BYTES) + 3 * S::X_ELEMS; };

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int wm = warp / 2, wn = warp % 2;
  const int P = p.N * p.H * p.W;
  const int chunk = blockIdx.x;
  const int kh = blockIdx.y;
  const int ntiles = p.Cout / TBN;
  const int ci0 = (blockIdx.z / ntiles) * TBM;
  const int co0 = (blockIdx.z % ntiles) * TBN;
  const int dh = kh - 1;
  const int pstart = chunk * p.chunk_pixels;
  const int pend = min(pstart + p.chunk_pixels, P);
  const int T_STEPS = p.chunk_pixels / TBK;

  // loaders: 16 pixel rows x 16 float4 per tile; this thread: column c4, rows row + 8 r
  constexpr int R = TBK * 16 / kTcThreads;  // 2
  const int c4 = tid % 16, row = tid / 16;
  float4 rx[3][R], rg[R];
  // The bias gradient rides along in one block per (chunk, co tile): fp32 sums of the
  // gy values this thread loads (before any rounding to tf32/bf16), in pixel order.
  const bool do_bias = kh == 1 && blockIdx.z / ntiles == 0;
  float bsum[4] = {0.f, 0.f, 0.f, 0.f};
  auto load_tile = [&](int t) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const PixelPos q = pixel_pos(pstart + t * TBK + row + 8 * r, pend, p.H, p.W);
      rg[r] = q.valid ? ldg4(p.gy + static_cast<long long>(q.pix) * p.Cout + co0 + c4 * 4) : zero4();
      if (do_bias) {
        bsum[0] += rg[r].x;
        bsum[1] += rg[r].y;
        bsum[2] += rg[r].z;
        bsum[3] += rg[r].w;
      }
#pragma unroll
      for (int kw = 0; kw < 3; ++kw) {
        const int nb = neighbour(q, dh, kw - 1, p.H, p.W);
        rx[kw][r] = nb >= 0 ? ldg4(p.x + static_cast<long long>(nb) * p.Cin + ci0 + c4 * 4) : zero4();
      }
    }
  };
  auto store_tile = [&](int s) {
    T* gs = Gs(s);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      store4<T>(gs + (row + 8 * r) * LDG + c4 * 4, rg[r]);
#pragma unroll
      for (int kw = 0; kw < 3; ++kw) store4<T>(Xs(s, kw) + (row + 8 * r) * LDX + c4 * 4, rx[kw][r]);
    }
  };

  wmma::fragment<wmma::accumulator, 16, 16, Tr::kK, float> acc[3][2][2];
  zero_fragments(acc);

  load_tile(0);
  store_tile(0);
  __syncthreads();
  for (int t = 0; t < T_STEPS; ++t) {
    const int cur = t & 1;
    if (t + 1 < T_STEPS) load_tile(t + 1);
    const T* gs = Gs(cur);
#pragma unroll
    for (int kk = 0; kk < TBK; kk += Tr::kK) {
      wmma::fragment<wmma::matrix_b, 16, 16, Tr::kK, typename Tr::Prec, wmma::row_major> fb[2];
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], gs + kk * LDG + wn * 32 + j * 16, LDG);
#pragma unroll
      for (int kw = 0; kw < 3; ++kw) {
        const T* xs = Xs(cur, kw);
        wmma::fragment<wmma::matrix_a, 16, 16, Tr::kK, typename Tr::Prec, wmma::col_major> fa[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], xs + kk * LDX + wm * 32 + i * 16, LDX);
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[kw][i][j], fa[i], fb[j], acc[kw][i][j]);
      }
    }
    if (t + 1 < T_STEPS) store_tile(cur ^ 1);
    __syncthreads();
  }

  if (do_bias) {  // block-uniform: the syncs are safe; the operand buffers are free now
    float* red = reinterpret_cast<float*>(smem);  // [8 rows][64 co]
#pragma unroll
    for (int q = 0; q < 4; ++q) red[row * TBN + c4 * 4 + q] = bsum[q];
    __syncthreads();
    if (tid < TBN) {
      float b = 0.f;
      for (int rr = 0; rr < kTcThreads / 16; ++rr) b += red[rr * TBN + tid];
      p.partial_b[static_cast<long long>(chunk) * p.Cout + co0 + tid] = b;
    }
  }

  // partial_w[chunk, tap*Cin + ci, co]: 16 x 16 fragments straight to global (ld = Cout)
#pragma unroll
  for (int kw = 0; kw < 3; ++kw) {
    const int tap = kh * 3 + kw;
    float* out = p.partial_w + (static_cast<long long>(chunk) * 9 * p.Cin + tap * p.Cin + ci0) * p.Cout + co0;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j)
        wmma::store_matrix_sync(out + static_cast<long long>(wm * 32 + i * 16) * p.Cout + wn * 32 + j * 16,
                                acc[kw][i][j], p.Cout, wmma::mem_row_major);
  }
}

template <typename T>
void launch_wgrad_tc(const Conv3x3WgradParams& p, cudaStream_t stream) {
  const dim3 grid(p.num_chunks, 3, (p.Cin / TBM) * (p.Cout / TBN));
  auto k = mzsr_conv3x3_wgrad_tc_nhwc<T>;
  MZSR_LAUNCH(k, grid, dim3(kTcThreads), 0, stream)(p);
}

// ============================ bias partial and the reduction ============================
constexpr int kRedThreads = 256;

// s = sum_{c < n} src[c * stride] in increasing c, 8 independent loads in flight per
// step (a plain loop waits one memory latency per term).
__device__ __forceinline__ float ordered_sum(const float* __restrict__ src, long long stride, int n) {
  float s = 0.f;
  int c = 0;
  for (; c + 8 <= n; c += 8) {
    float v[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) v[u] = src[(c + u) * stride];
#pragma unroll
    for (int u = 0; u < 8; ++u) s += v[u];
  }
  for (; c < n; ++c) s += src[c * stride];
  return s;
}

// partial_b[chunk, co] = sum over the chunk's pixels of gy[p, co]: 4 pixel streams x 64
// channel lanes, combined in a fixed order.
__global__ void __launch_bounds__(kRedThreads) mzsr_conv3x3_bgrad_partial_nhwc(Conv3x3WgradParams p) {
  __shared__ float red[4][64];
  const int P = p.N * p.H * p.W;
  const int chunk = blockIdx.x;
  const int pstart = chunk * p.chunk_pixels;
  const int pend = min(pstart + p.chunk_pixels, P);
  const int lane = threadIdx.x % 64, group = threadIdx.x / 64;
  for (int cb = 0; cb < p.Cout; cb += 64) {  // uniform trip count: the syncs are safe
    const int co = cb + lane;
    float s = 0.f;
    if (co < p.Cout && pstart + group < pend)  // pixels pstart + group + 4 j, j < n
      s = ordered_sum(p.gy + static_cast<long long>(pstart + group) * p.Cout + co, 4LL * p.Cout,
                      (pend - pstart - group + 3) / 4);
    red[group][lane] = s;
    __syncthreads();
    if (group == 0 && co < p.Cout)
      p.partial_b[static_cast<long long>(chunk) * p.Cout + co] =
          ((red[0][lane] + red[1][lane]) + red[2][lane]) + red[3][lane];
    __syncthreads();
  }
}

// gw[co, ci, tap] = sum_c partial_w[c, tap*Cin + ci, co]; gb[co] = sum_c partial_b[c, co],
// in the fixed order of conv3x3_wgrad_params.h: a block covers 32 consecutive outputs
// (coalesced reads), its warp w sums chunks w, w + kRedSplit, w + 2 kRedSplit, ... in
// increasing order, and the kRedSplit warp sums are added in increasing w.  One thread per
// output summing every chunk (the earlier kernel) left the 3-channel layers' 1792 outputs
// on 7 blocks, each thread walking 256-512 partials one load batch after another.
constexpr int kRedSplit = kMzsrWgradReduceSplit;
__global__ void __launch_bounds__(32 * kRedSplit) mzsr_conv3x3_wgrad_reduce(Conv3x3WgradParams p) {
  __shared__ float part[kRedSplit][32];
  const int MN = 9 * p.Cin * p.Cout;
  const int lane = static_cast<int>(threadIdx.x) % 32, w = static_cast<int>(threadIdx.x) / 32;
  const int i = blockIdx.x * 32 + lane;
  const int n = (p.num_chunks - w + kRedSplit - 1) / kRedSplit;  // chunks w, w + kRedSplit, ...
  float s = 0.f;
  if (i < MN)
    s = ordered_sum(p.partial_w + static_cast<long long>(w) * MN + i, static_cast<long long>(kRedSplit) * MN, n);
  else if (i < MN + p.Cout)
    s = ordered_sum(p.partial_b + static_cast<long long>(w) * p.Cout + (i - MN),
                    static_cast<long long>(kRedSplit) * p.Cout, n);
  part[w][lane] = s;
  __syncthreads();
  if (w == 0 && i < MN + p.Cout) {
    float t = 0.f;
#pragma unroll
    for (int u = 0; u < kRedSplit; ++u) t += part[u][lane];
    if (i < MN) {
      const int m = i / p.Cout, co = i - m * p.Cout;
      const int tap = m / p.Cin, ci = m - tap * p.Cin;
      p.gw[(co * p.Cin + ci) * 9 + tap] = t;
    } else {
      p.gb[i - MN] = t;
    }
  }
}

}  // namespace mzsr

void mzsr_launch_conv3x3_wgrad_partial_simt(const Conv3x3WgradParams& p, cudaStream_t stream) {
  if (p.Cout <= 4)
    mzsr::launch_wgrad_simt<256, 4, 1, 4, 16>(p, stream);  // the 3-channel last layer
  else
    mzsr::launch_wgrad_simt<64, 64, 4, 4, 16>(p, stream);
}

bool mzsr_conv3x3_wgrad_tc_ok(const Conv3x3WgradParams& p) {
  using mzsr::aligned16;
  return p.Cin > 0 && p.Cout > 0 && p.Cin % mzsr::TBM == 0 && p.Cout % mzsr::TBN == 0 &&
         p.chunk_pixels % mzsr::TBK == 0 && aligned16(p.x) && aligned16(p.gy) && aligned16(p.partial_w);
}

void mzsr_launch_conv3x3_wgrad_partial_tc(const Conv3x3WgradParams& p, MzsrPrecision prec, cudaStream_t stream) {
  if (prec == MzsrPrecision::kBf16)
    mzsr::launch_wgrad_tc<__nv_bfloat16>(p, stream);
  else
    mzsr::launch_wgrad_tc<float>(p, stream);
}

void mzsr_launch_conv3x3_bgrad_partial(const Conv3x3WgradParams& p, cudaStream_t stream) {
  auto k = mzsr::mzsr_conv3x3_bgrad_partial_nhwc;
  MZSR_LAUNCH(k, dim3(p.num_chunks), dim3(mzsr::kRedThreads), 0, stream)(p);
}

void mzsr_launch_conv3x3_wgrad_reduce(const Conv3x3WgradParams& p, cudaStream_t stream) {
  const long long total = 9LL * p.Cin * p.Cout + p.Cout;
  auto k = mzsr::mzsr_conv3x3_wgrad_reduce;
  MZSR_LAUNCH(k, dim3(mzsr::ceil_div(total, 32)), dim3(32 * mzsr::kRedSplit), 0, stream)(p);
}
