// Parameters of the deterministic weight/bias gradient of the NHWC 3x3 SAME convolution.
#pragma once

// Two fixed-order stages, no atomics:
//  1. partial: the pixels are cut into num_chunks chunks of chunk_pixels (the last one
//     shorter); chunk c writes
//       partial_w[c, tap * Cin + ci, co] = sum_{p in chunk c} x[p shifted by tap, ci] * gy[p, co]
//       partial_b[c, co]                 = sum_{p in chunk c} gy[p, co]
//  2. reduce: gw[co, ci, kh, kw] = sum_{c = 0, 1, ...} partial_w[c, (kh*3+kw)*Cin + ci, co],
//            gb[co] = sum_c partial_b[c, co], always in increasing c.
// The chunking depends on the shape only (mzsr_wgrad_chunking), so results are bitwise
// reproducible run to run.
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
};

constexpr int kMzsrWgradChunkAlign = 32;
constexpr int kMzsrWgradMaxChunks = 128;

// Chunking of P pixels: about kMzsrWgradMaxChunks chunks of at least 256 pixels.
inline void mzsr_wgrad_chunking(long long P, int* chunk_pixels, int* num_chunks) {
  long long c = (P + kMzsrWgradMaxChunks - 1) / kMzsrWgradMaxChunks;
  if (c < 256) c = 256;
  c = (c + kMzsrWgradChunkAlign - 1) / kMzsrWgradChunkAlign * kMzsrWgradChunkAlign;
  *chunk_pixels = static_cast<int>(c);
  *num_chunks = static_cast<int>((P + c - 1) / c);
  if (*num_chunks < 1) *num_chunks = 1;
}
