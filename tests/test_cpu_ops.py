"""Every compiled CPU op (csrc/cpu, ``torch.ops.mzsr_fast.*`` on CPU) against the pure-PyTorch
reference (mzsr_fast.reference): forward, every gradient, the L1 loss, the SGD update and
the whole step, over awkward shapes (1x1, odd sizes, widths that are not a multiple of
any pixel tile, batch > 1, the 3-channel first/last layers) and every kernel variant this
machine can run (avx512 / avx2 / scalar, forced with ``cpu_isa``)."""
import os

import pytest
import torch

from mzsr_fast import _ext, model
from mzsr_fast import reference as R

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _require_ext():
    if not _ext.has_op("adapt_step", "cpu"):
        if os.path.isdir(os.path.join(REPO, "csrc", "cpu")):
            pytest.fail(f"the compiled CPU ops must be built here: {_ext.status}")
        pytest.skip(f"no compiled CPU ops: {_ext.status}")


def _isas():
    _require_ext()
    best = torch.ops.mzsr_fast.cpu_isa("best")
    order = ["avx512", "avx2", "scalar"]
    return order[order.index(best):]


@pytest.fixture(params=["avx512", "avx2", "scalar"])
def isa(request):
    _require_ext()
    if request.param not in _isas():
        pytest.skip(f"{request.param} not supported on this CPU")
    ops = torch.ops.mzsr_fast
    old = ops.cpu_isa("")
    ops.cpu_isa(request.param)
    yield request.param
    ops.cpu_isa(old)


# (N, H, W, Cin, Cout): 1x1, odd, widths off every tile (6, 7, 12 pixels), batch > 1,
# the 3-channel first/last layers, a channel count that is no multiple of any vector
SHAPES = [
    (1, 1, 1, 3, 64),
    (1, 1, 1, 64, 3),
    (1, 5, 7, 3, 64),
    (2, 9, 13, 64, 64),
    (1, 6, 17, 64, 3),
    (2, 3, 25, 64, 3),
    (1, 4, 4, 5, 20),
    (1, 2, 11, 3, 3),
]
DT = [(torch.float32, 2e-5, 1e-4)]  # (dtype, atol, rtol) vs the reference in fp32


def _ids(s):
    return "x".join(map(str, s))


def _check(a, b, atol, rtol, what):
    err = (a - b).abs().max().item() if a.numel() else 0.0
    torch.testing.assert_close(
        a, b, atol=atol, rtol=rtol,
        msg=lambda m: f"{what}: max |diff| {err:.3g} (atol={atol}, rtol={rtol}): {m}")


def _data(shape, seed=0):
    n, h, w, ci, co = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, w, ci, generator=g)
    wt = torch.randn(co, ci, 3, 3, generator=g) / (3 * ci ** 0.5)
    b = torch.randn(co, generator=g)
    res = torch.randn(n, h, w, co, generator=g)
    gy = torch.randn(n, h, w, co, generator=g)
    return x, wt, b, res, gy


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
@pytest.mark.parametrize("dtype,atol,rtol", DT)
def test_conv3x3_fwd(isa, shape, dtype, atol, rtol):
    x, w, b, res, _ = _data(shape)
    ops = torch.ops.mzsr_fast
    for bias in (None, b):
        for relu in (False, True):
            for r in (None, res):
                y = ops.conv3x3_fwd(x, w, bias, relu, r)
                yr = R.conv3x3_fwd(x, w, bias, relu, r)
                _check(y, yr, atol, rtol, f"fwd {isa} {shape} bias={bias is not None} relu={relu} res={r is not None}")


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
@pytest.mark.parametrize("dtype,atol,rtol", DT)
def test_conv3x3_dgrad(isa, shape, dtype, atol, rtol):
    x, w, _, _, gy = _data(shape, 1)
    ops = torch.ops.mzsr_fast
    for m in (None, x):
        _check(ops.conv3x3_dgrad(gy, w, m), R.conv3x3_dgrad(gy, w, m), atol, rtol,
               f"dgrad {isa} {shape} mask={m is not None}")
    # the mask zeroes exactly where the source is <= 0
    g = ops.conv3x3_dgrad(gy, w, x)
    assert torch.all(g[x <= 0] == 0)


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
@pytest.mark.parametrize("dtype,atol,rtol", DT)
def test_conv3x3_wgrad(isa, shape, dtype, atol, rtol):
    x, _, _, _, gy = _data(shape, 2)
    gw, gb = torch.ops.mzsr_fast.conv3x3_wgrad(x, gy)
    gwr, gbr = R.conv3x3_wgrad(x, gy)
    # sums over N*H*W pixels: scale atol with the number of terms
    npx = shape[0] * shape[1] * shape[2]
    _check(gw, gwr, atol * npx ** 0.5, rtol, f"wgrad {isa} {shape}")
    _check(gb, gbr, atol * npx ** 0.5, rtol, f"bias grad {isa} {shape}")


@pytest.mark.parametrize("n", [1, 7, 3 * 64 * 65])
def test_l1_loss_grad(n):
    _require_ext()
    g = torch.Generator().manual_seed(n)
    p = torch.randn(n, generator=g).reshape(1, 1, -1, 1)
    t = torch.randn(n, generator=g).reshape(1, 1, -1, 1)
    t.view(-1)[0] = p.view(-1)[0]  # sign(0) = 0
    loss, grad = torch.ops.mzsr_fast.l1_loss_grad(p, t)
    lr, gr = R.l1_loss_grad(p, t)
    _check(loss, lr, 1e-6, 1e-5, "l1 loss")
    assert torch.equal(grad, gr), "l1 grad differs from sign(d)/numel"
    assert grad.view(-1)[0] == 0


def test_sgd_update_():
    _require_ext()
    g = torch.Generator().manual_seed(0)
    ps = [torch.randn(s, generator=g) for s in [(64, 3, 3, 3), (64,), (300000,)]]
    gs = [torch.randn(p.shape, generator=g) for p in ps]
    ref = [p.clone() for p in ps]
    lr = torch.tensor(0.0123)
    torch.ops.mzsr_fast.sgd_update_(ps, gs, lr)
    R.sgd_update_(ref, gs, lr)
    for a, b in zip(ps, ref):
        _check(a, b, 1e-7, 1e-6, "sgd_update_")
    with pytest.raises(RuntimeError):
        torch.ops.mzsr_fast.sgd_update_(ps, gs[:1], lr)


def _net(seed):
    g = torch.Generator().manual_seed(seed)
    p = model.init_params(seed)
    return [v + 0.01 * torch.randn(v.shape, generator=g) for v in (p[k] for k in model.param_names())]


NET_SHAPES = [(1, 1, 1), (1, 5, 7), (2, 9, 13), (1, 3, 31)]


@pytest.mark.parametrize("nhw", NET_SHAPES, ids=_ids)
@pytest.mark.parametrize("dtype,atol,rtol", DT)
def test_net_forward_and_grads(isa, nhw, dtype, atol, rtol):
    _check_net(nhw, 3, atol, rtol, f"{isa} {nhw}")


def _check_net(nhw, seed, atol, rtol, tag):
    """ops.net_forward / net_grads against the reference: output, loss, every gradient
    (relative to its max, atol x 10)."""
    n, h, w = nhw
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, h, w, 3, generator=g)
    t = torch.rand(n, h, w, 3, generator=g)
    pl = _net(seed)
    ops = torch.ops.mzsr_fast
    acts = R.net_forward(pl, x)
    _check(ops.net_forward(pl, x), acts[-1], atol, rtol, f"net_forward {tag}")
    loss, grads = ops.net_grads(pl, x, t)
    lr_, gout = R.l1_loss_grad(acts[-1], t)
    gref = R.net_backward(pl, acts, gout)
    _check(loss, lr_, atol, rtol, f"loss {tag}")
    for name, a, b in zip(model.param_names(), grads, gref):
        scale = float(b.abs().max()) + 1e-12
        _check(a / scale, b / scale, atol * 10, rtol, f"grad {name} {tag} (relative to max {scale:.3g})")


@pytest.mark.parametrize("nhw", [(1, 6, 5), (2, 11, 19)], ids=_ids)
def test_adapt_step_k_steps(isa, nhw):
    _check_k_steps(nhw, 4, f"{isa} {nhw}")


def _check_k_steps(nhw, seed, tag):
    """4 fused adapt_step calls (the default schedule's first lrs) against the reference:
    each loss and every parameter after the 4 steps."""
    n, h, w = nhw
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, h, w, 3, generator=g)
    t = (x + 0.05 * torch.randn(n, h, w, 3, generator=g)).clamp(0, 1)
    pl, pr = _net(seed), _net(seed)
    for k, lr in enumerate([2e-2, 1e-2, 1e-2, 5e-3]):
        lr = torch.tensor(lr)
        _check(torch.ops.mzsr_fast.adapt_step(pl, x, t, lr), R.adapt_step(pr, x, t, lr), 1e-5, 1e-4,
               f"loss of step {k} ({tag})")
    for name, a, b in zip(model.param_names(), pl, pr):
        _check(a, b, 2e-5, 1e-4, f"{name} after 4 steps ({tag})")


def test_no_allocation_after_first_step():
    _require_ext()
    ops = torch.ops.mzsr_fast
    pl = _net(5)
    x = torch.rand(1, 24, 20, 3)
    t = torch.rand(1, 24, 20, 3)
    lr = torch.tensor(1e-3)
    ops.adapt_step(pl, x, t, lr)
    before = ops.cpu_arena_allocs()
    for _ in range(3):
        ops.adapt_step(pl, x, t, lr)
    ops.net_forward(pl, torch.rand(1, 12, 10, 3))  # a smaller forward reuses the arena
    assert ops.cpu_arena_allocs() == before


def test_bad_inputs_raise():
    _require_ext()
    ops = torch.ops.mzsr_fast
    with pytest.raises(RuntimeError, match="channels"):
        ops.conv3x3_fwd(torch.rand(1, 4, 4, 5), torch.rand(8, 3, 3, 3), None, False, None)
    with pytest.raises(RuntimeError, match="float32"):
        ops.conv3x3_fwd(torch.rand(1, 4, 4, 3, dtype=torch.float64), torch.rand(8, 3, 3, 3), None, False, None)
    with pytest.raises(RuntimeError, match="params"):
        ops.adapt_step(_net(0)[:4], torch.rand(1, 4, 4, 3), torch.rand(1, 4, 4, 3), torch.tensor(0.1))


# ----------------------------------------------------------------------------- Winograd
# F(2x2, 3x3) (csrc/cpu/conv_winograd.inc) serves the forward, the input gradient and the
# weight gradient of the layers with Cin, Cout >= 64 (multiples of 16).  It is on by default
# with the AVX-512 kernels ("auto"); "on" forces it with every ISA so that the same
# algorithm is checked on avx2 and plain C++ too.  Tiles are 2x2 outputs in chunks of 30
# per tile row: the shapes cover 1x1, odd sizes (partial tiles at the right / bottom),
# rows of exactly one chunk (W = 60) and of one chunk plus a partial one (W = 61, 62),
# batch > 1, and output widths that are no multiple of 64 (the 1-vector GEMM blocks).
WINO_SHAPES = [
    (1, 1, 1, 64, 64),
    (1, 2, 3, 64, 64),
    (1, 5, 7, 64, 64),
    (2, 9, 13, 64, 64),
    (1, 3, 61, 64, 64),
    (1, 4, 62, 64, 64),
    (2, 2, 60, 64, 64),
    (1, 6, 5, 64, 80),
    (1, 5, 6, 80, 64),
]


@pytest.fixture
def wino_on():
    _require_ext()
    ops = torch.ops.mzsr_fast
    old = ops.cpu_winograd("").split(":")[0]
    ops.cpu_winograd("on")
    yield
    ops.cpu_winograd(old)


def _errs(a, b):
    """max |a - b| and max |a - b| / max |b| (for the failure message)."""
    d = (a - b).abs().max().item() if a.numel() else 0.0
    return d, d / max(b.abs().max().item(), 1e-30)


@pytest.mark.parametrize("shape", WINO_SHAPES, ids=_ids)
def test_winograd_conv_fwd(isa, wino_on, shape):
    assert torch.ops.mzsr_fast.cpu_winograd("") == "on:1"
    x, w, b, _, _ = _data(shape)
    for bias in (None, b):
        for relu in (False, True):
            y = torch.ops.mzsr_fast.conv3x3_fwd(x, w, bias, relu, None)
            yr = R.conv3x3_fwd(x, w, bias, relu, None)
            _check(y, yr, 2e-5, 1e-4, f"winograd fwd {isa} {shape} bias={bias is not None} relu={relu}")


@pytest.mark.parametrize("shape", WINO_SHAPES, ids=_ids)
def test_winograd_conv_dgrad(isa, wino_on, shape):
    x, w, _, _, gy = _data(shape, 1)
    ops = torch.ops.mzsr_fast
    for m in (None, x):
        _check(ops.conv3x3_dgrad(gy, w, m), R.conv3x3_dgrad(gy, w, m), 2e-5, 1e-4,
               f"winograd dgrad {isa} {shape} mask={m is not None}")
    assert torch.all(ops.conv3x3_dgrad(gy, w, x)[x <= 0] == 0)


@pytest.mark.parametrize("shape", WINO_SHAPES, ids=_ids)
def test_winograd_conv_wgrad(isa, wino_on, shape):
    x, _, _, _, gy = _data(shape, 2)
    gw, gb = torch.ops.mzsr_fast.conv3x3_wgrad(x, gy)
    gwr, gbr = R.conv3x3_wgrad(x, gy)
    npx = shape[0] * shape[1] * shape[2]
    _check(gw, gwr, 2e-5 * npx ** 0.5, 1e-4, f"winograd wgrad {isa} {shape}")
    _check(gb, gbr, 2e-5 * npx ** 0.5, 1e-4, f"winograd bias grad {isa} {shape}")


def test_winograd_error_is_fp32_rounding():
    """The Winograd path's error against the float64 result is of the same order as the
    direct kernel's.  Measured 2026-11-26 (1x24x40, 64 -> 64, seeds 7 and 8, avx512 and
    scalar), max |err| / max |exact|: forward 2.1-2.9e-7 (direct 0.96-1.5e-6, torch
    8.4-9.0e-7: the 64-term dot products of the 16 GEMMs round less than the 576-term
    ones), dgrad 2.8-3.1e-7 (direct 8-9e-7), wgrad 2.2-2.7e-7 (direct 1.5-2.5e-7, torch
    2.8-3.8e-7)."""
    _require_ext()
    ops = torch.ops.mzsr_fast
    old = ops.cpu_winograd("").split(":")[0]
    x, w, b, _, gy = _data((1, 24, 40, 64, 64), 7)
    exact = {
        "fwd": R.conv3x3_fwd(x.double(), w.double(), b.double(), True, None),
        "dgrad": R.conv3x3_dgrad(gy.double(), w.double(), x.double()),
        "wgrad": R.conv3x3_wgrad(x.double(), gy.double())[0],
    }
    err = {}
    try:
        for mode in ("off", "on"):
            ops.cpu_winograd(mode)
            got = {"fwd": ops.conv3x3_fwd(x, w, b, True, None), "dgrad": ops.conv3x3_dgrad(gy, w, x),
                   "wgrad": ops.conv3x3_wgrad(x, gy)[0]}
            for k in got:
                err[mode, k] = _errs(got[k].double(), exact[k])[1]
    finally:
        ops.cpu_winograd(old)
    for k in exact:
        assert err["on", k] < 1e-5, f"winograd {k}: relative error {err['on', k]:.3g} (direct {err['off', k]:.3g})"
        assert err["on", k] < 4 * err["off", k] + 1e-7, (
            f"winograd {k}: relative error {err['on', k]:.3g} vs direct {err['off', k]:.3g}")


@pytest.fixture(params=["on", "off"])
def wino(request):
    _require_ext()
    ops = torch.ops.mzsr_fast
    old = ops.cpu_winograd("").split(":")[0]
    ops.cpu_winograd(request.param)
    yield request.param
    ops.cpu_winograd(old)


@pytest.mark.parametrize("nhw", [(1, 1, 1), (1, 5, 7), (2, 9, 13), (1, 3, 62)], ids=_ids)
def test_winograd_net_forward_and_grads(isa, wino, nhw):
    _check_net(nhw, 8, 2e-5, 1e-4, f"winograd={wino} {isa} {nhw}")


@pytest.mark.parametrize("nhw", [(1, 6, 5), (2, 11, 19)], ids=_ids)
def test_winograd_adapt_step_k_steps(isa, wino, nhw):
    _check_k_steps(nhw, 9, f"winograd={wino} {isa} {nhw}")


def test_winograd_switch():
    _require_ext()
    ops = torch.ops.mzsr_fast
    old = ops.cpu_winograd("").split(":")[0]
    try:
        assert ops.cpu_winograd("off") == "off:0"
        assert ops.cpu_winograd("on") == "on:1"
        auto = ops.cpu_winograd("auto")
        assert auto == ("auto:1" if ops.cpu_isa("") == "avx512" else "auto:0")
        with pytest.raises(RuntimeError, match="cpu_winograd"):
            ops.cpu_winograd("fast")
    finally:
        ops.cpu_winograd(old)
    # the environment variable sets the mode at first use (a fresh process)
    import subprocess
    import sys

    code = "import torch; from mzsr_fast import _ext; _ext.load(); print(torch.ops.mzsr_fast.cpu_winograd(''))"
    for env, want in (("0", "off:0"), ("1", "on:1")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                             env={**os.environ, "MZSR_FAST_CPU_WINOGRAD": env, "OMP_NUM_THREADS": "1"})
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == want, out.stdout
