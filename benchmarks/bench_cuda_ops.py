"""Per-op benchmark of the hand-written CUDA kernels (csrc/cuda) against cuDNN, one 3x3
conv layer at a time, NHWC / channels_last, batch 1:

    pytest benchmarks/bench_cuda_ops.py --benchmark-only [--benchmark-json OUT.json]

ops: fwd (conv + bias + ReLU), dgrad (input gradient; cuda: fused with the ReLU mask),
wgrad (weight + bias gradient).  Layers (Cin, Cout): (64, 64) the six middle layers,
(3, 64) the first, (64, 3) the last.  Providers: cudnn_tf32 / cudnn_fp32 (torch,
channels_last, cudnn.benchmark on) and cuda_fp32 / cuda_tf32 / cuda_bf16 (our ops;
tf32:1 / bf16:1 the tensor-core conv kernel's alternative warp layout, fp32:2 / bf16:2
kernel variant 2 of conv3x3_halo.cu).
Env: MZSR_BENCH_OPS_SIZE (default 256), MZSR_BENCH_ROUNDS (default 20).  Each round
times 10 back-to-back calls; ``extra_info`` holds the time per call (s) and TFLOP/s.  CUDA only (skipped elsewhere).
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

SIZE = int(os.environ.get("MZSR_BENCH_OPS_SIZE", "256"))
ROUNDS = int(os.environ.get("MZSR_BENCH_ROUNDS", "20"))
REPS = 10
LAYERS = [(64, 64), (3, 64), (64, 3)]
#: cuda_<precision>[:1|:2]: ":1" = the tensor-core conv kernel's second warp layout (4x2 warps
#: of 32x32 instead of 2x2 of 64x32); ":2" = conv3x3_halo.cu (bf16 halo tiles for 64->64,
#: exact thin kernels (fwd, dgrad, wgrad) for the 3-channel layers, bf16 halo wgrad for 64->64).
PROVIDERS = ["cudnn_tf32", "cudnn_fp32", "cuda_fp32", "cuda_tf32", "cuda_bf16", "cuda_tf32:1", "cuda_bf16:1",
             "cuda_fp32:2", "cuda_bf16:2"]

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA only")


def _cuda_ops():
    from mzsr_fast import _ext

    if not _ext.has_op("cuda_conv3x3_fwd", "cuda"):
        pytest.skip(f"no CUDA kernels in mzsr_fast._C: {_ext.status}")
    return torch.ops.mzsr_fast


@pytest.mark.parametrize("op", ["fwd", "dgrad", "wgrad"])
@pytest.mark.parametrize("layer", LAYERS, ids=lambda l: f"{l[0]}to{l[1]}")
@pytest.mark.parametrize("provider", PROVIDERS)
def test_conv3x3_op(benchmark, provider, layer, op):
    ci, co = layer
    if provider.endswith(":1") and (op == "wgrad" or ci == 3 or co == 3):
        pytest.skip("variant 1 only changes the tensor-core conv kernel (64-channel fwd/dgrad)")
    if provider == "cuda_fp32:2" and ci == co:
        pytest.skip("variant 2 in fp32 only changes the 3-channel layers")
    if op == "dgrad" and ci == 3:
        pytest.skip("the first layer has no input gradient")
    torch.backends.cudnn.benchmark = True
    g = torch.Generator().manual_seed(0)
    n, h, w = 1, SIZE, SIZE
    x = torch.rand(n, h, w, ci, generator=g).cuda()
    gy = torch.randn(n, h, w, co, generator=g).cuda()
    wt = (torch.randn(co, ci, 3, 3, generator=g) / (3 * ci**0.5)).cuda()
    b = torch.zeros(co, device="cuda")
    if provider.startswith("cudnn"):
        tf32 = provider == "cudnn_tf32"
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        xc, gyc = x.permute(0, 3, 1, 2), gy.permute(0, 3, 1, 2)  # channels_last views
        if op == "fwd":
            fn = lambda: F.relu(F.conv2d(xc, wt, b, padding=1))  # noqa: E731
        elif op == "dgrad":
            fn = lambda: torch.nn.grad.conv2d_input(xc.shape, wt, gyc, padding=1) * (xc > 0)  # noqa: E731
        else:
            fn = lambda: (torch.nn.grad.conv2d_weight(xc, wt.shape, gyc, padding=1), gyc.sum((0, 2, 3)))  # noqa: E731
    else:
        ops = _cuda_ops()
        prec = provider.split("_")[1]
        if op == "fwd":
            fn = lambda: ops.cuda_conv3x3_fwd(x, wt, b, True, None, prec)  # noqa: E731
        elif op == "dgrad":
            fn = lambda: ops.cuda_conv3x3_dgrad(gy, wt, x, prec)  # noqa: E731
        else:
            fn = lambda: ops.cuda_conv3x3_wgrad(x, gy, prec)  # noqa: E731

    def run():  # REPS back-to-back calls per round: launch latency overlaps, as in a step
        for _ in range(REPS):
            fn()
        torch.cuda.synchronize()

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=3)
    t = benchmark.stats.stats.median / REPS
    flops = 2 * n * h * w * 9 * ci * co
    benchmark.extra_info.update(provider=provider, op=op, cin=ci, cout=co, size=SIZE, seconds_per_call=t,
                                tflops_per_s=flops / t / 1e12)
