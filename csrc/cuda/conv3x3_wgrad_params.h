// Parameters of the deterministic weight/bias gradient of the NHWC 3x3 SAME convolution.
#pragma once

// Two fixed-order stages, no atomics:
//  1. partial: the pixels are cut into num_chunks chunks of chunk_pixels (the last one
//     shorter); chunk c writes
//       partial_w[c, tap * Cin + ci, co] = sum_{p in chunk c} x[p shifted by tap, ci] * gy[p, co]
//       partial_b[c, co]                 = sum_{p in chunk c} gy[p, co]
//  2. reduce: gw[co, ci, kh, kw] = sum_c partial_w[c, (kh*3+kw)*Cin + ci, co],
//            gb[co] = sum_c partial_b[c, co], in a fixed order: S_w = the sum over
//            c = w, w + S, w + 2S, ... (increasing c) for w = 0 .. S-1 with
//            S = kMzsrWgradReduceSplit, then S_0 + S_1 + ... + S_{S-1} (increasing w).
// The chunking depends on the shape only (mzsr_wgrad_chunking_for), so results are
// bitwise reproducible run to run.
struct Conv3x3WgradParams {
  const float* x;     // (N, H, W, Cin) the layer input
  const float* gy;    // (N, H, W, Cout) gradient of the layer output
  float* partial_w;   // (num_chunks, 9 * Cin, Cout) workspace
  float* partial_b;   // (num_chunks, Cout) workspace
  float* gw;          // (Cout, Cin, 3, 3) output
  float* gb;          // (Cout,) output
  int N, H, W, Cin, Cout;
  int chunk_pixels;   // multiple of kMzsrWgradChunkAlign
  int num_chunks;
  int act16;          // 1: x / gy with more than 4 channels hold bf16 (Conv3x3Params::act16)
};

constexpr int kMzsrWgradChunkAlign = 32;
constexpr int kMzsrWgradReduceSplit = 8;  // the reduction's chunk streams (warps per block)

// Chunking of P pixels: at most about max_chunks chunks of at least min_chunk pixels.
// 128 x 256 suits the tensor-core kernel (the 64-channel layers: few blocks would leave
// SMs idle, many would make the reduction read more partials); the small SIMT layers
// (9*Cin*Cout <= 4096, the 3-channel ones) take 512 x 64: more blocks, cheap partials.
inline void mzsr_wgrad_chunking(long long P, int max_chunks, int min_chunk, int* chunk_pixels, int* num_chunks) {
  long long c = (P + max_chunks - 1) / max_chunks;
  if (c < min_chunk) c = min_chunk;
  c = (c + kMzsrWgradChunkAlign - 1) / kMzsrWgradChunkAlign * kMzsrWgradChunkAlign;
  *chunk_pixels = static_cast<int>(c);
  *num_chunks = static_cast<int>((P + c - 1) / c);
  if (*num_chunks < 1) *num_chunks = 1;
}

// The chunking used for a layer: tc = whether the tensor-core partial kernel runs.
inline void mzsr_wgrad_chunking_for(long long P, int Cin, int Cout, bool tc, int* chunk_pixels, int* num_chunks) {
  const bool small = !tc && 9LL * Cin * Cout <= 4096;
  mzsr_wgrad_chunking(P, small ? 512 : 128, small ? 64 : 256, chunk_pixels, num_chunks);
}
