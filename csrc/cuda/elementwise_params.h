// Parameters of the small elementwise / reduction kernels: L1 loss + gradient and the
// multi-tensor SGD update.
#pragma once

// loss = mean |pred - target|, grad = sign(pred - target) / numel (sign(0) = 0).
// Stage 1 (num_blocks blocks): grad and partial[b] = sum of |d| over a fixed grid-stride
// subset; stage 2 (one block): loss[0] = (fixed-order sum of partial) / numel.
struct L1Params {
  const float* pred;    // numel floats
  const float* target;  // numel floats
  float* grad;          // numel floats
  float* partial;       // num_blocks floats workspace
  float* loss;          // 1 float
  long long numel;
  int num_blocks;       // <= kMzsrL1MaxBlocks
};
constexpr int kMzsrL1MaxBlocks = 256;

inline int mzsr_l1_num_blocks(long long numel) {
  long long b = (numel + 1023) / 1024;
  if (b < 1) b = 1;
  if (b > kMzsrL1MaxBlocks) b = kMzsrL1MaxBlocks;
  return static_cast<int>(b);
}

// p[i] -= lr * g[i] for up to kMaxTensors tensors in one launch (blockIdx.y = tensor);
// lr is read from device memory so CUDA graphs can replay a schedule.
struct SgdParams {
  static constexpr int kMaxTensors = 16;
  float* p[kMaxTensors];
  const float* g[kMaxTensors];
  long long n[kMaxTensors];
  int count;
  const float* lr;  // 1 float on the device
};
