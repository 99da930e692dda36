// Tensor-core NHWC 3x3 conv (forward and input gradient): implicit GEMM on WMMA with
// TF32 or bf16 operands and fp32 accumulation, same semantics and epilogue as the fp32
// SIMT kernel (conv3x3_simt.cu).
//
// Block tile: 128 pixels x 64 output channels, K step 16 channels of one tap; by default
// 4 warps in 2 x 2, each 64 x 32 (4 x 2 fragments of 16 x 16: 6 fragment loads per 8
// MMAs); see TcCfg for the alternative layout.  128 pixels per block halves the L2
// traffic of the weights (re-read by every block) against a 64-pixel tile.  Global -> register -> shared staging
// with double-buffered shared memory (one __syncthreads per K step): the loads of step
// t+1 are in flight while step t computes.  Operands are converted to tf32 / bf16 when
// they are written to shared memory.  Requires Cin % 16 == 0, Cout % 64 == 0 and 16-byte
// aligned pointers (float4 loads); the host falls back to the SIMT kernel otherwise.
#include "cuda_compat.cuh"
#include "tc_common.cuh"

namespace mzsr {

constexpr int BM = 128, BN = 64, BK = 16;

// Warp layout of the 128 x 64 block tile.  Variant 0 (default): 2 x 2 warps of 64 x 32
// (6 fragment loads per 8 MMAs, <= 168 regs, 3 blocks/SM).  Variant 1: 4 x 2 warps of
// 32 x 32 (4 loads per 4 MMAs, <= 128 regs, 2 blocks/SM = 16 warps).  Selected per call
// ("tf32:1" / "bf16:1" precision strings of the torch ops) to compare them on a GPU.
template <int WARPS_M_, int WARPS_N_, int MIN_BLOCKS_>
struct TcCfg {
  static constexpr int WARPS_M = WARPS_M_, WARPS_N = WARPS_N_, MIN_BLOCKS = MIN_BLOCKS_;
  static constexpr int FM = BM / WARPS_M / 16, FN = BN / WARPS_N / 16;  // 16x16 fragments per warp
  static constexpr int kThreads = 32 * WARPS_M * WARPS_N;
};
using TcCfg0 = TcCfg<2, 2, 3>;
using TcCfg1 = TcCfg<4, 2, 2>;

template <typename T>
struct ConvTcSmem {
  static constexpr int LDA = BK + TcTraits<T>::kPad;  // As[m][k]
  static constexpr int LDB = BN + TcTraits<T>::kPad;  // Bs[k][n]
  static constexpr int LDC = BN + 4;                  // Cs[m][n] fp32
  static constexpr int A_ELEMS = BM * LDA;
  static constexpr int B_ELEMS = BK * LDB;
  static constexpr int STAGE_BYTES = (A_ELEMS + B_ELEMS) * static_cast<int>(sizeof(T));
  static constexpr int C_BYTES = BM * LDC * 4;
  static constexpr int BYTES = 2 * STAGE_BYTES > C_BYTES ? 2 * STAGE_BYTES : C_BYTES;
  static_assert((A_ELEMS * sizeof(T)) % 32 == 0 && STAGE_BYTES % 32 == 0, "WMMA needs 256-bit aligned tiles");
};

template <typename T, typename Cfg>
__device__ __forceinline__ void conv3x3_tc_body(const Conv3x3Params& p) {
  constexpr int WARPS_N = Cfg::WARPS_N, FM = Cfg::FM, FN = Cfg::FN, kThreads = Cfg::kThreads;
  using S = ConvTcSmem<T>;
  using Tr = TcTraits<T>;
  constexpr int LDA = S::LDA, LDB = S::LDB, LDC = S::LDC;
  __shared__ __align__(128) unsigned char smem[S::BYTES];
  auto As = [&](int s) { return reinterpret_cast<T*>(smem + s * S::STAGE_BYTES); };
  auto Bs = [&](int s) { return reinterpret_cast<T*>(smem + s * S::STAGE_BYTES) + S::A_ELEMS; };
  float* Cs = reinterpret_cast<float*>(smem);

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;  // warp tile at (wm * FM * 16, wn * FN * 16)
  const int P = p.N * p.H * p.W;
  const int m0 = blockIdx.x * BM;
  const int n0 = blockIdx.y * BN;
  const int CC = p.Cin / BK;  // channel chunks per tap
  const int T_STEPS = 9 * CC;

  // A loader: 128 rows x 4 float4; this thread: column a_c4, rows a_row + 64 r
  constexpr int A_R = BM * BK / 4 / kThreads, A_STRIDE = kThreads / (BK / 4);
  const int a_c4 = tid % (BK / 4), a_row = tid / (BK / 4);
  PixelPos a_pos[A_R];
#pragma unroll
  for (int r = 0; r < A_R; ++r) a_pos[r] = pixel_pos(m0 + a_row + A_STRIDE * r, P, p.H, p.W);
  // B loader: 16 rows x 16 float4; this thread: column b_c4, rows b_row + 16 r
  constexpr int B_R = BK * BN / 4 / kThreads, B_STRIDE = kThreads / (BN / 4);
  const int b_c4 = tid % (BN / 4), b_row = tid / (BN / 4);
  static_assert(A_R * A_STRIDE == BM && B_R * B_STRIDE == BK, "loader covers the tiles");

  float4 ra[A_R], rb[B_R];
  auto load_tile = [&](int t) {
    const int tap = t / CC, c0 = (t - tap * CC) * BK;
    const int dh = tap / 3 - 1, dw = tap % 3 - 1;
#pragma unroll
    for (int r = 0; r < A_R; ++r) {
      const int q = neighbour(a_pos[r], dh, dw, p.H, p.W);
      ra[r] = q >= 0 ? ldg4(p.x + static_cast<long long>(q) * p.Cin + c0 + a_c4 * 4) : zero4();
    }
#pragma unroll
    for (int r = 0; r < B_R; ++r) {
      const long long k = static_cast<long long>(tap) * p.Cin + c0 + b_row + B_STRIDE * r;
      rb[r] = ldg4(p.wpack + k * p.Cout + n0 + b_c4 * 4);
    }
  };
  auto store_tile = [&](int s) {
    T* a = As(s);
    T* b = Bs(s);
#pragma unroll
    for (int r = 0; r < A_R; ++r) store4<T>(a + (a_row + A_STRIDE * r) * LDA + a_c4 * 4, ra[r]);
#pragma unroll
    for (int r = 0; r < B_R; ++r) store4<T>(b + (b_row + B_STRIDE * r) * LDB + b_c4 * 4, rb[r]);
  };

  wmma::fragment<wmma::accumulator, 16, 16, Tr::kK, float> acc[FM][FN];
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  load_tile(0);
  store_tile(0);
  __syncthreads();
  for (int t = 0; t < T_STEPS; ++t) {
    const int cur = t & 1;
    if (t + 1 < T_STEPS) load_tile(t + 1);
    const T* a = As(cur);
    const T* b = Bs(cur);
#pragma unroll
    for (int kk = 0; kk < BK; kk += Tr::kK) {
      wmma::fragment<wmma::matrix_a, 16, 16, Tr::kK, typename Tr::Prec, wmma::row_major> fa[FM];
      wmma::fragment<wmma::matrix_b, 16, 16, Tr::kK, typename Tr::Prec, wmma::row_major> fb[FN];
#pragma unroll
      for (int i = 0; i < FM; ++i) wmma::load_matrix_sync(fa[i], a + (wm * FM * 16 + i * 16) * LDA + kk, LDA);
#pragma unroll
      for (int j = 0; j < FN; ++j) wmma::load_matrix_sync(fb[j], b + kk * LDB + wn * FN * 16 + j * 16, LDB);
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    if (t + 1 < T_STEPS) store_tile(cur ^ 1);
    __syncthreads();
  }

  // ---- epilogue through shared memory (the operand buffers are free after the last sync)
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j)
      wmma::store_matrix_sync(Cs + (wm * FM * 16 + i * 16) * LDC + wn * FN * 16 + j * 16, acc[i][j], LDC,
                              wmma::mem_row_major);
  __syncthreads();
  const int c4 = tid % (BN / 4);
  const int co = n0 + c4 * 4;
  constexpr int C_STRIDE = kThreads / (BN / 4);
#pragma unroll 4
  for (int r = 0; r < BM / C_STRIDE; ++r) {
    const int row = tid / (BN / 4) + C_STRIDE * r;
    const int pix = m0 + row;
    if (pix >= P) continue;
    const long long o = static_cast<long long>(pix) * p.Cout + co;
    float v[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) v[q] = Cs[row * LDC + c4 * 4 + q];
    conv_epilogue_store4(p, o, co, v);
  }
}

template <typename T, typename Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::MIN_BLOCKS) mzsr_conv3x3_fwd_tc_nhwc(Conv3x3Params p) {
  conv3x3_tc_body<T, Cfg>(p);
}

template <typename T, typename Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::MIN_BLOCKS) mzsr_conv3x3_dgrad_tc_nhwc(Conv3x3Params p) {
  conv3x3_tc_body<T, Cfg>(p);
}

template <typename T, typename Cfg>
void launch_tc(const Conv3x3Params& p, Conv3x3Op op, cudaStream_t stream) {
  const long long P = static_cast<long long>(p.N) * p.H * p.W;
  const dim3 grid(ceil_div(P, BM), p.Cout / BN);
  if (op == Conv3x3Op::kFwd) {
    auto k = mzsr_conv3x3_fwd_tc_nhwc<T, Cfg>;
    MZSR_LAUNCH(k, grid, dim3(Cfg::kThreads), 0, stream)(p);
  } else {
    auto k = mzsr_conv3x3_dgrad_tc_nhwc<T, Cfg>;
    MZSR_LAUNCH(k, grid, dim3(Cfg::kThreads), 0, stream)(p);
  }
}

template <typename T>
void launch_tc_variant(const Conv3x3Params& p, Conv3x3Op op, int variant, cudaStream_t stream) {
  if (variant == 1)
    launch_tc<T, TcCfg1>(p, op, stream);
  else
    launch_tc<T, TcCfg0>(p, op, stream);
}

}  // namespace mzsr

bool mzsr_conv3x3_tc_ok(const Conv3x3Params& p) {
  using mzsr::aligned16;
  return p.Cin > 0 && p.Cout > 0 && p.Cin % mzsr::BK == 0 && p.Cout % mzsr::BN == 0 && aligned16(p.x) &&
         aligned16(p.wpack) && aligned16(p.y) && aligned16(p.mask) && aligned16(p.residual);
}

void mzsr_launch_conv3x3_tc(const Conv3x3Params& p, MzsrPrecision prec, Conv3x3Op op, cudaStream_t stream,
                            int variant) {
  if (prec == MzsrPrecision::kBf16)
    mzsr::launch_tc_variant<__nv_bfloat16>(p, op, variant, stream);
  else
    mzsr::launch_tc_variant<float>(p, op, variant, stream);
}
