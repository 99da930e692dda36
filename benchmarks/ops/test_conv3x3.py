"""One 3x3 conv layer at a time, NHWC / channels_last, batch 1: the forward (conv + bias +
ReLU), dgrad (input gradient, with the ReLU mask) and wgrad (weight + bias gradient) of the
net's three layer shapes (Cin, Cout): (64, 64) the six middle layers, (3, 64) the first,
(64, 3) the last.

    pytest benchmarks/ops/test_conv3x3.py --benchmark-only

Providers: ``reference_<prec>`` (torch's conv, channels_last: cuDNN with ``cudnn.benchmark``
on CUDA, oneDNN on the CPU) and ``cuda_<prec>[:variant]`` (the hand-written kernels of
csrc/cuda through ``torch.ops.mzsr_fast.cuda_conv3x3_*``; ``:1`` the tensor-core kernel's
second warp layout, ``:2`` conv3x3_halo.cu's halo / thin kernels).  The cpu and triton
backends have no per-conv entry point (their convs are fused into the whole-step op /
kernel chain): they are benchmarked by ``test_backend_ops.py``, and skipped here.

Each round times ``REPS`` back-to-back calls (launch latency overlaps, as in a step); the
table holds the time per call.  Environment: MZSR_BENCH_OPS_SIZE (default 256 on CUDA, 128
on CPU), MZSR_BENCH_ROUNDS (default 3 on CPU, 20 on CUDA).
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from benchmarks import harness as H

DEV = H.device()
SIZE = int(os.environ.get("MZSR_BENCH_OPS_SIZE", "256" if H.on_cuda() else "128"))
ROUNDS = H.rounds(cpu=3, cuda=20)
REPS = 10 if H.on_cuda() else 1
LAYERS = [(64, 64), (3, 64), (64, 3)]
PROVIDERS = (["reference_tf32", "reference_fp32"] if H.on_cuda() else ["reference_fp32"]) + [
    "cpu_fp32", "triton_bf16", "cuda_fp32", "cuda_tf32", "cuda_bf16", "cuda_tf32:1", "cuda_bf16:1", "cuda_fp32:2",
    "cuda_bf16:2"]


def _cuda_ops():
    from mzsr_fast import _ext

    if not torch.cuda.is_available() or not _ext.has_op("cuda_conv3x3_fwd", "cuda"):
        pytest.skip(f"cuda: no CUDA kernels here ({'no GPU' if not torch.cuda.is_available() else _ext.status})")
    return torch.ops.mzsr_fast


@pytest.mark.parametrize("op", ["fwd", "dgrad", "wgrad"])
@pytest.mark.parametrize("layer", LAYERS, ids=lambda l: f"{l[0]}to{l[1]}")
@pytest.mark.parametrize("provider", PROVIDERS)
def test_conv3x3(benchmark, provider, layer, op):
    ci, co = layer
    name, prec, variant = H.split_provider(provider)
    if name in ("cpu", "triton"):
        pytest.skip(f"{name}: no per-conv entry point (convs fused into the step; see test_backend_ops.py)")
    if variant == "1" and (op == "wgrad" or ci == 3 or co == 3):
        pytest.skip("variant 1 only changes the tensor-core conv kernel (64-channel fwd/dgrad)")
    if provider == "cuda_fp32:2" and ci == co:
        pytest.skip("variant 2 in fp32 only changes the 3-channel layers")
    if op == "dgrad" and ci == 3:
        pytest.skip("the first layer has no input gradient")
    ops = _cuda_ops() if name == "cuda" else None
    if DEV.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, SIZE, SIZE, ci, generator=g).to(DEV)
    gy = torch.randn(1, SIZE, SIZE, co, generator=g).to(DEV)
    wt = (torch.randn(co, ci, 3, 3, generator=g) / (3 * ci**0.5)).to(DEV)
    b = torch.zeros(co, device=DEV)
    if name == "reference":
        H.set_tf32(prec == "tf32")
        xc, gyc = x.permute(0, 3, 1, 2), gy.permute(0, 3, 1, 2)  # channels_last views
        if op == "fwd":
            fn = lambda: F.relu(F.conv2d(xc, wt, b, padding=1))  # noqa: E731
        elif op == "dgrad":
            fn = lambda: torch.nn.grad.conv2d_input(xc.shape, wt, gyc, padding=1) * (xc > 0)  # noqa: E731
        else:
            fn = lambda: (torch.nn.grad.conv2d_weight(xc, wt.shape, gyc, padding=1), gyc.sum((0, 2, 3)))  # noqa: E731
    else:
        p = prec if variant == "0" else f"{prec}:{variant}"
        if op == "fwd":
            fn = lambda: ops.cuda_conv3x3_fwd(x, wt, b, True, None, p)  # noqa: E731
        elif op == "dgrad":
            fn = lambda: ops.cuda_conv3x3_dgrad(gy, wt, x, p)  # noqa: E731
        else:
            fn = lambda: ops.cuda_conv3x3_wgrad(x, gy, p)  # noqa: E731

    def run():
        for _ in range(REPS):
            fn()
        H.sync()

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=3 if H.on_cuda() else 1)
    H.record(benchmark, f"ops/conv3x3_{op}_{ci}to{co}", provider, SIZE, scale=1 / REPS,
             flops=REPS * 2 * SIZE * SIZE * 9 * ci * co)
