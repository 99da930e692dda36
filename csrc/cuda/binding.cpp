// Torch binding of the CUDA kernels (csrc/cuda/*.cu): the core schemas of csrc/ops.cpp
// and the cuda_* ops of csrc/cuda/cuda_ops.cpp for CUDA tensors.  Checks shapes, dtypes,
// contiguity and devices, allocates outputs and workspaces through the caching allocator
// (so CUDA-graph capture works), launches on the current stream and checks every launch.
// NVTX ranges: mzsr/cuda/<op>; inside the step ops mzsr/adapt/step<i>/{pack,fwd,loss,bwd,update}
// with per-layer children fwd/layer<i>, bwd/layer<i>/{wgrad,dgrad} (eager runs; a CUDA graph
// replay shows none).
// Built with -DMZSR_CUDA_EMU (tests only, tests/test_cuda_backend.py), the same code runs
// on CPU tensors over the CPU emulator of the kernels (csrc/cuda/emu/binding_emu.h) and is
// exposed as a plain Python module instead of being registered for the CUDA dispatch key.
#include <ATen/ATen.h>
#ifdef MZSR_CUDA_EMU
#include "emu/binding_emu.h"
#else
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <nvtx3/nvToolsExt.h>
#include <torch/library.h>
#endif

#include <climits>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "mzsr_cuda.h"

namespace mzsr_cuda {
namespace {

class NvtxRange {
 public:
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  explicit NvtxRange(const std::string& name) { nvtxRangePushA(name.c_str()); }
  ~NvtxRange() { nvtxRangePop(); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

// Operand precision plus the warp-layout variant of the tensor-core conv kernel.
struct Prec {
  MzsrPrecision p;
  int variant;
  Prec(MzsrPrecision q, int v = 0) : p(q), variant(v) {}  // NOLINT: implicit on purpose
  bool operator==(MzsrPrecision q) const { return p == q; }
  bool operator!=(MzsrPrecision q) const { return p != q; }
};

// "fp32" | "tf32" | "bf16", optionally ":0" / ":1" / ":2" / ":3" (conv kernel variant,
// default 0; see mzsr_conv3x3_pick; 3 = 2 plus bf16 activations in the whole-net ops)
Prec parse_precision(c10::string_view s) {
  std::string p(s.data(), s.size());
  int variant = 0;
  const size_t colon = p.find(':');
  if (colon != std::string::npos) {
    const std::string v = p.substr(colon + 1);
    TORCH_CHECK(v == "0" || v == "1" || v == "2" || v == "3", "mzsr_fast cuda: kernel variant must be 0, 1, 2 or 3, got '",
                v, "' in '", p, "'");
    variant = v[0] - '0';
    p = p.substr(0, colon);
  }
  if (p == "fp32") return Prec(MzsrPrecision::kFp32, variant);
  if (p == "tf32") return Prec(MzsrPrecision::kTf32, variant);
  if (p == "bf16") return Prec(MzsrPrecision::kBf16, variant);
  TORCH_CHECK(false, "mzsr_fast cuda: precision must be 'fp32', 'tf32' or 'bf16' (optionally ':1', ':2' or ':3'), got '", p,
              "'");
}

#ifdef MZSR_CUDA_EMU
cudaStream_t cur_stream() { return nullptr; }
bool on_kernel_device(const at::Tensor& t) { return t.is_cpu(); }  // the emulator runs on host memory
#else
cudaStream_t cur_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }
bool on_kernel_device(const at::Tensor& t) { return t.is_cuda(); }
#endif

void check_float_cuda(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.defined(), "mzsr_fast cuda: ", what, " is undefined");
  TORCH_CHECK(on_kernel_device(t), "mzsr_fast cuda: ", what, " must be a CUDA tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, "mzsr_fast cuda: ", what, " must be float32, got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), "mzsr_fast cuda: ", what, " must be contiguous");
}

void check_same_device(const at::Tensor& t, const at::Tensor& ref, const char* what) {
  TORCH_CHECK(t.device() == ref.device(), "mzsr_fast cuda: ", what, " is on ", t.device(), " but the input is on ",
              ref.device());
}

// NHWC activation; C = -1: any channel count
void check_nhwc(const at::Tensor& t, const char* what, int64_t C = -1) {
  check_float_cuda(t, what);
  TORCH_CHECK(t.dim() == 4, "mzsr_fast cuda: ", what, " must be NHWC (N, H, W, C), got shape ", t.sizes());
  TORCH_CHECK(t.numel() > 0, "mzsr_fast cuda: ", what, " is empty (shape ", t.sizes(), ")");
  TORCH_CHECK(t.size(0) * t.size(1) * t.size(2) <= INT_MAX / 4, "mzsr_fast cuda: ", what,
              " has too many pixels for 32-bit pixel indices: ", t.sizes());
  if (C >= 0)
    TORCH_CHECK(t.size(3) == C, "mzsr_fast cuda: ", what, " must have ", C, " channels, got shape ", t.sizes());
}

void check_same_nhwc(const at::Tensor& t, const at::Tensor& ref, const char* what, int64_t C) {
  check_nhwc(t, what, C);
  check_same_device(t, ref, what);
  TORCH_CHECK(t.size(0) == ref.size(0) && t.size(1) == ref.size(1) && t.size(2) == ref.size(2), "mzsr_fast cuda: ",
              what, " has shape ", t.sizes(), ", not matching the input's N, H, W ", ref.sizes());
}

// OIHW (Cout, Cin, 3, 3) weight; cin = -1: any
void check_weight(const at::Tensor& w, const at::Tensor& ref, const char* what, int64_t cin) {
  check_float_cuda(w, what);
  check_same_device(w, ref, what);
  TORCH_CHECK(w.dim() == 4 && w.size(2) == 3 && w.size(3) == 3 && w.size(0) > 0 && w.size(1) > 0,
              "mzsr_fast cuda: ", what, " must be (Cout, Cin, 3, 3), got ", w.sizes());
  if (cin >= 0)
    TORCH_CHECK(w.size(1) == cin, "mzsr_fast cuda: ", what, " has Cin ", w.size(1), " but its input has ", cin,
                " channels");
}

void check_bias(const at::Tensor& b, const at::Tensor& ref, const char* what, int64_t cout) {
  check_float_cuda(b, what);
  check_same_device(b, ref, what);
  TORCH_CHECK(b.dim() == 1 && b.size(0) == cout, "mzsr_fast cuda: ", what, " must be (", cout, ",), got ", b.sizes());
}

const float* fptr(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// Activation storage of the whole-net ops.  act16 (variant 3 in bf16, every layer on the
// halo / thin kernels: mzsr_conv3x3_act16_layer_ok): a tensor with more than 4 channels is
// bf16, the 3-channel input, output, target and loss gradient stay fp32.  Otherwise fp32.
at::ScalarType act_dtype(bool act16, int64_t channels) { return act16 && channels > 4 ? at::kBFloat16 : at::kFloat; }

// The data pointer of an fp32 or (act16) bf16 tensor as the params structs carry it: the
// kernels reinterpret it by Conv3x3Params::act16 and the channel count.
const float* aptr(const at::Tensor& t) { return static_cast<const float*>(t.data_ptr()); }

// One packed GEMM operand: fp32, plus its bf16 copy (same layout, raw bits as int16) for
// the kernels that read bf16 weights (variants 2/3: conv3x3_halo.cu); b16 undefined otherwise.
struct PackedW {
  at::Tensor f32, b16;
};

// Whether the kernels of `prec` read the bf16 copy of the packed weights.
bool wants_b16(Prec prec) { return mzsr_conv3x3_uses_bf16_weights(prec.p, prec.variant); }

// Packed GEMM operands of OIHW weights: fwd (9*Cin, Cout) for every layer, dgrad
// (9*Cout, Cin) for the layers with want_dgrad[i], each with a bf16 copy if b16.  One
// launch per 16 layers.
void pack_weights(const std::vector<at::Tensor>& ws, const std::vector<bool>& want_fwd,
                  const std::vector<bool>& want_dgrad, bool b16, std::vector<PackedW>* fwd,
                  std::vector<PackedW>* dgrad) {
  const size_t L = ws.size();
  fwd->assign(L, PackedW());
  dgrad->assign(L, PackedW());
  auto alloc = [&](int64_t rows, int64_t cols, const at::Tensor& w) {
    PackedW out{at::empty({rows, cols}, w.options()), at::Tensor()};
    if (b16) out.b16 = at::empty({rows, cols}, w.options().dtype(at::kShort));
    return out;
  };
  auto b16ptr = [](const PackedW& pw) {
    return pw.b16.defined() ? reinterpret_cast<unsigned short*>(pw.b16.data_ptr<int16_t>()) : nullptr;
  };
  for (size_t s = 0; s < L; s += Conv3x3PackParams::kMaxLayers) {
    Conv3x3PackParams p{};
    for (size_t i = s; i < L && p.count < Conv3x3PackParams::kMaxLayers; ++i) {
      const at::Tensor& w = ws[i];
      const int64_t co = w.size(0), ci = w.size(1);
      if (want_fwd[i]) (*fwd)[i] = alloc(9 * ci, co, w);
      if (want_dgrad[i]) (*dgrad)[i] = alloc(9 * co, ci, w);
      const int l = p.count++;
      p.w[l] = w.data_ptr<float>();
      p.fwd[l] = want_fwd[i] ? (*fwd)[i].f32.data_ptr<float>() : nullptr;
      p.dgrad[l] = want_dgrad[i] ? (*dgrad)[i].f32.data_ptr<float>() : nullptr;
      p.fwd16[l] = want_fwd[i] ? b16ptr((*fwd)[i]) : nullptr;
      p.dgrad16[l] = want_dgrad[i] ? b16ptr((*dgrad)[i]) : nullptr;
      p.cin[l] = static_cast<int>(ci);
      p.cout[l] = static_cast<int>(co);
    }
    mzsr_launch_conv3x3_pack(p, cur_stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

PackedW pack_one(const at::Tensor& w, bool dgrad, Prec prec) {
  std::vector<PackedW> f, d;
  pack_weights({w}, {!dgrad}, {dgrad}, wants_b16(prec), &f, &d);
  return dgrad ? d[0] : f[0];
}

// y = epilogue(conv(x, wpack)); the tensor-core kernel when prec != fp32 and it applies.
// act16: tensors stored as act_dtype (the caller allocated x / mask / residual so).
at::Tensor run_conv(const at::Tensor& x, const PackedW& wpack, int64_t cout, const float* bias,
                    const at::Tensor* mask, const at::Tensor* residual, bool relu, Prec prec, Conv3x3Op op,
                    bool act16 = false) {
  at::Tensor y = at::empty({x.size(0), x.size(1), x.size(2), cout}, x.options().dtype(act_dtype(act16, cout)));
  Conv3x3Params p{};
  p.act16 = act16 ? 1 : 0;
  p.x = aptr(x);
  p.wpack = wpack.f32.data_ptr<float>();
  p.wpack16 = wpack.b16.defined() ? reinterpret_cast<const unsigned short*>(wpack.b16.data_ptr<int16_t>()) : nullptr;
  p.bias = bias;
  p.mask = mask ? aptr(*mask) : nullptr;
  p.residual = residual ? aptr(*residual) : nullptr;
  p.y = static_cast<float*>(y.data_ptr());
  p.N = static_cast<int>(x.size(0));
  p.H = static_cast<int>(x.size(1));
  p.W = static_cast<int>(x.size(2));
  p.Cin = static_cast<int>(x.size(3));
  p.Cout = static_cast<int>(cout);
  p.relu = relu ? 1 : 0;
  const int kernel = mzsr_launch_conv3x3(p, prec.p, op, cur_stream(), prec.variant);
  TORCH_CHECK(kernel >= 0, "mzsr_fast cuda: no bf16-storage kernel for a ", p.Cin, " -> ", p.Cout,
              " conv (act16 needs the halo or a thin kernel)");  // unreachable: act16_net checks every layer
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

// (gw (Cout, Cin, 3, 3), gb (Cout,)) fp32, deterministic; act16 as run_conv
std::tuple<at::Tensor, at::Tensor> run_wgrad(const at::Tensor& x, const at::Tensor& gy, Prec prec,
                                             bool act16 = false) {
  const int64_t cin = x.size(3), cout = gy.size(3);
  const auto f32 = x.options().dtype(at::kFloat);
  at::Tensor gw = at::empty({cout, cin, 3, 3}, f32);
  at::Tensor gb = at::empty({cout}, f32);
  Conv3x3WgradParams p{};
  p.act16 = act16 ? 1 : 0;
  p.x = aptr(x);
  p.gy = aptr(gy);
  p.gw = gw.data_ptr<float>();
  p.gb = gb.data_ptr<float>();
  p.N = static_cast<int>(x.size(0));
  p.H = static_cast<int>(x.size(1));
  p.W = static_cast<int>(x.size(2));
  p.Cin = static_cast<int>(cin);
  p.Cout = static_cast<int>(cout);
  const int plan = mzsr_wgrad_plan(&p, prec.p, prec.variant);  // workspaces: fresh, aligned
  TORCH_CHECK(plan >= 0, "mzsr_fast cuda: no bf16-storage weight-gradient kernel for a ", cin, " -> ", cout,
              " conv");  // unreachable: act16_net checks every layer
  at::Tensor ws_w = at::empty({static_cast<int64_t>(p.num_chunks) * 9 * cin * cout}, f32);
  at::Tensor ws_b = at::empty({static_cast<int64_t>(p.num_chunks) * cout}, f32);
  p.partial_w = ws_w.data_ptr<float>();
  p.partial_b = ws_b.data_ptr<float>();
  mzsr_launch_wgrad(p, prec.p, plan, cur_stream());  // launch errors are sticky until read: one check
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {gw, gb};
}

// grad = sign(pred - target) / numel; *loss_out (device float) = mean |pred - target|
at::Tensor run_l1(const at::Tensor& pred, const at::Tensor& target, float* loss_out) {
  at::Tensor grad = at::empty_like(pred);
  L1Params p{};
  p.pred = pred.data_ptr<float>();
  p.target = target.data_ptr<float>();
  p.grad = grad.data_ptr<float>();
  p.loss = loss_out;
  p.numel = pred.numel();
  p.num_blocks = mzsr_l1_num_blocks(p.numel);
  at::Tensor partial = at::empty({p.num_blocks}, pred.options());
  p.partial = partial.data_ptr<float>();
  mzsr_launch_l1_loss_grad_partial(p, cur_stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  mzsr_launch_l1_loss_finalize(p, cur_stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad;
}

void run_sgd(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads, const float* lr) {
  for (size_t s = 0; s < params.size(); s += SgdParams::kMaxTensors) {
    SgdParams p{};
    p.lr = lr;
    for (size_t i = s; i < params.size() && p.count < SgdParams::kMaxTensors; ++i) {
      p.p[p.count] = params[i].data_ptr<float>();
      p.g[p.count] = grads[i].data_ptr<float>();
      p.n[p.count] = params[i].numel();
      ++p.count;
    }
    mzsr_launch_sgd_update(p, cur_stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

void check_lr(const at::Tensor& lr, const at::Tensor& ref, const char* what, int64_t numel) {
  check_float_cuda(lr, what);
  check_same_device(lr, ref, what);
  TORCH_CHECK(lr.numel() == numel, "mzsr_fast cuda: ", what, " must have ", numel, " element(s), got shape ",
              lr.sizes());
}

// ------------------------------------------------------------------------- whole net
struct Net {
  std::vector<at::Tensor> w, b;  // b[i] undefined without biases
  bool has_bias = false;
  size_t layers() const { return w.size(); }
};

// params [w0, b0, w1, b1, ...] or [w0, w1, ...]; checks the channel chain and that the
// last layer maps back to x's channel count (global residual).
Net unpack_net(at::TensorList params, const at::Tensor& x) {
  TORCH_CHECK(!params.empty(), "mzsr_fast cuda: params is empty");
  Net net;
  net.has_bias = params.size() >= 2 && params.size() % 2 == 0 && params[1].dim() == 1;
  const size_t L = net.has_bias ? params.size() / 2 : params.size();
  int64_t c = x.size(3);
  for (size_t i = 0; i < L; ++i) {
    const at::Tensor& w = params[net.has_bias ? 2 * i : i];
    check_weight(w, x, "weight", c);
    net.w.push_back(w);
    if (net.has_bias) {
      const at::Tensor& b = params[2 * i + 1];
      check_bias(b, x, "bias", w.size(0));
      net.b.push_back(b);
    } else {
      net.b.push_back(at::Tensor());
    }
    c = w.size(0);
  }
  TORCH_CHECK(c == x.size(3), "mzsr_fast cuda: the last layer has ", c, " output channels but x has ", x.size(3),
              " (global residual x + net(x))");
  return net;
}

std::string layer_name(const std::string& prefix, size_t layer) { return prefix + "/layer" + std::to_string(layer); }

// Whether the whole-net ops store activations and their gradients as bf16 (act_dtype):
// variant 3 in bf16, and every layer's fwd / dgrad / wgrad on a kernel that reads bf16.
// Otherwise variant 3 runs as variant 2 (fp32 storage).
bool act16_net(const Net& net, Prec prec) {
  if (prec.p != MzsrPrecision::kBf16 || prec.variant != 3) return false;
  for (const at::Tensor& w : net.w)
    if (!mzsr_conv3x3_act16_layer_ok(static_cast<int>(w.size(1)), static_cast<int>(w.size(0)))) return false;
  return true;
}

// acts[0] = x, acts[i+1] = layer i output, acts[L] = x + net(x).  keep = false keeps
// only the last (forward-only use frees the others as it goes).
std::vector<at::Tensor> net_forward_acts(const Net& net, const at::Tensor& x, Prec prec, bool keep,
                                         const std::vector<PackedW>& wfwd, const std::string& prefix) {
  const size_t L = net.layers();
  const bool act16 = act16_net(net, prec);  // x and the output (3 channels) stay fp32
  std::vector<at::Tensor> acts{x};
  at::Tensor h = x;
  for (size_t i = 0; i < L; ++i) {
    NvtxRange r(layer_name(prefix, i));
    const bool last = i + 1 == L;
    h = run_conv(h, wfwd[i], net.w[i].size(0), fptr(net.b[i]), nullptr, last ? &x : nullptr, !last, prec,
                 Conv3x3Op::kFwd, act16);
    if (keep || last) acts.push_back(h);
  }
  return acts;
}

// gradients in params order; *loss_out (device float) = the loss.  NVTX ranges
// <prefix>/{pack,fwd,fwd/layer<i>,loss,bwd,bwd/layer<i>/{wgrad,dgrad}}.
std::vector<at::Tensor> net_grads_impl(const Net& net, const at::Tensor& x, const at::Tensor& target,
                                       Prec prec, float* loss_out, const std::string& prefix) {
  const size_t L = net.layers();
  std::vector<PackedW> wfwd, wdg;
  {
    NvtxRange r(prefix + "/pack");
    std::vector<bool> want_dg(L, true);
    want_dg[0] = false;  // no input gradient of the first layer
    pack_weights(net.w, std::vector<bool>(L, true), want_dg, wants_b16(prec), &wfwd, &wdg);
  }
  std::vector<at::Tensor> acts;
  {
    NvtxRange r(prefix + "/fwd");
    acts = net_forward_acts(net, x, prec, true, wfwd, prefix + "/fwd");
  }
  at::Tensor g;
  {
    NvtxRange r(prefix + "/loss");
    g = run_l1(acts[L], target, loss_out);
  }
  std::vector<at::Tensor> grads(net.has_bias ? 2 * L : L);
  const bool act16 = act16_net(net, prec);  // as net_forward_acts: acts and g of > 4 channels in bf16
  NvtxRange rb(prefix + "/bwd");
  for (size_t ii = L; ii-- > 0;) {
    at::Tensor gw, gb;
    {
      NvtxRange r(layer_name(prefix + "/bwd", ii) + "/wgrad");
      std::tie(gw, gb) = run_wgrad(acts[ii], g, prec, act16);
    }
    if (net.has_bias) {
      grads[2 * ii] = gw;
      grads[2 * ii + 1] = gb;
    } else {
      grads[ii] = gw;
    }
    if (ii > 0) {
      NvtxRange r(layer_name(prefix + "/bwd", ii) + "/dgrad");
      g = run_conv(g, wdg[ii], net.w[ii].size(1), nullptr, &acts[ii], nullptr, false, prec, Conv3x3Op::kDgrad,
                   act16);
    }
  }
  return grads;
}

std::vector<at::Tensor> flat_params(const Net& net) {
  std::vector<at::Tensor> out;
  for (size_t i = 0; i < net.layers(); ++i) {
    out.push_back(net.w[i]);
    if (net.has_bias) out.push_back(net.b[i]);
  }
  return out;
}

// ------------------------------------------------------------------------- op entry points
at::Tensor conv3x3_fwd_p(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b, bool relu,
                         const std::optional<at::Tensor>& residual, Prec prec) {
  NvtxRange r("mzsr/cuda/conv3x3_fwd");
  check_nhwc(x, "x");
  c10::cuda::CUDAGuard guard(x.device());
  check_weight(w, x, "w", x.size(3));
  const int64_t cout = w.size(0);
  const bool has_b = b.has_value() && b->defined();
  if (has_b) check_bias(*b, x, "b", cout);
  const bool has_r = residual.has_value() && residual->defined();
  if (has_r) check_same_nhwc(*residual, x, "residual", cout);
  const PackedW wp = pack_one(w.contiguous(), false, prec);
  return run_conv(x, wp, cout, has_b ? b->data_ptr<float>() : nullptr, nullptr, has_r ? &*residual : nullptr, relu,
                  prec, Conv3x3Op::kFwd);
}

at::Tensor conv3x3_dgrad_p(const at::Tensor& gy, const at::Tensor& w, const std::optional<at::Tensor>& mask_src,
                           Prec prec) {
  NvtxRange r("mzsr/cuda/conv3x3_dgrad");
  check_nhwc(gy, "gy");
  c10::cuda::CUDAGuard guard(gy.device());
  check_weight(w, gy, "w", -1);
  TORCH_CHECK(w.size(0) == gy.size(3), "mzsr_fast cuda: w has Cout ", w.size(0), " but gy has ", gy.size(3),
              " channels");
  const int64_t cin = w.size(1);
  const bool has_m = mask_src.has_value() && mask_src->defined();
  if (has_m) check_same_nhwc(*mask_src, gy, "mask_src", cin);
  const PackedW wp = pack_one(w, true, prec);
  return run_conv(gy, wp, cin, nullptr, has_m ? &*mask_src : nullptr, nullptr, false, prec, Conv3x3Op::kDgrad);
}

std::tuple<at::Tensor, at::Tensor> conv3x3_wgrad_p(const at::Tensor& x, const at::Tensor& gy, Prec prec) {
  NvtxRange r("mzsr/cuda/conv3x3_wgrad");
  check_nhwc(x, "x");
  c10::cuda::CUDAGuard guard(x.device());
  check_nhwc(gy, "gy");
  check_same_nhwc(gy, x, "gy", gy.size(3));
  return run_wgrad(x, gy, prec);
}

at::Tensor net_forward_p(at::TensorList params, const at::Tensor& x, Prec prec) {
  NvtxRange r("mzsr/cuda/net_forward");
  check_nhwc(x, "x");
  c10::cuda::CUDAGuard guard(x.device());
  const Net net = unpack_net(params, x);
  std::vector<PackedW> wfwd, wdg;
  pack_weights(net.w, std::vector<bool>(net.layers(), true), std::vector<bool>(net.layers(), false), wants_b16(prec),
               &wfwd, &wdg);
  return net_forward_acts(net, x, prec, false, wfwd, "mzsr/cuda/net_forward").back();
}

void check_target(const at::Tensor& target, const at::Tensor& x) {
  check_same_nhwc(target, x, "target", x.size(3));
}

std::tuple<at::Tensor, std::vector<at::Tensor>> net_grads_p(at::TensorList params, const at::Tensor& x,
                                                            const at::Tensor& target, Prec prec) {
  NvtxRange r("mzsr/cuda/net_grads");
  check_nhwc(x, "x");
  c10::cuda::CUDAGuard guard(x.device());
  check_target(target, x);
  const Net net = unpack_net(params, x);
  at::Tensor loss = at::empty({}, x.options());
  auto grads = net_grads_impl(net, x, target, prec, loss.data_ptr<float>(), "mzsr/cuda/net_grads");
  return {loss, grads};
}

at::Tensor adapt_p(at::TensorList params, const at::Tensor& x, const at::Tensor& target, const at::Tensor& lrs,
                   Prec prec, bool scalar_loss) {
  check_nhwc(x, "x");
  c10::cuda::CUDAGuard guard(x.device());
  check_target(target, x);
  const Net net = unpack_net(params, x);
  check_float_cuda(lrs, "lr");
  check_same_device(lrs, x, "lr");
  if (scalar_loss) check_lr(lrs, x, "lr", 1);
  const int64_t k = lrs.numel();
  at::Tensor losses = scalar_loss ? at::empty({}, x.options()) : at::empty({k}, x.options());
  const std::vector<at::Tensor> plist = flat_params(net);
  for (int64_t i = 0; i < k; ++i) {
    const std::string step = "mzsr/adapt/step" + std::to_string(i);
    NvtxRange r(step);
    auto grads = net_grads_impl(net, x, target, prec, losses.data_ptr<float>() + i, step);
    NvtxRange ru(step + "/update");
    run_sgd(plist, grads, lrs.data_ptr<float>() + i);
  }
  return losses;
}

// ---- core schemas (csrc/ops.cpp): exact fp32
at::Tensor conv3x3_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b, bool relu,
                       const std::optional<at::Tensor>& residual) {
  return conv3x3_fwd_p(x, w, b, relu, residual, MzsrPrecision::kFp32);
}

at::Tensor conv3x3_dgrad(const at::Tensor& gy, const at::Tensor& w, const std::optional<at::Tensor>& mask_src) {
  return conv3x3_dgrad_p(gy, w, mask_src, MzsrPrecision::kFp32);
}

std::tuple<at::Tensor, at::Tensor> conv3x3_wgrad(const at::Tensor& x, const at::Tensor& gy) {
  return conv3x3_wgrad_p(x, gy, MzsrPrecision::kFp32);
}

std::tuple<at::Tensor, at::Tensor> l1_loss_grad(const at::Tensor& pred, const at::Tensor& target) {
  NvtxRange r("mzsr/cuda/l1_loss_grad");
  check_float_cuda(pred, "pred");
  c10::cuda::CUDAGuard guard(pred.device());
  check_float_cuda(target, "target");
  check_same_device(target, pred, "target");
  TORCH_CHECK(pred.sizes() == target.sizes(), "mzsr_fast cuda: pred ", pred.sizes(), " and target ", target.sizes(),
              " differ in shape");
  TORCH_CHECK(pred.numel() > 0, "mzsr_fast cuda: l1_loss_grad of an empty tensor");
  at::Tensor loss = at::empty({}, pred.options());
  at::Tensor grad = run_l1(pred, target, loss.data_ptr<float>());
  return {loss, grad};
}

void sgd_update_(at::TensorList params, at::TensorList grads, const at::Tensor& lr) {
  NvtxRange r("mzsr/cuda/sgd_update");
  TORCH_CHECK(params.size() == grads.size(), "mzsr_fast cuda: sgd_update_: ", params.size(), " params but ",
              grads.size(), " grads");
  if (params.empty()) return;
  c10::cuda::CUDAGuard guard(params[0].device());
  check_lr(lr, params[0], "lr", 1);
  std::vector<at::Tensor> ps, gs;
  for (size_t i = 0; i < params.size(); ++i) {
    check_float_cuda(params[i], "param");
    check_float_cuda(grads[i], "grad");
    check_same_device(params[i], params[0], "param");
    check_same_device(grads[i], params[0], "grad");
    TORCH_CHECK(params[i].sizes() == grads[i].sizes(), "mzsr_fast cuda: sgd_update_: param ", i, " has shape ",
                params[i].sizes(), " but its grad ", grads[i].sizes());
    if (params[i].numel() == 0) continue;
    ps.push_back(params[i]);
    gs.push_back(grads[i]);
  }
  run_sgd(ps, gs, lr.data_ptr<float>());
}

at::Tensor adapt_step(at::TensorList params, const at::Tensor& x, const at::Tensor& target, const at::Tensor& lr) {
  NvtxRange r("mzsr/cuda/adapt_step");
  return adapt_p(params, x, target, lr, MzsrPrecision::kFp32, true);
}

// ---- cuda_* ops (csrc/cuda/cuda_ops.cpp)
at::Tensor cuda_conv3x3_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b, bool relu,
                            const std::optional<at::Tensor>& residual, c10::string_view precision) {
  return conv3x3_fwd_p(x, w, b, relu, residual, parse_precision(precision));
}

at::Tensor cuda_conv3x3_dgrad(const at::Tensor& gy, const at::Tensor& w, const std::optional<at::Tensor>& mask_src,
                              c10::string_view precision) {
  return conv3x3_dgrad_p(gy, w, mask_src, parse_precision(precision));
}

std::tuple<at::Tensor, at::Tensor> cuda_conv3x3_wgrad(const at::Tensor& x, const at::Tensor& gy,
                                                      c10::string_view precision) {
  return conv3x3_wgrad_p(x, gy, parse_precision(precision));
}

at::Tensor cuda_net_forward(at::TensorList params, const at::Tensor& x, c10::string_view precision) {
  return net_forward_p(params, x, parse_precision(precision));
}

std::tuple<at::Tensor, std::vector<at::Tensor>> cuda_net_grads(at::TensorList params, const at::Tensor& x,
                                                                const at::Tensor& target, c10::string_view precision) {
  return net_grads_p(params, x, target, parse_precision(precision));
}

at::Tensor cuda_adapt_step(at::TensorList params, const at::Tensor& x, const at::Tensor& target, const at::Tensor& lr,
                           c10::string_view precision) {
  NvtxRange r("mzsr/cuda/adapt_step");
  return adapt_p(params, x, target, lr, parse_precision(precision), true);
}

at::Tensor cuda_adapt(at::TensorList params, const at::Tensor& x, const at::Tensor& target, const at::Tensor& lrs,
                      c10::string_view precision) {
  NvtxRange r("mzsr/cuda/adapt");
  return adapt_p(params, x, target, lrs, parse_precision(precision), false);
}

}  // namespace
}  // namespace mzsr_cuda

#ifdef MZSR_CUDA_EMU
#include "emu/binding_emu_module.h"
#else
TORCH_LIBRARY_IMPL(mzsr_fast, CUDA, m) {
  m.impl("conv3x3_fwd", &mzsr_cuda::conv3x3_fwd);
  m.impl("conv3x3_dgrad", &mzsr_cuda::conv3x3_dgrad);
  m.impl("conv3x3_wgrad", &mzsr_cuda::conv3x3_wgrad);
  m.impl("l1_loss_grad", &mzsr_cuda::l1_loss_grad);
  m.impl("sgd_update_", &mzsr_cuda::sgd_update_);
  m.impl("adapt_step", &mzsr_cuda::adapt_step);
  m.impl("cuda_conv3x3_fwd", &mzsr_cuda::cuda_conv3x3_fwd);
  m.impl("cuda_conv3x3_dgrad", &mzsr_cuda::cuda_conv3x3_dgrad);
  m.impl("cuda_conv3x3_wgrad", &mzsr_cuda::cuda_conv3x3_wgrad);
  m.impl("cuda_net_forward", &mzsr_cuda::cuda_net_forward);
  m.impl("cuda_net_grads", &mzsr_cuda::cuda_net_grads);
  m.impl("cuda_adapt_step", &mzsr_cuda::cuda_adapt_step);
  m.impl("cuda_adapt", &mzsr_cuda::cuda_adapt);
}
#endif
