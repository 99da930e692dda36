// Parameters of the NHWC 3x3 SAME convolution kernels (forward and input gradient).
// Plain C++ (no CUDA, no torch): shared by the .cu kernels and the torch binding.
#pragma once

// y[p, co] = epilogue( sum_{tap, ci} x[p shifted by tap, ci] * wpack[tap * Cin + ci, co] )
// with p = (n, h, w) a pixel, tap = kh * 3 + kw, the shift (kh - 1, kw - 1), zero padding.
// Epilogue, in this order: + bias[co] (if bias), max(., 0) (if relu),
// * (mask[p, co] > 0) (if mask), + residual[p, co] (if residual).
//
// The input gradient of a conv is the same kernel on gy with the transposed, flipped
// packing of the weights (see Conv3x3PackParams), mask = the layer's input (ReLU mask).
struct Conv3x3Params {
  const float* x;         // (N, H, W, Cin) contiguous
  const float* wpack;     // (9 * Cin, Cout) row-major: the GEMM "B" operand
  const float* bias;      // (Cout,) or nullptr
  const float* mask;      // (N, H, W, Cout) or nullptr
  const float* residual;  // (N, H, W, Cout) or nullptr
  float* y;               // (N, H, W, Cout) contiguous
  int N, H, W, Cin, Cout;
  int relu;               // 0 / 1
  // bf16 copy of wpack (raw bits, same layout) or nullptr; read only by the kernels of
  // variants 2 and 3 (conv3x3_halo.cu), which require it
  const unsigned short* wpack16;
  // 1: the wide tensors (more than 4 channels: x / mask / residual / y of whichever side
  // is wide) hold bf16 (raw bits; the pointers above are then reinterpreted), the
  // 3-channel ones stay fp32.  Only the halo and thin kernels of conv3x3_halo.cu accept it
  // (kernel variant 3, mzsr_conv3x3_act16_ok); 0 everywhere else.
  int act16;
};

// Packing of OIHW weights w (Cout, Cin, 3, 3) into GEMM operands, several layers in one
// launch (blockIdx.y = layer):
//   fwd[(tap * Cin + ci) * Cout + co]          = w[co, ci, tap]          (forward)
//   dgrad[((8 - tap) * Cout + co) * Cin + ci]  = w[co, ci, tap]          (input gradient)
// Either output pointer may be nullptr; fwd16 / dgrad16 (optional) receive the same
// packings rounded to bf16 (raw bits, round to nearest even).
struct Conv3x3PackParams {
  static constexpr int kMaxLayers = 16;
  const float* w[kMaxLayers];
  float* fwd[kMaxLayers];
  float* dgrad[kMaxLayers];
  unsigned short* fwd16[kMaxLayers];
  unsigned short* dgrad16[kMaxLayers];
  int cin[kMaxLayers];
  int cout[kMaxLayers];
  int count;
};
