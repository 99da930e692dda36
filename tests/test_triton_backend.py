"""The ``triton`` backend against the ``reference`` backend: forward, gradients, losses and
weights after k SGD steps.  Without CUDA: tiny images in the Triton interpreter (fp32).
With CUDA (``gpu`` marker): real sizes in TF32/bf16, CUDA-graph replay vs eager, upscale.
"""
import math

import pytest
import torch

from mzsr_fast import backends, model

pytest.importorskip("triton")

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _err(name, got, want, atol, rtol):
    got, want = got.double().cpu(), want.double().cpu()
    err = (got - want).abs().max().item()
    scale = want.abs().max().item()
    tol = atol + rtol * scale
    assert err <= tol, f"{name}: max abs error {err:.3e} > tol {tol:.3e} (atol {atol}, rtol {rtol} x {scale:.3e})"


def _images(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    t = (x + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
    return x.to(DEV), t.to(DEV)


def _pair(precision="fp32", bias=True, **kw):
    p = model.init_params(0, bias=bias, device=DEV)
    ref = backends.get("reference", DEV, precision)
    tri = backends.get("triton", DEV, precision, **kw)
    return p, ref, tri


# ----------------------------------------------------------------------------- tiny (CI)
TINY = [("fp32", 1e-5, 1e-4)]  # (precision, atol, rtol)


def test_available_and_auto():
    ok, why = backends.available(DEV)["triton"]
    assert ok, why
    if DEV == "cpu":
        name, _ = backends.resolve("auto", "cpu")
        assert name != "triton", "auto must never pick the interpreter"


@pytest.mark.parametrize("prec,atol,rtol", TINY)
def test_forward_and_params_roundtrip(prec, atol, rtol):
    p, ref, tri = _pair(prec)
    x, _ = _images((2, 3, 5, 7))
    for b in (ref, tri):
        b.prepare(p, x.shape)
    for k, v in tri.params().items():
        assert torch.equal(v, p[k]), f"params() round trip changed {k}"
    _err("forward", tri.forward(x), ref.forward(x), atol, rtol)
    _err("upscale 1x1", tri.upscale(x[:1, :, :1, :1]), ref.upscale(x[:1, :, :1, :1]), atol, rtol)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("prec,atol,rtol", TINY)
def test_grads(bias, prec, atol, rtol):
    p, ref, tri = _pair(prec, bias=bias)
    x, t = _images((1, 3, 4, 5), seed=1)
    for b in (ref, tri):
        b.prepare(p, x.shape)
    lr_, gr = ref.grads(x, t)
    lt, gt = tri.grads(x, t)
    _err("loss", lt, lr_, atol, rtol)
    assert set(gt) == set(gr)
    for k in gr:
        _err(f"grad {k}", gt[k], gr[k], atol, rtol)
    # grads() must not update
    for k, v in tri.params().items():
        assert torch.equal(v, p[k])


@pytest.mark.parametrize("prec,atol,rtol", TINY)
def test_adapt_k_steps(prec, atol, rtol):
    """The eager path (the graph path's kernel sequence: each layer's reduction applies the
    SGD update right after its dgrad) against the reference."""
    p, ref, tri = _pair(prec)
    x, t = _images((2, 3, 4, 3), seed=2)
    sched = [2e-2, 1e-2]
    for b in (ref, tri):
        b.prepare(p, x.shape)
    lr_ = ref.adapt(x, t, sched)
    lt = tri.adapt(x, t, sched)
    assert lt.shape == (2,)
    _err("losses", lt, lr_, atol, rtol)
    pr, pt = ref.params(), tri.params()
    for k in pr:
        # the update itself (p_k - p_0) is what adaptation computes: compare it
        _err(f"update {k}", pt[k] - p[k], pr[k] - p[k], atol * 1e-2, rtol * 10)
    # the caller's params are never touched
    assert torch.equal(p["layers.0.weight"], model.init_params(0, device=DEV)["layers.0.weight"])


def test_step_matches_adapt():
    p, _, tri = _pair("fp32")
    x, t = _images((1, 3, 3, 4), seed=3)
    tri.prepare(p, x.shape)
    l0 = tri.step(x, t, 0.02)
    a = tri.params()
    tri.prepare(p, x.shape)
    l1 = tri.adapt(x, t, [0.02])
    assert torch.equal(l0.reshape(1), l1)
    for k, v in tri.params().items():
        assert torch.equal(v, a[k]), k


def test_graph_path_bookkeeping_without_cuda():
    """The CUDA-graph path's logic (warm-up on scratch parameters, lr/loss device buffers,
    one cached graph per (shape, steps) replayed for a new image and a new schedule, the
    fused update) with a stand-in graph whose replay re-runs the captured kernel sequence.
    Runs everywhere; the real capture is checked by test_gpu_graph_equals_eager."""
    p, ref, tri = _pair("fp32")

    class _ReplayBody:
        def __init__(self, body):
            self.body = body

        def replay(self):
            self.body()

    def fake_capture(body, warm):
        warm()
        return _ReplayBody(body)

    tri._capture = fake_capture
    tri.use_graphs = True
    x, t = _images((1, 3, 2, 3), seed=4)
    for sched in ([2e-2, 1e-2], [5e-3, 3e-2]):
        for b in (ref, tri):
            b.prepare(p, x.shape)
        lr_ = ref.adapt(x, t, sched)
        lt = tri.adapt(x, t, sched)
        _err(f"losses {sched}", lt, lr_, 1e-5, 1e-4)
        pr, pt = ref.params(), tri.params()
        for k in pr:
            _err(f"update {k} {sched}", pt[k] - p[k], pr[k] - p[k], 1e-7, 1e-3)
    assert len(tri._graphs) == 1
    _err("upscale", tri.upscale(x), ref.upscale(x), 1e-5, 1e-4)
    assert len(tri._fgraphs) == 1


def test_prepare_cache_sees_inplace_edits():
    """prepare() reuses the packed copy of the same weight tensors, but not after an
    in-place edit."""
    _, _, tri = _pair("fp32")
    p = model.init_params(1, device=DEV)
    tri.prepare(p, (1, 3, 2, 2))
    with torch.no_grad():
        p["layers.3.bias"].add_(1.0)
        p["layers.5.weight"].mul_(2.0)
    tri.prepare(p, (1, 3, 2, 2))
    got = tri.params()
    for k in p:
        assert torch.equal(got[k], p[k]), k


def test_errors():
    _, _, tri = _pair("fp32")
    with pytest.raises(RuntimeError):
        tri.forward(torch.zeros(1, 3, 2, 2, device=DEV))
    with pytest.raises(ValueError):
        tri.prepare({"layers.0.weight": torch.zeros(64, 3, 3, 3)}, (1, 3, 2, 2))
    tri.prepare(model.init_params(0, device=DEV), (1, 3, 2, 2))
    with pytest.raises(ValueError):
        tri.forward(torch.zeros(1, 4, 2, 2, device=DEV))
    with pytest.raises(ValueError):
        backends.get("triton", DEV, "fp16")
    assert tri.adapt(torch.zeros(1, 3, 2, 2, device=DEV), torch.zeros(1, 3, 2, 2, device=DEV), []).numel() == 0


# ----------------------------------------------------------------------------- real sizes (GPU)
# (precision, tolerance of the outputs, tolerance of the weight updates) as relative L2
# errors ||a - b|| / ||b||: triton at that precision vs the cuDNN reference in fp32 (TF32
# off), 10 steps of the default schedule.  Relative L2 rather than max-abs: at 512x512x3
# outputs the max of the TF32/bf16 rounding errors says little.
# Sensitivity measured on CPU (reference backend, 64x64, default schedule, 2026-11-26): a
# 1e-3 relative perturbation of the initial weights moves the losses by 0.2% and the
# updates by 0.8% (relative L2, worst tensor); 4e-3 -> 0.9% and 2.9%.  TF32 (2^-11) and
# bf16 (2^-8 operands, bf16 activations) tolerances leave room above that.
# Measured on an H100 (2026-11-26): the TF32 losses after 10 steps were off by 0.54% (64^2
# and 256^2), above the 0.3% first set here, with Set5 MZSR(10) PSNR -0.006 dB: TF32 loss
# tolerance 1e-2.
GPU_PREC = [("fp32", 1e-4, 1e-3), ("tf32", 1e-2, 3e-2), ("bf16", 5e-2, 2.5e-1)]


def _rel(name, got, want, tol):
    got, want = got.double().cpu(), want.double().cpu()
    r = ((got - want).norm() / want.norm().clamp_min(1e-30)).item()
    assert r <= tol, f"{name}: relative L2 error {r:.3e} > {tol:.1e}"


def _smooth_image(shape, seed):
    """A natural-ish image: smooth random field in [0, 1] (adaptation on white noise is
    a degenerate case)."""
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    lo = torch.rand(n, c, max(2, h // 8), max(2, w // 8), generator=g)
    x = torch.nn.functional.interpolate(lo, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return x.to(DEV)


def _psnr(a, b):
    mse = ((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-20))


# every precision at 64x64; TF32 and bf16 at 256x256 (exact fp32 is the slow FMA path)
GPU_ADAPT = [pytest.param(64, *c, id=f"64-{c[0]}") for c in GPU_PREC] + \
    [pytest.param(256, *c, id=f"256-{c[0]}") for c in GPU_PREC if c[0] != "fp32"]


@pytest.mark.gpu
@pytest.mark.parametrize("size,prec,out_rtol,upd_rtol", GPU_ADAPT)
def test_gpu_adapt_real_size(size, prec, out_rtol, upd_rtol):
    from mzsr_fast.api import default_lr_schedule
    from mzsr_fast.degradation import imresize

    p = model.init_params(0, device=DEV)
    ref = backends.get("reference", DEV, "fp32")
    tri = backends.get("triton", DEV, prec)
    lr_img = _smooth_image((1, 3, size, size), seed=size)
    son = imresize(lr_img, scale=0.5)
    son_up = imresize(son, output_shape=(size, size))
    up = imresize(lr_img, output_shape=(2 * size, 2 * size))
    sched = default_lr_schedule(10)
    for b in (ref, tri):
        b.prepare(p, son_up.shape)
    lr_ = ref.adapt(son_up, lr_img, sched)
    lt = tri.adapt(son_up, lr_img, sched)
    _err(f"losses [{prec}]", lt, lr_, 0.0, max(out_rtol, 1e-4))
    pr, pt = ref.params(), tri.params()
    for k in pr:
        _rel(f"update {k} [{prec}]", pt[k] - p[k], pr[k] - p[k], upd_rtol)
    sr_r, sr_t = ref.upscale(up), tri.upscale(up)
    _rel(f"sr [{prec}]", sr_t, sr_r, out_rtol)
    # quality: PSNR of each against the bicubic input differs by < 0.05 dB
    d = abs(_psnr(sr_t, up) - _psnr(sr_r, up))
    assert d < 0.05 or prec == "bf16", f"PSNR differs by {d:.3f} dB"


@pytest.mark.gpu
@pytest.mark.parametrize("prec", ["tf32", "bf16"])
def test_gpu_graph_equals_eager(prec):
    """Graph-replayed adaptation == eager adaptation (the same kernel sequence), bitwise;
    replays are reproducible."""
    p = model.init_params(0, device=DEV)
    x = _smooth_image((1, 3, 96, 80), seed=7)
    t = _smooth_image((1, 3, 96, 80), seed=8)
    up = _smooth_image((1, 3, 192, 160), seed=9)
    sched = [2e-2, 1e-2, 1e-2, 5e-3]
    res = {}
    for name, kw in {"graph": dict(use_graphs=True), "eager": dict(use_graphs=False)}.items():
        b = backends.get("triton", DEV, prec, **kw)
        b.prepare(p, x.shape)
        losses = b.adapt(x, t, sched)
        res[name] = (losses, b.params(), b.upscale(up))
        if name == "graph":
            # a second image through the cached graph: same answer again
            b.prepare(p, x.shape)
            again = b.adapt(x, t, sched)
            assert torch.equal(again, losses), "graph replay is not reproducible"
            assert torch.equal(b.upscale(up), res[name][2])
    g, e = res["graph"], res["eager"]
    assert torch.equal(g[0], e[0]), f"losses graph {g[0].tolist()} != eager {e[0].tolist()}"
    for k in g[1]:
        assert torch.equal(g[1][k], e[1][k]), f"{k}: graph != eager, max diff {(g[1][k] - e[1][k]).abs().max():.3e}"
    assert torch.equal(g[2], e[2])


@pytest.mark.gpu
def test_gpu_api_triton_matches_reference():
    """The public API with backend='triton' (tf32) vs the reference: PSNR within 0.05 dB."""
    from mzsr_fast.api import adapt_and_upscale

    img = _smooth_image((1, 3, 128, 128), seed=12)[0]
    w = model.init_params(0)
    a = adapt_and_upscale(img, weights=w, backend="reference", device=DEV, kernel=None)
    b = adapt_and_upscale(img, weights=w, backend="triton", device=DEV, precision="tf32", kernel=None)
    up = torch.nn.functional.interpolate(img[None], scale_factor=2, mode="bicubic")[0]
    d = abs(_psnr(a, up) - _psnr(b, up))
    assert d < 0.05, f"PSNR differs by {d:.3f} dB"
