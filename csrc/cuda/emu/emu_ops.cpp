// C entry points over the emulated kernels for ctypes (tests only): the same launch
// sequence as csrc/cuda/binding.cpp, on host memory.  mode: 0 fp32 SIMT, 1 TF32, 2 bf16
// (the tensor-core kernels where the shape allows, as the binding); emu_conv also takes
// 10 * variant + mode (kernel variants 1, 2 and 3, as the ":1" / ":2" / ":3" precision
// strings).  Mode 32 (variant 3, bf16) runs with act16 as the binding's whole-net ops:
// every tensor argument with more than 4 channels holds bf16 (raw bits), the others fp32.
#include <vector>

#include "../mzsr_cuda.h"

namespace {
MzsrPrecision prec_of(int mode) {
  return mode == 2 ? MzsrPrecision::kBf16 : mode == 1 ? MzsrPrecision::kTf32 : MzsrPrecision::kFp32;
}
int act16_mode(int mode) { return mode == 32 ? 1 : 0; }
}  // namespace

extern "C" {

// w (Cout, Cin, 3, 3) -> fwd (9*Cin, Cout), dgrad (9*Cout, Cin) and their bf16 copies
// (any output may be null)
void emu_pack(const float* w, float* fwd, float* dgrad, unsigned short* fwd16, unsigned short* dgrad16, int Cout,
              int Cin) {
  Conv3x3PackParams p{};
  p.w[0] = w;
  p.fwd[0] = fwd;
  p.dgrad[0] = dgrad;
  p.fwd16[0] = fwd16;
  p.dgrad16[0] = dgrad16;
  p.cin[0] = Cin;
  p.cout[0] = Cout;
  p.count = 1;
  mzsr_launch_conv3x3_pack(p, nullptr);
}

// mode = variant * 10 + precision (0 fp32, 1 tf32, 2 bf16); returns the kernel that ran
// (mzsr_conv3x3_pick: 0 SIMT, 1 WMMA tc, 2 halo, 3 thin, -1 none)
// (wpack16: the bf16 packing or null, as the binding passes it for variant 2 in bf16)
int emu_conv(const float* x, const float* wpack, const unsigned short* wpack16, const float* bias, const float* mask,
             const float* residual, float* y, int N, int H, int W, int Cin, int Cout, int relu, int dgrad, int mode) {
  Conv3x3Params p{x, wpack, bias, mask, residual, y, N, H, W, Cin, Cout, relu, wpack16, act16_mode(mode)};
  const Conv3x3Op op = dgrad ? Conv3x3Op::kDgrad : Conv3x3Op::kFwd;
  return mzsr_launch_conv3x3(p, prec_of(mode % 10), op, nullptr, mode / 10);
}

// mode as emu_conv; returns the plan that ran (mzsr_wgrad_plan: 0 SIMT, 1 tc, 2 halo, 3 thin,
// -1 none).
// halo_max_chunks > 0 overrides the halo plan's chunk cap (several tiles per chunk at
// emulator-sized shapes).
int emu_wgrad(const float* x, const float* gy, float* gw, float* gb, int N, int H, int W, int Cin, int Cout, int mode,
              int halo_max_chunks) {
  Conv3x3WgradParams p{};
  p.x = x;
  p.gy = gy;
  p.gw = gw;
  p.gb = gb;
  p.N = N;
  p.H = H;
  p.W = W;
  p.Cin = Cin;
  p.Cout = Cout;
  p.act16 = act16_mode(mode);
  const int plan = mzsr_wgrad_plan(&p, prec_of(mode % 10), mode / 10);
  if (plan == 2 && halo_max_chunks > 0) p.num_chunks = mzsr_wgrad_halo_chunks(N, H, W, halo_max_chunks);
  if (plan < 0) return plan;
  std::vector<float> pw(static_cast<size_t>(p.num_chunks) * 9 * Cin * Cout + 64, -1e30f);
  std::vector<float> pb(static_cast<size_t>(p.num_chunks) * Cout, -1e30f);
  // 32-byte aligned workspace as cudaMalloc's
  float* pwa = pw.data();
  while (reinterpret_cast<uintptr_t>(pwa) % 32) ++pwa;
  p.partial_w = pwa;
  p.partial_b = pb.data();
  mzsr_launch_wgrad(p, prec_of(mode % 10), plan, nullptr);
  return plan;
}

void emu_l1(const float* pred, const float* target, float* grad, float* loss, long long numel) {
  L1Params p{};
  p.pred = pred;
  p.target = target;
  p.grad = grad;
  p.loss = loss;
  p.numel = numel;
  p.num_blocks = mzsr_l1_num_blocks(numel);
  std::vector<float> partial(p.num_blocks, -1e30f);
  p.partial = partial.data();
  mzsr_launch_l1_loss_grad_partial(p, nullptr);
  mzsr_launch_l1_loss_finalize(p, nullptr);
}

// whether the binding's whole-net ops store a Cin -> Cout layer's tensors as bf16 in
// variant 3 (mzsr_conv3x3_act16_layer_ok, which act16_net asks of every layer)
int emu_act16_layer_ok(int Cin, int Cout) { return mzsr_conv3x3_act16_layer_ok(Cin, Cout) ? 1 : 0; }

// count pairs (p[i], g[i]) of n[i] floats
void emu_sgd(float** params, const float** grads, const long long* n, int count, const float* lr) {
  SgdParams p{};
  p.count = count;
  p.lr = lr;
  for (int i = 0; i < count; ++i) {
    p.p[i] = params[i];
    p.g[i] = grads[i];
    p.n[i] = n[i];
  }
  mzsr_launch_sgd_update(p, nullptr);
}
}
