"""Meta-training throughput: meta-iterations per second, second order (the baseline: true
MAML as SPEC section 3) and first order, on this machine, plus one pretraining step.

    pytest benchmarks/bench_train.py --benchmark-only [--benchmark-json OUT.json]

Environment:
  MZSR_BENCH_DEVICE     cpu | cuda (default: cuda if available)
  MZSR_TRAIN_CONFIG     "patch,meta_batch,n_per_split,inner_steps"; default "32,2,4,5" on CPU
                        (small: the CI machine has 2 shared cores) and "64,5,8,5" (official) on CUDA
  MZSR_BENCH_ROUNDS     timed rounds (default 2 on CPU, 10 on CUDA)

Providers: ``second_order`` (baseline), ``first_order``; on CUDA also ``*_cl``
(channels_last) variants.  The task data are made once (degradation excluded); each
round is one full meta-iteration (inner loops, outer loss, meta-gradient, Adam step).
``extra_info`` holds ``meta_it_per_s`` and the config.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from mzsr_fast import model
from mzsr_fast.train.data import PatchSampler, sample_pretrain_batch, sample_task, step_rng
from mzsr_fast.train.meta import meta_gradients, msl_weights

DEV = os.environ.get("MZSR_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
ON_CUDA = DEV.startswith("cuda")
CFG = [int(v) for v in os.environ.get("MZSR_TRAIN_CONFIG", "64,5,8,5" if ON_CUDA else "32,2,4,5").split(",")]
PATCH, META_BATCH, NPS, INNER = CFG
ROUNDS = int(os.environ.get("MZSR_BENCH_ROUNDS", "10" if ON_CUDA else "2"))

if ON_CUDA:
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def _sampler():
    g = torch.Generator().manual_seed(0)
    ims = [(torch.rand(3, 96, 96, generator=g) * 255).to(torch.uint8) for _ in range(4)]
    return PatchSampler(ims, flat_threshold=0.0)


def _tasks(cl: bool):
    s = _sampler()
    tasks = [sample_task(s, step_rng(0, 0, i), patch=PATCH, n_train=NPS, n_test=NPS) for i in range(META_BATCH)]
    for t in tasks:
        for f in ("x_tr", "y_tr", "x_te", "y_te"):
            v = getattr(t, f).to(DEV)
            setattr(t, f, v.contiguous(memory_format=torch.channels_last) if cl else v)
    return tasks


def _sync():
    if ON_CUDA:
        torch.cuda.synchronize()


PROVIDERS = ["second_order", "first_order"] + (["second_order_cl", "first_order_cl"] if ON_CUDA else [])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_meta_iteration(benchmark, provider):
    torch.set_num_threads(int(os.environ.get("MZSR_BENCH_THREADS", "0")) or torch.get_num_threads())
    first_order = provider.startswith("first")
    tasks = _tasks(provider.endswith("_cl"))
    params = {k: v.to(DEV).requires_grad_(True) for k, v in model.init_params(0).items()}
    opt = torch.optim.Adam(list(params.values()), lr=1e-4)
    w = msl_weights(INNER, 0, 10_000)

    def it():
        grads, loss = meta_gradients(params, tasks, meta_batch=META_BATCH, inner_steps=INNER, alpha=1e-2,
                                     weights=w, first_order=first_order)
        for p, g in zip(params.values(), grads):
            p.grad = g
        opt.step()
        _sync()
        return loss

    it()  # warm-up (cuDNN autotuning, allocator)
    benchmark.pedantic(it, rounds=ROUNDS, iterations=1)
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(meta_it_per_s=1.0 / mean, patch=PATCH, meta_batch=META_BATCH, per_split=NPS,
                                inner_steps=INNER, device=DEV, threads=torch.get_num_threads())


def test_pretrain_step(benchmark):
    """One bicubic pretraining step (batch 16 of 64^2 on CPU, 32 of 96^2 on CUDA), data made once."""
    b, p = (32, 96) if ON_CUDA else (16, 64)
    x, y = sample_pretrain_batch(_sampler(), np.random.default_rng(0), batch=b, patch=p)
    x, y = x.to(DEV), y.to(DEV)
    params = {k: v.to(DEV).requires_grad_(True) for k, v in model.init_params(0).items()}
    opt = torch.optim.Adam(list(params.values()), lr=4e-4)

    def step():
        loss = (model.forward(params, x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        _sync()

    step()
    benchmark.pedantic(step, rounds=ROUNDS, iterations=1)
    benchmark.extra_info.update(steps_per_s=1.0 / benchmark.stats.stats.mean, batch=b, patch=p, device=DEV)
