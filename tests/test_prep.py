"""prep.make_inputs: the CUDA-graph path equals the eager ops bitwise; CPU is eager."""
import numpy as np
import pytest
import torch

from mzsr_fast import prep
from mzsr_fast.degradation import degrade, gaussian_kernel, imresize

CASES = [  # (H, W, kernel, scale, subsampling)
    (17, 23, gaussian_kernel(21, 2.0), 2, "direct"),
    (32, 32, gaussian_kernel(15, 4.0, 1.0, -0.5), 2, "direct"),
    (20, 13, gaussian_kernel(21, 1.3), 2, "bicubic"),
    (24, 24, None, 4, "bicubic"),
]


def _expected(x, k, s, sub):
    h, w = x.shape[-2:]
    return imresize(degrade(x, k, s, sub), output_shape=(h, w)), imresize(x, output_shape=(h * s, w * s))


@pytest.mark.parametrize("h,w,k,s,sub", CASES)
def test_cpu_inputs_are_the_eager_ops(h, w, k, s, sub):
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    got = prep.make_inputs(x, k, s, sub)
    want = _expected(x, k, s, sub)
    for g, e in zip(got, want):
        assert g.shape == e.shape
        assert torch.equal(g, e)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("h,w,k,s,sub", CASES)
def test_gpu_graph_equals_eager(h, w, k, s, sub):
    dev = torch.device("cuda")
    for seed in range(3):  # first call captures, later calls replay with new content
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed)).to(dev)
        want = [t.clone() for t in prep.eager_inputs(x, k, s, sub)]
        got = [t.clone() for t in prep.make_inputs(x, k, s, sub)]
        for g, e in zip(got, want):
            assert torch.equal(g, e), (seed, (g - e).abs().max().item())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_graph_cache_is_bounded_and_keyed_by_kernel():
    dev = torch.device("cuda")
    x = torch.rand(1, 3, 16, 16, device=dev)
    outs = []
    for var in (0.5, 1.0, 2.0):
        k = gaussian_kernel(7, var)
        outs.append(prep.make_inputs(x, k, 2, "direct")[0].clone())
        assert torch.equal(outs[-1], prep.eager_inputs(x, k, 2, "direct")[0])
    assert not torch.equal(outs[0], outs[2])
    for i in range(prep._MAX_GRAPHS + 3):
        prep.make_inputs(torch.rand(1, 3, 8 + i, 8, device=dev), None, 2, "bicubic")
    assert len(prep._tls.graphs) <= prep._MAX_GRAPHS
