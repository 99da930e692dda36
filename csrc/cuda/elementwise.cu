// L1 loss + gradient (deterministic two-stage reduction) and the multi-tensor SGD update
// with the learning rate read from device memory (CUDA-graph friendly).
#include "cuda_compat.cuh"

namespace mzsr {

constexpr int kThreads = 256;

// Fixed-shape tree reduction of red[0..kThreads) into red[0]; all threads must call it.
__device__ __forceinline__ float block_sum(float* red, float v) {
  const int tid = threadIdx.x;
  red[tid] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (tid < s) red[tid] += red[tid + s];
    __syncthreads();
  }
  return red[0];
}

__global__ void __launch_bounds__(kThreads) mzsr_l1_loss_grad_partial(L1Params p) {
  __shared__ float red[kThreads];
  const float n = static_cast<float>(p.numel);
  float s = 0.f;
  for (long long i = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; i < p.numel;
       i += static_cast<long long>(p.num_blocks) * kThreads) {
    const float d = p.pred[i] - p.target[i];
    s += fabsf(d);
    const float sg = d > 0.f ? 1.f : (d < 0.f ? -1.f : 0.f);
    p.grad[i] = sg / n;  // a division, as the reference sign(d) / numel
  }
  const float total = block_sum(red, s);
  if (threadIdx.x == 0) p.partial[blockIdx.x] = total;
}

__global__ void __launch_bounds__(kThreads) mzsr_l1_loss_finalize(L1Params p) {
  __shared__ float red[kThreads];
  float s = 0.f;
  for (int b = threadIdx.x; b < p.num_blocks; b += kThreads) s += p.partial[b];
  const float total = block_sum(red, s);
  if (threadIdx.x == 0) p.loss[0] = total / static_cast<float>(p.numel);
}

__global__ void __launch_bounds__(kThreads) mzsr_sgd_update_multi_tensor(SgdParams p) {
  const int t = blockIdx.y;
  float* __restrict__ w = p.p[t];
  const float* __restrict__ g = p.g[t];
  const long long n = p.n[t];
  const float lr = *p.lr;
  for (long long i = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * kThreads)
    w[i] = __fsub_rn(w[i], __fmul_rn(g[i], lr));  // p - (g * lr), rounded as the reference
}

}  // namespace mzsr

void mzsr_launch_l1_loss_grad_partial(const L1Params& p, cudaStream_t stream) {
  auto k = mzsr::mzsr_l1_loss_grad_partial;
  MZSR_LAUNCH(k, dim3(p.num_blocks), dim3(mzsr::kThreads), 0, stream)(p);
}

void mzsr_launch_l1_loss_finalize(const L1Params& p, cudaStream_t stream) {
  auto k = mzsr::mzsr_l1_loss_finalize;
  MZSR_LAUNCH(k, dim3(1), dim3(mzsr::kThreads), 0, stream)(p);
}

void mzsr_launch_sgd_update(const SgdParams& p, cudaStream_t stream) {
  long long maxn = 1;
  for (int t = 0; t < p.count; ++t) maxn = p.n[t] > maxn ? p.n[t] : maxn;
  long long blocks = (maxn + mzsr::kThreads * 4 - 1) / (mzsr::kThreads * 4);
  if (blocks > 1024) blocks = 1024;
  if (blocks < 1) blocks = 1;
  auto k = mzsr::mzsr_sgd_update_multi_tensor;
  MZSR_LAUNCH(k, dim3(static_cast<unsigned>(blocks), p.count), dim3(mzsr::kThreads), 0, stream)(p);
}
