"""The Triton kernels of ``mzsr_fast.kernels.conv3x3`` against ``mzsr_fast.reference``.

Without CUDA they run in the Triton interpreter (``TRITON_INTERPRET=1``, set by conftest)
on tiny shapes with shrunken tiles (several tiles per image, K blocks inside a tap, partial
tails); with CUDA the same tests run on the GPU, plus ``gpu``-marked tests at real sizes in
fp32 / TF32 / bf16 against a float64 oracle.
"""
import os
import subprocess
import sys

import pytest
import torch

from mzsr_fast import reference as R

K = pytest.importorskip("mzsr_fast.kernels.conv3x3")

DEV = "cuda" if torch.cuda.is_available() else "cpu"

# (N, H, W, Cin, Cout): odd sizes, 1x1, H/W not multiples of any tile, the 3-channel first
# and last layers, batch 2, and one 64->64 layer on a small image
SHAPES = [
    (2, 5, 7, 3, 64),
    (1, 1, 1, 3, 64),
    (1, 9, 4, 64, 64),
    (2, 5, 7, 64, 3),
    (1, 3, 1, 64, 3),
]
IDS = ["2x5x7_3-64", "1x1x1_3-64", "1x9x4_64-64", "2x5x7_64-3", "1x3x1_64-3"]

# (precision, atol, rtol) of the tiny tests: exact fp32 (ieee dot) everywhere
TINY_PREC = [("fp32", 2e-5, 2e-5)]


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    """Interpreter tiles small enough that the tiny images span several tiles/chunks."""
    monkeypatch.setitem(K.INTERP, "BM", 16)
    monkeypatch.setitem(K.INTERP, "BK", 32)
    monkeypatch.setitem(K.INTERP, "CHUNK", 32)


def _check(name, got, want, atol, rtol):
    got = got.double().cpu()
    want = want.double().cpu()
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    err = (got - want).abs().max().item() if got.numel() else 0.0
    scale = want.abs().max().item() if want.numel() else 0.0
    tol = atol + rtol * scale
    assert err <= tol, f"{name}: max abs error {err:.3e} > tol {tol:.3e} (atol {atol}, rtol {rtol} x max|ref| {scale:.3e})"


def _data(n, h, w, cin, cout, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, w, cin, generator=g)
    wt = torch.randn(cout, cin, 3, 3, generator=g) * (1.0 / (3 * cin) ** 0.5)
    b = torch.randn(cout, generator=g)
    res = torch.randn(n, h, w, cout, generator=g)
    gy = torch.randn(n, h, w, cout, generator=g)
    return [t.to(DEV) for t in (x, wt, b, res, gy)]


@pytest.mark.parametrize("prec,atol,rtol", TINY_PREC)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_fwd(shape, prec, atol, rtol):
    x, w, b, res, _ = _data(*shape)
    _check("fwd relu", K.conv3x3_fwd(x, w, b, True, precision=prec), R.conv3x3_fwd(x, w, b, True), atol, rtol)
    _check("fwd linear", K.conv3x3_fwd(x, w, b, False, precision=prec), R.conv3x3_fwd(x, w, b, False), atol, rtol)
    _check("fwd residual", K.conv3x3_fwd(x, w, b, False, res, precision=prec),
           R.conv3x3_fwd(x, w, b, False, res), atol, rtol)
    _check("fwd no bias", K.conv3x3_fwd(x, w, None, True, precision=prec), R.conv3x3_fwd(x, w, None, True), atol, rtol)


@pytest.mark.parametrize("prec,atol,rtol", TINY_PREC)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_fwd_fused_l1(shape, prec, atol, rtol):
    x, w, b, res, _ = _data(*shape)
    target = R.conv3x3_fwd(x, w, b, False, res) + 0.1 * torch.randn_like(res)
    # make exact ties (sign(0) = 0) likely for some elements: target == pred there
    pred = R.conv3x3_fwd(x, w, b, False, res)
    target.view(-1)[::5] = pred.view(-1)[::5]
    loss, g = K.conv3x3_fwd_l1(x, w, b, res, target, precision=prec)
    rloss, rg = R.l1_loss_grad(pred, target)
    _check("l1 loss", loss, rloss, atol, rtol)
    # the sign may legitimately flip only where |pred - target| is at rounding level
    d = (pred - target).abs()
    sure = d > 1e-4 * pred.abs().max()
    _check("l1 grad", g[sure], rg[sure], 0.0, 1e-6)
    assert (g[~sure].abs() <= rg.abs().max() * (1 + 1e-6)).all()


@pytest.mark.parametrize("prec,atol,rtol", TINY_PREC)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_dgrad(shape, prec, atol, rtol):
    x, w, _, _, gy = _data(*shape)
    _check("dgrad", K.conv3x3_dgrad(gy, w, precision=prec), R.conv3x3_dgrad(gy, w), atol, rtol)
    relu_x = torch.relu(x)  # the layer input as the previous ReLU made it: many exact zeros
    _check("dgrad relu mask", K.conv3x3_dgrad(gy, w, relu_x, precision=prec), R.conv3x3_dgrad(gy, w, relu_x), atol, rtol)


@pytest.mark.parametrize("prec,atol,rtol", TINY_PREC)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_wgrad(shape, prec, atol, rtol):
    """Both weight-gradient kernels: a kernel row of 3 taps per program (64-channel inputs),
    K flattened over (tap, channel) (the 3-channel first layer, and the odd case below)."""
    x, _, _, _, gy = _data(*shape)
    gw, gb = K.conv3x3_wgrad(x, gy, precision=prec)
    rw, rb = R.conv3x3_wgrad(x, gy)
    _check("wgrad", gw, rw, atol, rtol)
    _check("bias grad", gb, rb, atol, rtol)


def test_wgrad_flattened_k_other_widths():
    """The flattened-K kernel for input widths that are not a multiple of 64."""
    x, _, _, _, gy = _data(1, 4, 5, 5, 16, seed=2)
    gw, gb = K.conv3x3_wgrad(x, gy)
    rw, rb = R.conv3x3_wgrad(x, gy)
    _check("wgrad 5->16", gw, rw, 2e-5, 2e-5)
    _check("bias grad 5->16", gb, rb, 2e-5, 2e-5)


def test_wgrad_deterministic():
    x, _, _, _, gy = _data(2, 5, 7, 64, 64, seed=3)
    a = K.conv3x3_wgrad(x, gy)
    b = K.conv3x3_wgrad(x, gy)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), "wgrad is not bitwise reproducible"


def test_wgrad_chunking_invariant():
    """Different pixel chunkings (number of partials) agree to rounding."""
    x, _, _, _, gy = _data(2, 5, 7, 3, 64, seed=4)
    a = K.conv3x3_wgrad(x, gy, chunk=16)
    b = K.conv3x3_wgrad(x, gy, chunk=1024)
    _check("wgrad chunk 16 vs 1024", a[0], b[0], 1e-5, 1e-5)
    _check("bias grad chunk 16 vs 1024", a[1], b[1], 1e-5, 1e-5)


def test_sgd_update():
    g = torch.Generator().manual_seed(5)
    ps = [torch.randn(64, 3, 3, 3, generator=g).to(DEV), torch.randn(64, generator=g).to(DEV)]
    gs = [torch.randn_like(p) for p in ps]
    lr = torch.tensor(0.0123, device=DEV)
    want = [p.clone() for p in ps]
    R.sgd_update_(want, gs, lr)
    K.sgd_update_(ps, gs, lr)
    for p, q in zip(ps, want):
        _check("sgd", p, q, 1e-7, 1e-6)
    with pytest.raises(ValueError):
        K.sgd_update_(ps, gs[:1], lr)


@pytest.mark.parametrize("cin,cout", [(3, 64), (64, 3)])
def test_reduce_fused_sgd(cin, cout):
    """The wgrad reduction's last stage: fixed-order sum of partials, optional store of g,
    w -= lr[idx] * g with lr read from a device tensor, and the updated weights written to
    the forward kernel's ([tap][co][ci]) copy."""
    g = torch.Generator().manual_seed(6)
    s, p = 5, 9 * cin * cout + cout
    ws = torch.randn(s, p + 7, generator=g).to(DEV)  # row stride larger than p
    param = torch.randn(p, generator=g).to(DEV)
    param_t = torch.zeros(9 * cin * cout, device=DEV)
    param_d = torch.zeros(9 * cin * cout, device=DEV)
    lrs = torch.tensor([0.5, 0.02, 0.25], device=DEV)
    want_g = ws[:, :p].sum(0)
    want_p = param - 0.02 * want_g
    gbuf = torch.zeros(p, device=DEV)
    K.launch_reduce(ws, s, p, g=gbuf, param=param, lr=lrs, lr_idx=1, param_t=param_t, param_d=param_d,
                    cin=cin, cout=cout)
    _check("reduce g", gbuf, want_g, 1e-5, 1e-6)
    _check("reduce+sgd param", param, want_p, 1e-5, 1e-6)
    want_t = K.pack_weight_fwd(K.unpack_weight(param[: 9 * cin * cout], cin, cout))
    assert torch.equal(param_t, want_t), "forward copy of the updated weights is wrong"
    assert torch.equal(param_d, param[: 9 * cin * cout]), "input-gradient copy of the updated weights is wrong"
    # bias-less layers update only the weights: p = 9 cin cout leaves the bias slots alone
    param2 = param.clone()
    K.launch_reduce(ws, s, 9 * cin * cout, param=param2, lr=lrs, lr_idx=0, param_t=param_t, param_d=param_d,
                    cin=cin, cout=cout)
    assert torch.equal(param2[9 * cin * cout:], param[9 * cin * cout:])


def test_pack_roundtrip():
    w = torch.randn(64, 3, 3, 3)
    assert torch.equal(K.unpack_weight(K.pack_weight(w), 3, 64), w)
    wt = torch.empty(9 * 3 * 64)
    K.refresh_fwd_weight(K.pack_weight(w), wt, 3, 64)
    assert torch.equal(wt, K.pack_weight_fwd(w))


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the gpu-marked tests compile and run the real kernels")
def test_aot_compile_sm90():
    """The hot kernel variants compile for sm_90 (Triton's compiler + ptxas, no GPU): what
    the interpreter cannot check (layouts, shared memory, wgmma lowering)."""
    try:
        import triton.backends.nvidia.compiler  # noqa: F401
    except ImportError as e:
        pytest.skip(f"triton has no NVIDIA backend here: {e}")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-m", "mzsr_fast.kernels.aot_check", "--quick"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"AOT compile failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    hot = [ln for ln in r.stdout.splitlines() if "64->64" in ln]
    assert hot and all("wgmma.mma_async=0" not in ln for ln in hot), f"a 64->64 conv kernel lost wgmma:\n{r.stdout}"


# ----------------------------------------------------------------------------- real sizes (GPU)
# (precision, atol, rtol) against a float64 oracle; tolerances relative to max|ref|.
# TF32: 10-bit mantissa products, K = 576 sums; bf16: 8-bit operands and bf16 storage.
# Every precision at 64x64, plus an odd-sized batch of 2 in TF32 (kept short: each case
# compiles its own kernels on the GPU).
GPU_CASES = [
    (1, 64, 64, "fp32", 1e-5, 1e-5),
    (1, 64, 64, "tf32", 0.0, 5e-3),
    (1, 64, 64, "bf16", 0.0, 3e-2),
    (2, 37, 53, "tf32", 0.0, 5e-3),
]
GPU_LAYERS = [(3, 64), (64, 64), (64, 3)]


def _oracle_inputs(x, prec):
    # bf16 path stores activations/gradients in bf16 and casts weights to bf16: give the
    # oracle the same rounded operands so the test measures the kernel, not the format
    if prec == "bf16":
        return x.to(torch.bfloat16).double()
    return x.double()


@pytest.mark.gpu
@pytest.mark.parametrize("cin,cout", GPU_LAYERS)
@pytest.mark.parametrize("n,h,w,prec,atol,rtol", GPU_CASES)
def test_gpu_kernels_real_size(n, h, w, cin, cout, prec, atol, rtol):
    """The kernel variants the backend runs for this layer (so the GPU check compiles
    nothing extra): forward with ReLU, or for the last layer with the residual and the
    fused L1 gradient; input gradient with the ReLU mask (not for the first layer);
    weight/bias gradients."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    x, wt, b, res, gy = _data(n, h, w, cin, cout, seed=11)
    xo, wo, gyo = _oracle_inputs(x, prec), _oracle_inputs(wt, prec), _oracle_inputs(gy, prec)
    last = cout == 3
    if not last:
        _check(f"fwd relu [{prec}]", K.conv3x3_fwd(x, wt, b, True, precision=prec),
               R.conv3x3_fwd(xo, wo, b.double(), True), atol, rtol)
    else:
        _check(f"fwd residual [{prec}]", K.conv3x3_fwd(x, wt, b, False, res, precision=prec),
               R.conv3x3_fwd(xo, wo, b.double(), False, res.double()), atol, rtol)
        target = R.conv3x3_fwd(x, wt, b, False, res) + 0.5 * torch.randn_like(res)
        loss, _ = K.conv3x3_fwd_l1(x, wt, b, res, target, precision=prec)
        rloss, _ = R.l1_loss_grad(R.conv3x3_fwd(xo, wo, b.double(), False, res.double()), target.double())
        _check(f"l1 loss [{prec}]", loss, rloss, 0.0, max(rtol, 1e-5))
    if cin != 3:
        relu_x = torch.relu(x)
        _check(f"dgrad mask [{prec}]", K.conv3x3_dgrad(gy, wt, relu_x, precision=prec),
               R.conv3x3_dgrad(gyo, wo, _oracle_inputs(relu_x, prec)), atol, rtol)
    gw, gb = K.conv3x3_wgrad(x, gy, precision=prec)
    rw, rb = R.conv3x3_wgrad(xo, gyo)
    _check(f"wgrad [{prec}]", gw, rw, atol, rtol)
    _check(f"bias grad [{prec}]", gb, rb, atol, rtol)


def _tune_cases():
    if not torch.cuda.is_available():
        return [pytest.param("none", 0, 0, marks=pytest.mark.gpu)]
    out = []
    for (kind, mode), cfgs in K._TUNE.items():
        for i in range(len(cfgs)):
            out.append(pytest.param(kind, mode, i, id=f"{kind}-{'tf32' if mode == 1 else 'bf16'}-{i}", marks=pytest.mark.gpu))
    return out


@pytest.mark.gpu
@pytest.mark.parametrize("kind,mode,idx", _tune_cases())
def test_gpu_every_tune_config(kind, mode, idx, monkeypatch):
    """Each autotune candidate on its own (autotuning picks any of them per size class, so
    every one must be right): forced as the only candidate with tuning off, the 64->64
    forward, input gradient and weight gradient at 64x64 and an odd 37x29 batch of 2."""
    prec = "tf32" if mode == 1 else "bf16"
    atol, rtol = (0.0, 1e-2) if prec == "tf32" else (0.0, 3e-2)
    monkeypatch.setenv("MZSR_TRITON_AUTOTUNE", "0")
    monkeypatch.setitem(K._TUNE, (kind, mode), [K._TUNE[(kind, mode)][idx]])
    for n, h, w in ((1, 64, 64), (2, 37, 29)):
        x, wt, b, res, gy = _data(n, h, w, 64, 64, seed=5)
        xo, wo, gyo = _oracle_inputs(x, prec), _oracle_inputs(wt, prec), _oracle_inputs(gy, prec)
        if kind == "fwd":
            _check(f"fwd {kind} cfg {idx} [{prec}] {h}x{w}", K.conv3x3_fwd(x, wt, b, True, precision=prec),
                   R.conv3x3_fwd(xo, wo, b.double(), True), atol, rtol)
        elif kind == "dgrad":
            rx = torch.relu(x)
            _check(f"dgrad cfg {idx} [{prec}] {h}x{w}", K.conv3x3_dgrad(gy, wt, rx, precision=prec),
                   R.conv3x3_dgrad(gyo, wo, _oracle_inputs(rx, prec)), atol, rtol)
        else:  # wgrad3: the 64-channel layers' weight gradient
            gw, gb = K.conv3x3_wgrad(x, gy, precision=prec)
            rw, rb = R.conv3x3_wgrad(xo, gyo)
            _check(f"{kind} cfg {idx} [{prec}] {h}x{w}", gw, rw, atol, rtol)
            _check(f"{kind} bias cfg {idx} [{prec}] {h}x{w}", gb, rb, atol, rtol)
