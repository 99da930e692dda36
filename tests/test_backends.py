"""The shared backend suite: every backend against ``reference`` on the same inputs
(forward, every gradient, the weights after k steps, the caller's weights untouched).

On a CPU-only machine this runs ``cpu`` (the native extension, which must be built) and
``triton`` in the interpreter (tiny shapes); with CUDA it also runs ``reference``
tf32/bf16, ``triton`` and ``cuda`` on the GPU (the GPU check script).
"""
import os

import pytest
import torch

from mzsr_fast import backends, model

HAS_CUDA = torch.cuda.is_available()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# precision -> max |diff| / max |ref| against the fp32 reference (forward outputs,
# gradients, weights after k steps); looser for the reduced-precision tensor-core paths.
# tf32: measured on an H100 (2026-11-26) the triton TF32 gradient of layers.4.weight was off
# by 0.034 of its max on a 13x10 input (Triton's TF32 operands are truncated, not rounded),
# while the Set5 MZSR(10) PSNR moved by -0.006 dB; a real indexing bug is O(1) here.
TOL = {"fp32": 2e-4, "tf32": 5e-2, "bf16": 6e-2}


def _cases():
    cases = []
    # CPU device
    for name in ("cpu", "triton"):
        cases.append(pytest.param(name, "cpu", "fp32", id=f"{name}-cpu-fp32"))
    # CUDA device
    for name in ("reference", "triton", "cuda"):
        for prec in ("fp32", "tf32", "bf16"):
            if name == "reference" and prec == "fp32":
                continue
            cases.append(pytest.param(name, "cuda", prec, id=f"{name}-cuda-{prec}", marks=pytest.mark.gpu))
    return cases


def _make(name, device, precision):
    ok, why = backends.available(device)[name]
    if not ok:
        if name == "cpu" and os.path.isdir(os.path.join(REPO, "csrc", "cpu")) and os.listdir(os.path.join(REPO, "csrc", "cpu")):
            pytest.fail(f"the cpu backend must be built here but is unavailable: {why}")
        if device == "cuda" and name in ("triton", "cuda"):
            pytest.fail(f"backend {name} unavailable on a CUDA machine: {why}")
        pytest.skip(f"backend {name} unavailable on {device}: {why}")
    b = backends.get(name, device, precision)
    if precision not in b.precisions:
        pytest.skip(f"{name} has no {precision}")
    return b


def _size(name, device):
    # the Triton interpreter is slow: keep its images tiny
    return (5, 7) if (name == "triton" and device == "cpu") else (13, 10)


def _inputs(device, h, w, n=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, h, w, generator=g)
    tgt = (x + 0.05 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)
    p = model.init_params(seed)
    # non-zero biases so bias paths are exercised
    p = {k: (v + 0.01 * torch.randn(v.shape, generator=g)) for k, v in p.items()}
    return x.to(device), tgt.to(device), {k: v.to(device) for k, v in p.items()}


def _close(a, b, prec, what):
    """max |a - b| <= tol * max |b|: a scale-free bound that suits gradients of any size."""
    tol = TOL[prec]
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    assert torch.isfinite(a).all(), f"{what}: NaN/inf"
    scale = max(float(b.abs().max()), 1e-8)
    err = float((a.float() - b.float()).abs().max()) / scale
    assert err <= tol, f"{what}: max |diff| / max |ref| = {err:.3g} > {tol} ({prec})"


@pytest.mark.parametrize("name,device,precision", _cases())
def test_forward_matches_reference(name, device, precision):
    b = _make(name, device, precision)
    h, w = _size(name, device)
    x, tgt, p = _inputs(device, h, w, n=2)
    ref = backends.get("reference", device, "fp32")
    ref.prepare(p, x.shape)
    b.prepare(p, x.shape)
    _close(b.forward(x), ref.forward(x), precision, f"{name} forward")
    # a different size than prepared (upscale runs at the HR size)
    x2 = torch.rand(1, 3, h + 3, w + 1, device=device)
    _close(b.upscale(x2), ref.forward(x2), precision, f"{name} upscale at another size")


@pytest.mark.parametrize("name,device,precision", _cases())
def test_grads_match_reference(name, device, precision):
    b = _make(name, device, precision)
    h, w = _size(name, device)
    x, tgt, p = _inputs(device, h, w, seed=1)
    ref = backends.get("reference", device, "fp32")
    ref.prepare(p, x.shape)
    b.prepare(p, x.shape)
    l_ref, g_ref = ref.grads(x, tgt)
    l_b, g_b = b.grads(x, tgt)
    _close(l_b.reshape(()), l_ref, precision, f"{name} loss")
    assert set(g_b) == set(g_ref)
    for k in model.param_names():
        _close(g_b[k], g_ref[k], precision, f"{name} grad {k}")


@pytest.mark.parametrize("name,device,precision", _cases())
def test_weights_after_k_steps_match_reference(name, device, precision):
    b = _make(name, device, precision)
    h, w = _size(name, device)
    x, tgt, p = _inputs(device, h, w, seed=2)
    snapshot = {k: v.clone() for k, v in p.items()}
    sched = [2e-2, 1e-2, 5e-3]
    ref = backends.get("reference", device, "fp32")
    ref.prepare(p, x.shape)
    b.prepare(p, x.shape)
    l_ref = ref.adapt(x, tgt, sched)
    l_b = b.adapt(x, tgt, sched)
    assert l_b.shape == (3,)
    _close(l_b, l_ref, precision, f"{name} losses")
    pr, pb = ref.params(), b.params()
    for k in model.param_names():
        _close(pb[k], pr[k], precision, f"{name} {k} after 3 steps")
    for k in p:
        assert torch.equal(p[k], snapshot[k]), f"{name} modified the caller's {k}"


@pytest.mark.parametrize("name,device,precision", _cases())
def test_adaptation_lowers_loss(name, device, precision):
    b = _make(name, device, precision)
    h, w = _size(name, device)
    x, tgt, p = _inputs(device, h, w, seed=3)
    b.prepare(p, x.shape)
    losses = b.adapt(x, tgt, [1e-2] * 6)
    assert torch.isfinite(losses).all()
    assert float(losses[-1]) < float(losses[0]), f"{name}: losses {losses.tolist()}"


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown backend"):
        backends.get("nope", "cpu")
    if not HAS_CUDA:
        with pytest.raises(ValueError, match="not available"):
            backends.get("cuda", "cpu")
    with pytest.raises(ValueError, match="precision"):
        backends.get("reference", "cpu", "fp8")
    name, note = backends.resolve("auto", "cpu")
    assert name in ("cpu", "reference")
    if name == "reference":
        assert "cpu unavailable" in note
    # auto never picks a backend that lacks the precision asked for
    for prec in ("fp32", "tf32", "bf16"):
        name, note = backends.resolve("auto", "cpu", prec)
        assert prec in backends._load(name).precisions, (prec, name, note)


def test_backend_instances_keyed_by_env_switches(monkeypatch):
    """The API keeps one backend instance per value of the backend's environment switches
    (MZSR_FAST_CUDA_VARIANT for cuda): a changed switch gives a fresh instance, an
    unchanged one the cached instance."""
    from mzsr_fast import options as api
    from mzsr_fast import backends as be
    from mzsr_fast.backends.reference import ReferenceBackend

    assert be.env_switches("cuda") == ("MZSR_FAST_CUDA_VARIANT",)
    assert be.env_switches("reference") == () and be.env_switches("no-such-backend") == ()
    monkeypatch.setattr(ReferenceBackend, "env_switches", ("MZSR_TEST_SWITCH",), raising=False)
    monkeypatch.setattr(api._tls, "backends", {}, raising=False)
    dev = torch.device("cpu")
    monkeypatch.setenv("MZSR_TEST_SWITCH", "a")
    a1, a2 = api.backend_instance("reference", dev, "fp32"), api.backend_instance("reference", dev, "fp32")
    monkeypatch.setenv("MZSR_TEST_SWITCH", "b")
    b1 = api.backend_instance("reference", dev, "fp32")
    assert a1 is a2 and b1 is not a1


# ----------------------------------------------------------------------------- graphed GPU base
def test_bounded_cache_lru_and_evict_hook():
    from mzsr_fast.backends.graphed import BoundedCache

    dropped = []
    c = BoundedCache(limit=2, on_evict=lambda k, v: dropped.append(k))
    c.put("a", 1), c.put("b", 2)
    assert c.get("a") == 1  # a is now the most recent
    c.put("c", 3)
    assert list(c) == ["a", "c"] and dropped == ["b"] and c.get("b") is None


def test_env_switch_names(monkeypatch):
    from mzsr_fast.backends.graphed import env_switch, max_graphs

    for v in ("MZSR_FAST_CUDA_GRAPHS", "MZSR_CUDA_GRAPHS", "MZSR_FAST_MAX_GRAPHS", "MZSR_CUDA_MAX_GRAPHS"):
        monkeypatch.delenv(v, raising=False)
    assert env_switch("CUDA_GRAPHS", "MZSR_CUDA_GRAPHS", "1") == "1"
    monkeypatch.setenv("MZSR_CUDA_GRAPHS", "0")  # the legacy name still works
    assert env_switch("CUDA_GRAPHS", "MZSR_CUDA_GRAPHS", "1") == "0"
    monkeypatch.setenv("MZSR_FAST_CUDA_GRAPHS", "1")  # the MZSR_FAST_ name wins
    assert env_switch("CUDA_GRAPHS", "MZSR_CUDA_GRAPHS", "1") == "1"
    assert max_graphs() == 8
    monkeypatch.setenv("MZSR_CUDA_MAX_GRAPHS", "3")
    assert max_graphs() == 3
    monkeypatch.setenv("MZSR_FAST_MAX_GRAPHS", "0")
    assert max_graphs() == 1
    monkeypatch.setenv("MZSR_FAST_MAX_GRAPHS", "x")
    with pytest.raises(ValueError, match="MZSR_FAST_MAX_GRAPHS"):
        max_graphs()


def test_gpu_backends_share_the_graphed_base():
    from mzsr_fast.backends.cuda import CudaBackend
    from mzsr_fast.backends.graphed import GraphedBackend
    from mzsr_fast.backends.triton import TritonBackend

    assert issubclass(CudaBackend, GraphedBackend) and issubclass(TritonBackend, GraphedBackend)
    assert "fallback" in TritonBackend.masked_grads and "fallback" not in CudaBackend.masked_grads


def test_graphed_weight_cache_restores_the_same_weights():
    """prepare() with the same weight tensors restores the device copy kept at the first
    prepare (after an adaptation changed it); an in-place edit of the weights is seen."""
    ok, why = backends.available("cpu")["triton"]
    if not ok:
        pytest.skip(f"triton backend not runnable here: {why}")
    x, t, p = _inputs("cpu", 5, 4)
    b = backends.get("triton", "cpu")
    b.prepare(p, x.shape)
    first = b.params()
    b.step(x, t, 0.05)
    assert any(not torch.equal(first[k], v) for k, v in b.params().items())
    b.prepare(p, x.shape)
    assert b._pcache is not None and all(torch.equal(first[k], v) for k, v in b.params().items())
    with torch.no_grad():
        p["layers.0.bias"].add_(1.0)  # version counter moves: the cache must not answer
    b.prepare(p, x.shape)
    torch.testing.assert_close(b.params()["layers.0.bias"], p["layers.0.bias"])


def test_cuda_variant_as_a_factory_option(monkeypatch):
    """The kernel variant of the cuda backend is a constructor option with the environment
    switch as its default (the same parsing: kernel_precision)."""
    from mzsr_fast.backends.cuda import kernel_precision

    monkeypatch.setenv("MZSR_FAST_CUDA_VARIANT", "2")
    assert kernel_precision("bf16") == ("bf16:2", 2)
    assert kernel_precision("bf16", {"MZSR_FAST_CUDA_VARIANT": "3"}) == ("bf16:3", 3)
    with pytest.raises(ValueError, match="0, 1, 2 or 3"):
        kernel_precision("fp32", {"MZSR_FAST_CUDA_VARIANT": "7"})
    # construction only (no kernel runs): the availability check is bypassed on this CPU
    from mzsr_fast.backends.cuda import CudaBackend

    monkeypatch.setattr(CudaBackend, "available", classmethod(lambda cls, d: (True, "")))
    assert CudaBackend("cpu", "bf16").variant == 2  # the switch
    b = CudaBackend("cpu", "bf16", variant=3, use_graphs=False)
    assert (b.variant, b._kprec, b.use_graphs) == (3, "bf16:3", False)
