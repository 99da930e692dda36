// Host API of the mzsr_fast CUDA kernels (csrc/cuda/*.cu): one function per kernel
// launch, raw pointers and sizes in the params structs, no torch.  Every launcher
// enqueues exactly one kernel on `stream`; the caller checks cudaGetLastError (the torch
// binding does C10_CUDA_KERNEL_LAUNCH_CHECK after each).
#pragma once

#ifdef MZSR_CUDA_EMU
#include "emu/cuda_emu.h"
#else
#include <cuda_runtime_api.h>
#endif

#include "conv3x3_params.h"
#include "conv3x3_wgrad_params.h"
#include "elementwise_params.h"

// Operand precision of the tensor-core kernels (accumulation is always fp32).
enum class MzsrPrecision : int { kFp32 = 0, kTf32 = 1, kBf16 = 2 };

// Which op a conv launch serves; only selects the kernel's name for the profiler.
enum class Conv3x3Op : int { kFwd = 0, kDgrad = 1 };

// --- packing of weights (conv3x3_simt.cu) ---------------------------------------------
void mzsr_launch_conv3x3_pack(const Conv3x3PackParams& p, cudaStream_t stream);

// --- forward / input gradient ----------------------------------------------------------
// Exact fp32 SIMT implicit GEMM, any Cin / Cout >= 1 (conv3x3_simt.cu).
void mzsr_launch_conv3x3_simt(const Conv3x3Params& p, Conv3x3Op op, cudaStream_t stream);

// Tensor-core (WMMA) implicit GEMM, TF32 or bf16 operands (conv3x3_tc.cu).  Requires
// mzsr_conv3x3_tc_ok(p): Cin % 16 == 0, Cout % 64 == 0, 16-byte aligned x/wpack/y/
// mask/residual.
bool mzsr_conv3x3_tc_ok(const Conv3x3Params& p);
// variant: warp layout (0: 2x2 warps of 64x32, the default; 1: 4x2 warps of 32x32; any
// other value: 0).
void mzsr_launch_conv3x3_tc(const Conv3x3Params& p, MzsrPrecision prec, Conv3x3Op op, cudaStream_t stream,
                            int variant = 0);

// Kernel variants 2 and 3 (conv3x3_halo.cu): bf16 halo-tile WMMA conv for Cin == 64,
// Cout % 64 == 0 (mzsr_conv3x3_halo_ok), and exact fp32 kernels for the 3-channel layers
// (mzsr_conv3x3_thin_ok: Cout <= 4 with Cin % 4 == 0, or Cin <= 4 with Cout % 4 == 0).
// Variant 3 is variant 2 with bf16 storage of the wide activations and gradients in the
// whole-net ops (Conv3x3Params::act16); a single op (fp32 tensors in and out) runs as variant 2.
inline bool mzsr_variant_halo(int variant) { return variant == 2 || variant == 3; }
inline bool mzsr_conv3x3_halo_shape_ok(int Cin, int Cout) { return Cin == 64 && Cout > 0 && Cout % 64 == 0; }
constexpr int kMzsrThinMaxWide = 128;  // the thin kernels' widest side (weights in shared memory)
inline bool mzsr_conv3x3_thin_shape_ok(int Cin, int Cout) {
  if (Cin < 1 || Cout < 1) return false;
  if (Cout <= 4) return Cin % 4 == 0 && Cin <= kMzsrThinMaxWide;
  if (Cin <= 4) return Cout % 4 == 0 && Cout <= kMzsrThinMaxWide;
  return false;
}
inline bool mzsr_conv3x3_wgrad_halo_shape_ok(int Cin, int Cout) { return Cin == 64 && Cout == 64; }
// Whether a layer (Cin -> Cout) can run every op (fwd, dgrad, wgrad) with act16 (bf16
// storage of the tensors with more than 4 channels): each op on the halo or a thin kernel,
// and a thin kernel's wide side really wide (> 4 channels, so that the binding's storage
// rule and the kernel's agree).
inline bool mzsr_conv3x3_act16_layer_ok(int Cin, int Cout) {
  const bool thin = mzsr_conv3x3_thin_shape_ok(Cin, Cout) && (Cin > 4) != (Cout > 4);
  const bool halo = mzsr_conv3x3_halo_shape_ok(Cin, Cout) && mzsr_conv3x3_halo_shape_ok(Cout, Cin) &&
                    mzsr_conv3x3_wgrad_halo_shape_ok(Cin, Cout);
  return thin || halo;
}
bool mzsr_conv3x3_halo_ok(const Conv3x3Params& p);
void mzsr_launch_conv3x3_halo_bf16(const Conv3x3Params& p, Conv3x3Op op, cudaStream_t stream);
bool mzsr_conv3x3_thin_ok(const Conv3x3Params& p);
void mzsr_launch_conv3x3_thin(const Conv3x3Params& p, cudaStream_t stream);

// Whether a (precision, variant) runs the halo conv, which reads the bf16 copy of the packed
// weights (Conv3x3Params::wpack16): callers pack that copy exactly when this is true.
inline bool mzsr_conv3x3_uses_bf16_weights(MzsrPrecision prec, int variant) {
  return mzsr_variant_halo(variant) && prec == MzsrPrecision::kBf16;
}

// Which conv kernel run_conv-style dispatch picks (0 SIMT, 1 WMMA tc, 2 halo, 3 thin;
// -1: none, p.act16 set and neither halo nor thin applies): variants 2 and 3 take thin
// where it applies (any precision: exact fp32), else halo for bf16 where it applies, else
// as variant 0; fp32 otherwise always SIMT.
inline int mzsr_conv3x3_pick(const Conv3x3Params& p, MzsrPrecision prec, int variant) {
  // act16 only where the storage rule (bf16 iff > 4 channels) matches what the kernel reads
  if (p.act16 && !mzsr_conv3x3_act16_layer_ok(p.Cin, p.Cout)) return -1;
  if (mzsr_variant_halo(variant) && mzsr_conv3x3_thin_ok(p)) return 3;
  if (mzsr_conv3x3_uses_bf16_weights(prec, variant) && mzsr_conv3x3_halo_ok(p)) return 2;
  if (p.act16) return -1;  // the other kernels read fp32 only
  if (prec != MzsrPrecision::kFp32 && mzsr_conv3x3_tc_ok(p)) return 1;
  return 0;
}

// Launch the kernel mzsr_conv3x3_pick chose; returns that choice (-1: nothing launched).
inline int mzsr_launch_conv3x3(const Conv3x3Params& p, MzsrPrecision prec, Conv3x3Op op, cudaStream_t stream,
                               int variant) {
  const int k = mzsr_conv3x3_pick(p, prec, variant);
  if (k < 0) return k;
  if (k == 3)
    mzsr_launch_conv3x3_thin(p, stream);
  else if (k == 2)
    mzsr_launch_conv3x3_halo_bf16(p, op, stream);
  else if (k == 1)
    mzsr_launch_conv3x3_tc(p, prec, op, stream, variant == 1 ? 1 : 0);
  else
    mzsr_launch_conv3x3_simt(p, op, stream);
  return k;
}

// --- weight / bias gradient (conv3x3_wgrad.cu) ----------------------------------------
void mzsr_launch_conv3x3_wgrad_partial_simt(const Conv3x3WgradParams& p, cudaStream_t stream);
// Requires mzsr_conv3x3_wgrad_tc_ok(p): Cin % 64 == 0, Cout % 64 == 0, 16-byte aligned.
bool mzsr_conv3x3_wgrad_tc_ok(const Conv3x3WgradParams& p);
void mzsr_launch_conv3x3_wgrad_partial_tc(const Conv3x3WgradParams& p, MzsrPrecision prec, cudaStream_t stream);
void mzsr_launch_conv3x3_bgrad_partial(const Conv3x3WgradParams& p, cudaStream_t stream);
void mzsr_launch_conv3x3_wgrad_reduce(const Conv3x3WgradParams& p, cudaStream_t stream);

// Variants 2/3 (conv3x3_halo.cu): bf16 halo-tile partials for Cin == Cout == 64, in
// mzsr_wgrad_halo_chunks(N, H, W) chunks of whole 8 x 16 tiles (bias partials included).
// 128 chunks (x 3 kernel rows = 384 blocks of 4 warps): at 256^2 (512 tiles, 4 per chunk)
// one wave on an H100 (132 SMs x 3 blocks); 64 left 192 blocks, 1.5 per SM, too few warps
// to hide the staging loads.  The reduction then reads 128 x 147 KB = 18.9 MB of partials
// instead of 9.4.  Reasoned, not measured: to tune on a GPU (kernel_breakdown.py).
constexpr int kMzsrWgradHaloMaxChunks = 128;
bool mzsr_conv3x3_wgrad_halo_ok(const Conv3x3WgradParams& p);
int mzsr_wgrad_halo_chunks(int N, int H, int W, int max_chunks = kMzsrWgradHaloMaxChunks);
void mzsr_launch_conv3x3_wgrad_halo_bf16(const Conv3x3WgradParams& p, cudaStream_t stream);

// Variants 2/3 (conv3x3_halo.cu): exact fp32 partials for the 3-channel layers (Cin <= 4 with
// Cout % 4 == 0, or Cout <= 4 with Cin % 4 == 0; <= 128 wide), chunks of
// mzsr_wgrad_thin_chunk_pixels() pixels (bias partials included).
bool mzsr_conv3x3_wgrad_thin_ok(const Conv3x3WgradParams& p);
int mzsr_wgrad_thin_chunk_pixels();
void mzsr_launch_conv3x3_wgrad_thin(const Conv3x3WgradParams& p, cudaStream_t stream);

// The weight-gradient plan: which partial kernel runs (0 SIMT + bias kernel, 1 WMMA tc,
// 2 halo, 3 thin; -1: none, p->act16 set and neither applies) and its chunking (sets
// p->chunk_pixels, p->num_chunks; the workspaces are sized from num_chunks afterwards:
// partial_w / partial_b may still be null here).
inline int mzsr_wgrad_plan(Conv3x3WgradParams* p, MzsrPrecision prec, int variant) {
  const long long P = static_cast<long long>(p->N) * p->H * p->W;
  if (p->act16 && !mzsr_conv3x3_act16_layer_ok(p->Cin, p->Cout)) return -1;  // as mzsr_conv3x3_pick
  if (mzsr_variant_halo(variant) && mzsr_conv3x3_wgrad_thin_ok(*p)) {  // exact: any precision
    p->chunk_pixels = mzsr_wgrad_thin_chunk_pixels();
    p->num_chunks = static_cast<int>((P + p->chunk_pixels - 1) / p->chunk_pixels);
    return 3;
  }
  if (mzsr_variant_halo(variant) && prec == MzsrPrecision::kBf16 && mzsr_conv3x3_wgrad_halo_ok(*p)) {
    p->chunk_pixels = 0;  // the halo kernel cuts whole tiles, not pixel ranges
    p->num_chunks = mzsr_wgrad_halo_chunks(p->N, p->H, p->W);
    return 2;
  }
  if (p->act16) return -1;  // the other kernels read fp32 only
  p->chunk_pixels = kMzsrWgradChunkAlign;  // mzsr_conv3x3_wgrad_tc_ok does not depend on the chunking
  const bool tc = prec != MzsrPrecision::kFp32 && mzsr_conv3x3_wgrad_tc_ok(*p);
  mzsr_wgrad_chunking_for(P, p->Cin, p->Cout, tc, &p->chunk_pixels, &p->num_chunks);
  return tc ? 1 : 0;
}

// The partial kernel(s) of a plan, then the fixed-order reduction (2 or 3 launches).
inline void mzsr_launch_wgrad(const Conv3x3WgradParams& p, MzsrPrecision prec, int plan, cudaStream_t stream) {
  if (plan < 0) return;
  if (plan == 3) {
    mzsr_launch_conv3x3_wgrad_thin(p, stream);
  } else if (plan == 2) {
    mzsr_launch_conv3x3_wgrad_halo_bf16(p, stream);
  } else if (plan == 1) {
    mzsr_launch_conv3x3_wgrad_partial_tc(p, prec, stream);  // bias partials included
  } else {
    mzsr_launch_conv3x3_wgrad_partial_simt(p, stream);
    mzsr_launch_conv3x3_bgrad_partial(p, stream);
  }
  mzsr_launch_conv3x3_wgrad_reduce(p, stream);
}

// --- elementwise (elementwise.cu) -------------------------------------------------------
void mzsr_launch_l1_loss_grad_partial(const L1Params& p, cudaStream_t stream);
void mzsr_launch_l1_loss_finalize(const L1Params& p, cudaStream_t stream);
void mzsr_launch_sgd_update(const SgdParams& p, cudaStream_t stream);
