// Exact fp32 NHWC 3x3 conv (forward and input gradient) as a shared-memory tiled implicit
// GEMM on FFMA, plus the weight packing kernel.  This is the path to trust: simple
// indexing, every global access bounds-checked, any Cin / Cout.
//
// GEMM view: C[p, co] = sum_k A[p, k] * B[k, co], p = pixel (N*H*W rows), k = tap*Cin + ci
// (K = 9*Cin), A[p, k] = x[p shifted by tap, ci] (0 outside the image), B = wpack.
#include "cuda_compat.cuh"
#include "simt_tile.cuh"

namespace mzsr {

constexpr int kThreads = 256;

// Block tile BM pixels x BN output channels, K step BK; each thread TM x TN outputs.
template <int BM, int BN, int TM, int TN, int BK>
__device__ __forceinline__ void conv3x3_simt_body(const Conv3x3Params& p) {
  constexpr int TX = BM / TM;  // threads along M
  static_assert(TX * (BN / TN) == kThreads, "tile must use 256 threads");
  static_assert(kThreads % BK == 0, "");
  constexpr int kRowsPerPass = kThreads / BK;  // pixels loaded per pass
  constexpr int kPasses = BM / kRowsPerPass;   // pixels per thread
  static_assert(BM % kRowsPerPass == 0, "");
  constexpr int LDA = BM + 4;  // +4: keeps float4 alignment, breaks some bank conflicts
  constexpr int LDB = BN + 4;
  __shared__ __align__(16) float As[BK][LDA];
  __shared__ __align__(16) float Bs[BK][LDB];

  const int tid = threadIdx.x;
  const int P = p.N * p.H * p.W;
  const int K = 9 * p.Cin;
  const int m0 = blockIdx.x * BM;
  const int n0 = blockIdx.y * BN;

  // A loader: this thread always loads column a_kk of the K tile, for kPasses pixels.
  const int a_kk = tid % BK;
  int a_tap = a_kk / p.Cin;  // (tap, ci) of k = k0 + a_kk, advanced by BK per tile
  int a_ci = a_kk - a_tap * p.Cin;
  PixelPos a_pos[kPasses];
#pragma unroll
  for (int r = 0; r < kPasses; ++r) a_pos[r] = pixel_pos(m0 + tid / BK + r * kRowsPerPass, P, p.H, p.W);

  const int tx = tid % TX, ty = tid / TX;
  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  for (int k0 = 0; k0 < K; k0 += BK) {
    // ---- A tile: As[kk][m] = x[pixel m0+m shifted by tap(k), ci(k)]
    {
      const bool kvalid = a_tap < 9;
      const int dh = a_tap / 3 - 1, dw = a_tap % 3 - 1;
#pragma unroll
      for (int r = 0; r < kPasses; ++r) {
        float v = 0.f;
        if (kvalid) {
          const int q = neighbour(a_pos[r], dh, dw, p.H, p.W);
          if (q >= 0) v = p.x[static_cast<long long>(q) * p.Cin + a_ci];
        }
        As[a_kk][tid / BK + r * kRowsPerPass] = v;
      }
    }
    // ---- B tile: Bs[kk][n] = wpack[k0+kk, n0+n]
    for (int e = tid; e < BK * BN; e += kThreads) {
      const int n = e % BN, kk = e / BN;
      const int k = k0 + kk, co = n0 + n;
      Bs[kk][n] = (k < K && co < p.Cout) ? p.wpack[static_cast<long long>(k) * p.Cout + co] : 0.f;
    }
    __syncthreads();
    simt_tile_fma<BM, BN, TM, TN, BK, LDA, LDB>(As, Bs, acc, tx, ty);
    __syncthreads();
    a_ci += BK;
    while (a_ci >= p.Cin) {
      a_ci -= p.Cin;
      ++a_tap;
    }
  }

  // ---- epilogue: + bias, relu, * mask, + residual
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int pix = m0 + tx * TM + i;
    if (pix >= P) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int co = n0 + ty * TN + j;
      if (co >= p.Cout) continue;
      const long long o = static_cast<long long>(pix) * p.Cout + co;
      float v = acc[i][j];
      if (p.bias) v += p.bias[co];
      if (p.relu) v = fmaxf(v, 0.f);
      if (p.mask) v = p.mask[o] > 0.f ? v : 0.f;
      if (p.residual) v += p.residual[o];
      p.y[o] = v;
    }
  }
}

template <int BM, int BN, int TM, int TN, int BK>
__global__ void __launch_bounds__(kThreads) mzsr_conv3x3_fwd_fp32_nhwc(Conv3x3Params p) {
  conv3x3_simt_body<BM, BN, TM, TN, BK>(p);
}

template <int BM, int BN, int TM, int TN, int BK>
__global__ void __launch_bounds__(kThreads) mzsr_conv3x3_dgrad_fp32_nhwc(Conv3x3Params p) {
  conv3x3_simt_body<BM, BN, TM, TN, BK>(p);
}

template <int BM, int BN, int TM, int TN, int BK>
void launch_simt(const Conv3x3Params& p, Conv3x3Op op, cudaStream_t stream) {
  const long long P = static_cast<long long>(p.N) * p.H * p.W;
  const dim3 grid(ceil_div(P, BM), ceil_div(p.Cout, BN));
  const dim3 block(kThreads);
  if (op == Conv3x3Op::kFwd) {
    auto k = mzsr_conv3x3_fwd_fp32_nhwc<BM, BN, TM, TN, BK>;
    MZSR_LAUNCH(k, grid, block, 0, stream)(p);
  } else {
    auto k = mzsr_conv3x3_dgrad_fp32_nhwc<BM, BN, TM, TN, BK>;
    MZSR_LAUNCH(k, grid, block, 0, stream)(p);
  }
}

__global__ void __launch_bounds__(kThreads) mzsr_conv3x3_pack_weights(Conv3x3PackParams p) {
  const int l = blockIdx.y;
  const int cin = p.cin[l], cout = p.cout[l];
  const int total = cout * cin * 9;
  for (int i = blockIdx.x * kThreads + threadIdx.x; i < total; i += gridDim.x * kThreads) {
    const int tap = i % 9;
    const int ci = (i / 9) % cin;
    const int co = i / (9 * cin);
    const float v = p.w[l][i];  // OIHW: ((co * cin + ci) * 9 + tap)
    const int fi = (tap * cin + ci) * cout + co, di = ((8 - tap) * cout + co) * cin + ci;
    if (p.fwd[l]) p.fwd[l][fi] = v;
    if (p.dgrad[l]) p.dgrad[l][di] = v;
    if (p.fwd16[l] || p.dgrad16[l]) {
      const unsigned short b = __bfloat16_as_ushort(__float2bfloat16_rn(v));
      if (p.fwd16[l]) p.fwd16[l][fi] = b;
      if (p.dgrad16[l]) p.dgrad16[l][di] = b;
    }
  }
}

}  // namespace mzsr

void mzsr_launch_conv3x3_simt(const Conv3x3Params& p, Conv3x3Op op, cudaStream_t stream) {
  if (p.Cout <= 4) {
    // the 3-channel last layer (and its like): one pixel x 4 channels per thread
    mzsr::launch_simt<256, 4, 1, 4, 16>(p, op, stream);
  } else {
    mzsr::launch_simt<64, 64, 4, 4, 16>(p, op, stream);
  }
}

void mzsr_launch_conv3x3_pack(const Conv3x3PackParams& p, cudaStream_t stream) {
  int maxn = 1;
  for (int l = 0; l < p.count; ++l) maxn = maxn > p.cin[l] * p.cout[l] * 9 ? maxn : p.cin[l] * p.cout[l] * 9;
  const dim3 grid(mzsr::ceil_div(maxn, mzsr::kThreads), p.count);
  auto k = mzsr::mzsr_conv3x3_pack_weights;
  MZSR_LAUNCH(k, grid, dim3(mzsr::kThreads), 0, stream)(p);
}
