"""The CUDA backend (csrc/cuda + mzsr_fast/backends/cuda.py).

* CI (no GPU): ``scripts/cuda_check.sh`` compiles every kernel for sm_80/sm_90 and the
  torch binding; the kernels' index logic runs on the CPU emulator of csrc/cuda/emu
  against :mod:`mzsr_fast.reference`, and so does the binding's own whole-net code
  (binding.cpp built with -DMZSR_CUDA_EMU as a Python module, on CPU tensors).
* GPU (``-m gpu``, the GPU check script): every op against the float64 reference over
  awkward shapes per precision, the backend against ``ReferenceBackend``, graph replay
  against eager, determinism, argument checks.

Tolerances are ``max |diff| / max |ref|`` (scale-free), printed on failure.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys

import pytest
import torch

from mzsr_fast import model
from mzsr_fast import reference as R

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_CUDA = torch.cuda.is_available()
#: device of the GPU tests (a module global so a CPU dry run of the test logic can swap it)
DEV = "cuda"

#: per precision: (rel tol of one op, rel tol of the whole backend vs the fp32 reference)
#: Measured on an H100 (2026-11-26): the whole-net gradients vs float64 were off by 0.0204
#: (tf32) and 0.069 (bf16) of their max on a (2, 13, 10) input, the Set5 MZSR(10) PSNR by
#: 0.000 / -0.002 dB: whole-backend tolerances 4e-2 (tf32) and 1.2e-1 (bf16).
TOL = {"fp32": (1e-4, 2e-4), "tf32": (5e-3, 4e-2), "bf16": (3e-2, 1.2e-1)}
PRECISIONS = ("fp32", "tf32", "bf16")
#: + the tensor-core conv kernel's second warp layout ("tf32:1", "bf16:1") and kernel
#: variant 2 (conv3x3_halo.cu: bf16 halo tiles, exact thin kernels for the 3-channel layers)
#: and variant 3 (variant 2 with bf16 storage of the 64-channel tensors in the whole-net ops;
#: a single op runs as variant 2)
CONV_PRECISIONS = PRECISIONS + ("tf32:1", "bf16:1", "fp32:2", "tf32:2", "bf16:2", "bf16:3")


def _tol(precision, which=0):
    return TOL[precision.split(":")[0]][which]

#: (N, H, W, Cin, Cout): 1x1, odd sizes, sizes not a multiple of the 64-pixel tile, the
#: 3-channel first/last layers, batch 2, several wgrad chunks (> 256 pixels), several
#: output-channel tiles of the tensor-core kernels (128).
SHAPES = [
    (1, 1, 1, 3, 64),
    (2, 7, 5, 3, 64),
    (1, 1, 1, 64, 64),
    (1, 9, 13, 64, 64),
    (2, 17, 19, 64, 64),
    (1, 5, 3, 64, 3),
    (2, 11, 6, 64, 3),
    (1, 33, 41, 64, 64),
    (1, 6, 7, 32, 128),
    (1, 4, 5, 128, 64),
]


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    scale = max(float(want.abs().max()), 1e-12)
    return float((got.double() - want.double()).abs().max()) / scale


def _close(got, want, tol, what):
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert torch.isfinite(got).all(), f"{what}: NaN/inf in the result"
    err = _rel_err(got, want)
    assert err <= tol, f"{what}: max |diff| / max |ref| = {err:.3g} > tol {tol}"


def _close_update(after, ref_after, before, tol, what):
    """Parameters after SGD steps: the error is bounded by tol x the reference's update
    plus a few float32 ulps of the weights (p - lr*g rounds to the weights' ulp, so tiny
    updates cannot be compared relatively)."""
    after, ref_after, before = after.double(), ref_after.double(), before.double().to(after.device)
    err = float((after - ref_after).abs().max())
    upd = float((ref_after - before).abs().max())
    bound = tol * upd + 4 * 2.0**-24 * float(before.abs().max())
    assert torch.isfinite(after).all(), f"{what}: NaN/inf"
    assert err <= bound, (f"{what}: max |diff| {err:.3g} > {bound:.3g} = {tol} x max |update| {upd:.3g} + 4 ulp "
                          f"of max |p|")


def _sid(s):
    return "N{}H{}W{}_{}to{}".format(*s)


# ======================================================================== CI (no GPU)
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH: cannot compile-check the CUDA kernels")
def test_cuda_check_script_compiles_everything():
    """scripts/cuda_check.sh: every .cu for sm_80 + sm_90 and the binding, warning-free."""
    # this interpreter (the venv's), never the system python3, which may lack torch (issue 16)
    r = subprocess.run(["bash", os.path.join(REPO, "scripts", "cuda_check.sh")], capture_output=True, text=True,
                       timeout=900, env=dict(os.environ, PYTHON=sys.executable))
    assert r.returncode == 0, f"cuda_check.sh failed (rc {r.returncode}):\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"
    assert "all OK" in r.stdout


_EMU_SOURCES = ["conv3x3_simt.cu", "conv3x3_tc.cu", "conv3x3_halo.cu", "conv3x3_wgrad.cu", "elementwise.cu"]


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    """The kernels compiled for the CPU emulator (csrc/cuda/emu), loaded with ctypes."""
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        pytest.skip("no C++ compiler (g++) for the CUDA emulator")
    out = str(tmp_path_factory.mktemp("emu") / "libmzsr_emu.so")
    d = os.path.join(REPO, "csrc", "cuda")
    cmd = [cxx, "-std=c++20", "-O1", "-fno-strict-aliasing", "-pthread", "-shared", "-fPIC", "-DMZSR_CUDA_EMU",
           f"-I{os.path.join(REPO, 'csrc')}",
           "-Wno-unknown-pragmas", "-x", "c++"] + [os.path.join(d, f) for f in _EMU_SOURCES] + [
           "-x", "none", os.path.join(d, "emu", "emu_ops.cpp"), "-o", out]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0 and "barrier" in r.stderr and "No such file" in r.stderr:
        pytest.skip(f"the C++ compiler lacks C++20 <barrier>: {r.stderr[-500:]}")
    assert r.returncode == 0, f"emulator build failed:\n{r.stderr[-4000:]}"
    return ctypes.CDLL(out)


def _p(t):
    return ctypes.c_void_p(t.data_ptr() if t is not None else 0)


def _emu_pack(lib, w):
    """-> fp32 fwd, dgrad packings and their bf16 copies (int16 raw bits), checked against
    the fp32 ones rounded to bf16."""
    co, ci = w.shape[:2]
    fwd, dg = torch.empty(9 * ci, co), torch.empty(9 * co, ci)
    fwd16, dg16 = torch.empty(9 * ci, co, dtype=torch.int16), torch.empty(9 * co, ci, dtype=torch.int16)
    lib.emu_pack(_p(w), _p(fwd), _p(dg), _p(fwd16), _p(dg16), co, ci)
    for a, b in ((fwd, fwd16), (dg, dg16)):
        assert torch.equal(b.view(torch.bfloat16), a.to(torch.bfloat16)), "bf16 packing != fp32 packing rounded"
    return fwd, dg, fwd16, dg16


#: the emulated whole-net chain's gradient tolerance in bf16, ||diff|| / ||ref|| per tensor
#: (measured 2026-11-26: at most 0.087 for both variants 2 and 3, the first layer's)
_CHAIN_TOL = 0.15

_EMU_MODE = {"fp32": 0, "tf32": 1, "bf16": 2, "tf32:1": 11, "bf16:1": 12, "fp32:2": 20, "tf32:2": 21, "bf16:2": 22,
             "bf16:3": 32}
#: small shapes: the emulator runs one std::thread per CUDA thread.  17x19: 5 tiles + a tail
#: (64-pixel tiles), 3 x 2 halo tiles of 8 x 16 with partial ones, 2 wgrad chunks; batch 2
#: with 9x17 halo tiles cut in both directions; 3-channel layers over > 256 pixels (3 chunks
#: of 128 of the thin weight-gradient kernels, the last 67 or 16 long; 30 pixels: one short
#: chunk whose last 4-pixel group is cut).
_EMU_SHAPES = [(2, 3, 5, 3, 64), (1, 4, 3, 64, 3), (1, 17, 19, 64, 64), (2, 9, 17, 64, 64), (1, 17, 19, 3, 64),
               (1, 16, 17, 64, 3)]


def _halo_variant(precision) -> bool:
    return precision.partition(":")[2] in ("2", "3")


def _emu_kernel(precision, ci, co):
    """The kernel mzsr_conv3x3_pick chooses: 0 SIMT, 1 WMMA tc, 2 halo, 3 thin."""
    prec = precision.partition(":")[0]
    if _halo_variant(precision) and ((co <= 4 and ci % 4 == 0) or (ci <= 4 and co % 4 == 0)):
        return 3
    if _halo_variant(precision) and prec == "bf16" and ci == 64 and co % 64 == 0:
        return 2
    return int(prec != "fp32" and ci % 16 == 0 and co % 64 == 0)


class _Store:
    """The emulator's storage of a test tensor: variant 3 in bf16 ("bf16:3", act16) keeps
    the tensors with more than 4 channels as bf16, as the binding's whole-net ops do;
    everything else fp32.  ``put(t)`` -> (the tensor the kernel reads, its value as the
    kernel sees it, float64); ``out(shape)`` -> a NaN-filled output buffer; ``get(buf)`` ->
    float32."""

    def __init__(self, precision):
        self.act16 = precision == "bf16:3"

    def dtype(self, channels):
        return torch.bfloat16 if self.act16 and channels > 4 else torch.float32

    def put(self, t):
        s = t.to(self.dtype(t.shape[-1])).contiguous()
        return s, s.double()

    def out(self, shape):
        return torch.full(shape, float("nan"), dtype=self.dtype(shape[-1]))

    @staticmethod
    def get(buf):
        return buf.float()


@pytest.mark.parametrize("precision", PRECISIONS + ("bf16:1", "fp32:2", "bf16:2", "bf16:3"))
@pytest.mark.parametrize("shape", _EMU_SHAPES, ids=_sid)
def test_kernels_on_cpu_emulator(emu, shape, precision):
    """fwd (bias+relu, residual), dgrad (with/without mask), wgrad+bias: the real kernel
    sources on the CPU emulator vs the reference; tensor-core kernels where they apply.
    "bf16:3": the same kernels reading and writing bf16 for the wide (64-channel) tensors;
    the reference gets the bf16-rounded inputs the kernels see."""
    N, H, W, ci, co = shape
    mode = _EMU_MODE[precision]
    tol = _tol(precision)
    st = _Store(precision)
    g = torch.Generator().manual_seed(hash(shape) % 1000)
    x, xr = st.put(torch.randn(N, H, W, ci, generator=g))
    w = torch.randn(co, ci, 3, 3, generator=g) / (3 * ci**0.5)
    b = torch.randn(co, generator=g)
    res, resr = st.put(torch.randn(N, H, W, co, generator=g))
    gy, gyr = st.put(torch.randn(N, H, W, co, generator=g))
    fwd, dg, fwd16, dg16 = _emu_pack(emu, w)
    if not (_halo_variant(precision) and precision.startswith("bf16")):
        fwd16 = dg16 = None  # as the binding: only variants 2/3 in bf16 pack (and read) bf16 weights
    y = st.out((N, H, W, co))
    kern = emu.emu_conv(_p(x), _p(fwd), _p(fwd16), _p(b), _p(None), _p(None), _p(y), N, H, W, ci, co, 1, 0, mode)
    assert kern == _emu_kernel(precision, ci, co)
    _close(st.get(y), R.conv3x3_fwd(xr, w.double(), b.double(), True), tol, f"fwd relu {shape} {precision}")
    y = st.out((N, H, W, co))
    emu.emu_conv(_p(x), _p(fwd), _p(fwd16), _p(None), _p(None), _p(res), _p(y), N, H, W, ci, co, 0, 0, mode)
    _close(st.get(y), R.conv3x3_fwd(xr, w.double(), None, False, resr), tol, f"fwd residual {shape} {precision}")
    gx = st.out((N, H, W, ci))
    kern = emu.emu_conv(_p(gy), _p(dg), _p(dg16), _p(None), _p(x), _p(None), _p(gx), N, H, W, co, ci, 0, 1, mode)
    assert kern == _emu_kernel(precision, co, ci)
    _close(st.get(gx), R.conv3x3_dgrad(gyr, w.double(), xr), tol, f"dgrad mask {shape} {precision}")
    gx = st.out((N, H, W, ci))
    emu.emu_conv(_p(gy), _p(dg), _p(dg16), _p(None), _p(None), _p(None), _p(gx), N, H, W, co, ci, 0, 1, mode)
    _close(st.get(gx), R.conv3x3_dgrad(gyr, w.double()), tol, f"dgrad {shape} {precision}")
    gw, gb = torch.full((co, ci, 3, 3), float("nan")), torch.full((co,), float("nan"))
    plan = emu.emu_wgrad(_p(x), _p(gy), _p(gw), _p(gb), N, H, W, ci, co, mode, 0)
    prec = precision.partition(":")[0]
    halo = _halo_variant(precision) and prec == "bf16" and ci == co == 64
    thin = _halo_variant(precision) and ((ci <= 4 and co % 4 == 0) or (co <= 4 and ci % 4 == 0))
    assert plan == (3 if thin else 2 if halo else int(prec != "fp32" and ci % 64 == 0 and co % 64 == 0))
    rw, rb = R.conv3x3_wgrad(xr, gyr)
    # wgrad sums N*H*W products: compare to the reference scale with the op tolerance x 2
    _close(gw, rw, 2 * tol, f"wgrad {shape} {precision}")
    _close(gb, rb, 1e-5, f"bias grad {shape} {precision}")
    if halo:  # the halo plan with several tiles per chunk (and a shorter last chunk for 8 tiles / 3)
        for cap in (3, 2):
            gw.fill_(float("nan"))
            gb.fill_(float("nan"))
            emu.emu_wgrad(_p(x), _p(gy), _p(gw), _p(gb), N, H, W, ci, co, mode, cap)
            _close(gw, rw, 2 * tol, f"wgrad {shape} {precision} <= {cap} chunks")
            _close(gb, rb, 1e-5, f"bias grad {shape} {precision} <= {cap} chunks")


def _emu_net_grads(emu, precision, plist, x, target):
    """The whole net's forward, L1 loss gradient and backward on the emulated kernels,
    chained as the binding's net_grads_impl (fwd layers 0-7, then per layer 7..0 wgrad and
    dgrad with the ReLU mask), tensors stored as _Store(precision).  -> (acts, loss, grads)."""
    mode = _EMU_MODE[precision]
    st = _Store(precision)
    N, H, W, _ = x.shape
    acts = [x]
    for i, (ci, co) in enumerate(model.CHANNELS):
        last = i == len(model.CHANNELS) - 1
        fwd, _, fwd16, _ = _emu_pack(emu, plist[2 * i])
        y = st.out((N, H, W, co))
        k = emu.emu_conv(_p(acts[-1]), _p(fwd), _p(fwd16), _p(plist[2 * i + 1]), _p(None), _p(x if last else None),
                         _p(y), N, H, W, ci, co, int(not last), 0, mode)
        assert k in (2, 3), f"layer {i} fwd ran kernel {k}, not halo/thin"
        acts.append(y)
    pred = acts[-1]
    gout, loss = torch.empty_like(pred), torch.empty(1)
    emu.emu_l1(_p(pred), _p(target), _p(gout), _p(loss), ctypes.c_longlong(pred.numel()))
    grads, gcur = [None] * len(plist), gout
    for i in range(len(model.CHANNELS) - 1, -1, -1):
        ci, co = model.CHANNELS[i]
        gw, gb = torch.empty(co, ci, 3, 3), torch.empty(co)
        assert emu.emu_wgrad(_p(acts[i]), _p(gcur), _p(gw), _p(gb), N, H, W, ci, co, mode, 0) in (2, 3)
        grads[2 * i], grads[2 * i + 1] = gw, gb
        if i > 0:
            _, dg, _, dg16 = _emu_pack(emu, plist[2 * i])
            gx = st.out((N, H, W, ci))
            k = emu.emu_conv(_p(gcur), _p(dg), _p(dg16), _p(None), _p(acts[i]), _p(None), _p(gx), N, H, W, co, ci, 0, 1,
                             mode)
            assert k in (2, 3), f"layer {i} dgrad ran kernel {k}, not halo/thin"
            gcur = gx
    return acts, loss[0], grads


def _norm_err(got, want) -> float:
    return float((got.double() - want.double()).norm() / want.double().norm())


@pytest.mark.parametrize("precision", ("fp32", "fp32:2", "bf16:3"))
def test_wgrad_many_chunks_on_cpu_emulator(emu, precision):
    """The weight-gradient reduction over more chunks than its warps (kMzsrWgradReduceSplit
    = 8 streams of chunks w, w + 8, ...): 1517 pixels of a 3 -> 64 layer are 24 chunks of
    the SIMT plan (fp32) and 12 of the thin one (the last 109 pixels long)."""
    N, H, W, ci, co = 1, 37, 41, 3, 64
    st = _Store(precision)
    g = torch.Generator().manual_seed(11)
    x, xr = st.put(torch.randn(N, H, W, ci, generator=g))
    gy, gyr = st.put(torch.randn(N, H, W, co, generator=g))
    gw, gb = torch.full((co, ci, 3, 3), float("nan")), torch.full((co,), float("nan"))
    plan = emu.emu_wgrad(_p(x), _p(gy), _p(gw), _p(gb), N, H, W, ci, co, _EMU_MODE[precision], 0)
    assert plan == (0 if precision == "fp32" else 3)
    rw, rb = R.conv3x3_wgrad(xr, gyr)
    _close(gw, rw, 1e-5, f"wgrad {precision}")
    _close(gb, rb, 1e-5, f"bias grad {precision}")


@pytest.fixture(scope="module")
def chain(emu):
    """A whole-net case for the emulator and its results: the float64 reference, and the
    kernel chain (_emu_net_grads) of variants 2 and 3 in bf16."""
    N, H, W = 1, 9, 19
    g = torch.Generator().manual_seed(5)
    plist = []
    for ci, co in model.CHANNELS:
        # positive biases: few ReLU units near 0, so that the masks (a discrete function of
        # the rounded activations) rarely flip and the gradients measure rounding, not chaos
        plist += [torch.randn(co, ci, 3, 3, generator=g) * (1.0 / (9 * ci)) ** 0.5,
                  0.5 + 0.1 * torch.randn(co, generator=g)]
    x = torch.rand(N, H, W, 3, generator=g)
    racts = R.net_forward([q.double() for q in plist], x.double())
    # |pred - target| >= 0.5 everywhere, far above the bf16 error of pred: the L1 gradient's
    # signs are the reference's, so the gradients compare the convolutions only
    r = torch.randn(N, H, W, 3, generator=g).double()
    target = (racts[-1] + torch.where(r >= 0, 1.0, -1.0) * (0.5 + r.abs())).float()
    rl, rg = R.l1_loss_grad(racts[-1], target.double())
    return {"plist": plist, "x": x, "target": target, "ref": (racts, rl, R.net_backward([q.double() for q in plist],
                                                                                        racts, rg)),
            "bf16:2": _emu_net_grads(emu, "bf16:2", plist, x, target),
            "bf16:3": _emu_net_grads(emu, "bf16:3", plist, x, target)}


def test_net_grads_chain_on_cpu_emulator(chain):
    """Variant 3's bf16 storage of the 64-channel activations and gradients (act16) through
    the whole net on the emulated kernels: every wide tensor between the kernels is bf16,
    the output and loss match the float64 reference, the gradients match it as closely as
    variant 2's (fp32 storage, same kernels) do and lie within 1% (norm) of variant 2's.  A
    kernel that writes a layout or dtype its consumer does not read fails here.  Gradients
    are compared by ||got - ref|| / ||ref|| per tensor: bf16 operands alone (variant 2) put
    the first layer's at ~0.09 of the reference after 7 input-gradient layers here."""
    racts, rl, rgrads = chain["ref"]
    acts2, loss2, grads2 = chain["bf16:2"]
    acts3, loss3, grads3 = chain["bf16:3"]
    assert [a.dtype for a in acts2[1:]] == [torch.float32] * 8
    assert [a.dtype for a in acts3[1:]] == [torch.bfloat16] * 7 + [torch.float32], "act16 storage"
    for tag, acts, loss in (("bf16:2", acts2, loss2), ("bf16:3", acts3, loss3)):
        _close(acts[-1], racts[-1], _tol("bf16"), f"net output {tag}")
        _close(loss, rl, _tol("bf16"), f"loss {tag}")
    for k in range(len(rgrads)):
        what = f"grad {k} ({'w' if k % 2 == 0 else 'b'}{k // 2})"
        e2, e3 = _norm_err(grads2[k], rgrads[k]), _norm_err(grads3[k], rgrads[k])
        d23 = _norm_err(grads3[k], grads2[k])
        assert e2 <= _CHAIN_TOL and e3 <= _CHAIN_TOL, f"{what}: ||diff|| / ||ref|| {e2:.3g} (bf16:2), {e3:.3g} (bf16:3) > {_CHAIN_TOL}"
        assert d23 <= 0.01, f"{what}: bf16:3 vs bf16:2 ||diff|| / ||bf16:2|| = {d23:.3g} > 0.01 (storage rounding only)"


@pytest.fixture(scope="module")
def emu_binding(tmp_path_factory):
    """csrc/cuda/binding.cpp itself compiled against the CPU emulator (-DMZSR_CUDA_EMU,
    csrc/cuda/emu/binding_emu.h): the whole-net ops of the cuda backend on CPU tensors, as a
    Python module (torch.utils.cpp_extension.load, ~30 s on 2 cores)."""
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("no C++ compiler (g++) for the CUDA emulator")
    from torch.utils import cpp_extension

    d = str(tmp_path_factory.mktemp("emu_binding"))
    srcs = []
    for f in _EMU_SOURCES + ["binding.cpp"]:  # as C++: one wrapper per file (cpp_extension sends .cu to nvcc)
        w = os.path.join(d, "w_" + f.replace(".", "_") + ".cpp")
        with open(w, "w") as fh:
            fh.write(f'#include "cuda/{f}"\n')
        srcs.append(w)
    try:
        return cpp_extension.load(name="mzsr_emu_binding", sources=srcs, build_directory=d,
                                  extra_include_paths=[os.path.join(REPO, "csrc")],
                                  extra_cflags=["-DMZSR_CUDA_EMU", "-std=c++20", "-O1", "-fno-strict-aliasing",
                                                "-Wno-unknown-pragmas"])
    except RuntimeError as e:
        if "barrier" in str(e) and "No such file" in str(e):
            pytest.skip(f"the C++ compiler lacks C++20 <barrier>: {str(e)[-500:]}")
        raise


def test_binding_on_cpu_emulator(emu_binding, chain):
    """The binding's own whole-net ops (cuda_net_grads / cuda_net_forward / cuda_adapt of
    csrc/cuda/binding.cpp: packing, act16_net, allocation by act_dtype, launch order) on
    the emulator equal, bit for bit, the documented kernel chain (_emu_net_grads): the
    gradients for variant 3 in bf16, the forward for variants 2 and 3; variant 3's output
    differs from variant 2's (the bf16 storage is really used); a 2-step bf16:3 adaptation
    matches the float64 reference's updates; bad precision strings are errors."""
    E = emu_binding
    plist, x, target = chain["plist"], chain["x"], chain["target"]
    acts, closs, cgrads = chain["bf16:3"]
    loss, grads = E.cuda_net_grads(plist, x, target, "bf16:3")
    assert torch.equal(loss, closs), f"binding loss {float(loss)} != kernel chain {float(closs)}"
    for k, (a, b) in enumerate(zip(grads, cgrads)):
        assert a.dtype == torch.float32 and torch.equal(a, b), f"binding grad {k} != kernel chain"
    outs = {prec: E.cuda_net_forward(plist, x, prec) for prec in ("bf16:2", "bf16:3")}
    for prec, out in outs.items():
        assert torch.equal(out, chain[prec][0][-1]), f"{prec}: binding forward != kernel chain"
    assert not torch.equal(outs["bf16:2"], outs["bf16:3"]), "bf16:3 ran with fp32 storage"
    # the adaptation on one 8 x 16 tile (the emulator's cost grows with the tiles)
    x, target = x[:, :8, :16].contiguous(), target[:, :8, :16].contiguous()
    lrs = torch.tensor([0.02, 0.01])
    ref = [p.double().clone() for p in plist]
    for lr in lrs:
        R.adapt_step(ref, x.double(), target.double(), lr.double())
    mine = [p.clone() for p in plist]
    losses = E.cuda_adapt(mine, x, target, lrs, "bf16:3")
    assert losses.shape == (2,) and torch.isfinite(losses).all()
    for i, (a, b, p0) in enumerate(zip(mine, ref, plist)):
        _close_update(a, b, p0, _CHAIN_TOL, f"cuda_adapt bf16:3 param {i}")
    for bad in ("bf16:4", "fp16", "bf16:"):
        with pytest.raises(RuntimeError, match="variant|precision"):
            E.cuda_net_forward(plist, x, bad)


#: GPU tests re-run on the emulated binding: (test name, args).  Variant 3's whole-net
#: tests (its bf16 storage) and variant 2's op tests over every op shape (its halo / thin
#: kernels; a single op runs ":3" as ":2").
_GPU_DRY_RUN = ([("test_net_grads_and_forward_vs_reference", ("bf16:3",))]
                + [("test_adapt_step_vs_reference", (nhw, "bf16:3")) for nhw in ((1, 1, 1), (2, 9, 7), (1, 30, 41))]
                + [(f"test_conv3x3_{op}", (shape, "bf16:2")) for shape in SHAPES for op in ("fwd", "dgrad", "wgrad")])


@pytest.mark.parametrize("name,args", _GPU_DRY_RUN, ids=[f"{n[5:]}-{a[0]}" for n, a in _GPU_DRY_RUN])
def test_gpu_tests_on_emulated_binding(emu_binding, name, args):
    """A CPU dry run of GPU tests of the new kernels: the same test functions (inputs,
    tolerances) with DEV = "cpu" and the emulated binding in place of torch.ops.mzsr_fast,
    so that a tolerance the kernels cannot meet shows here instead of in a GPU lease."""
    g = globals()
    saved = g["DEV"], g["_ops"]
    g["DEV"], g["_ops"] = "cpu", (lambda: emu_binding)
    try:
        g[name](*args)
    finally:
        g["DEV"], g["_ops"] = saved


def test_act16_layer_rule(emu):
    """The rule the binding's act16_net applies to every layer: the model's layers all
    qualify (so variant 3 really stores bf16 for it); a layer that a kernel reading bf16
    does not cover, or whose thin side's partner is not wider than 4 channels (the storage
    rule: bf16 iff > 4 channels), does not."""
    for ci, co in set(model.CHANNELS):
        assert emu.emu_act16_layer_ok(ci, co) == 1, f"model layer {ci}->{co}"
    for ci, co in ((3, 128), (128, 3), (4, 64)):
        assert emu.emu_act16_layer_ok(ci, co) == 1, f"{ci}->{co}"
    # (64, 128): the halo conv takes the forward, but no kernel the 128 -> 64 input gradient
    for ci, co in ((64, 128), (32, 64), (64, 32), (3, 3), (4, 3), (3, 4), (4, 4), (128, 128), (3, 256), (64, 6)):
        assert emu.emu_act16_layer_ok(ci, co) == 0, f"{ci}->{co}"


def test_act16_refuses_fp32_only_kernels(emu):
    """act16 (bf16 storage) on a shape neither the halo nor a thin kernel takes: nothing runs
    (pick / plan -1) instead of an fp32 kernel misreading bf16 data."""
    N, H, W, ci, co = 1, 4, 5, 32, 64
    x = torch.zeros(N, H, W, ci, dtype=torch.bfloat16)
    w = torch.zeros(co, ci, 3, 3)
    fwd, _, fwd16, _ = _emu_pack(emu, w)
    y = torch.full((N, H, W, co), 7.0, dtype=torch.bfloat16)
    k = emu.emu_conv(_p(x), _p(fwd), _p(fwd16), _p(None), _p(None), _p(None), _p(y), N, H, W, ci, co, 0, 0, 32)
    assert k == -1 and bool((y == 7).all()), f"act16 conv {ci}->{co} ran kernel {k}"
    gy = torch.zeros(N, H, W, co, dtype=torch.bfloat16)
    gw, gb = torch.full((co, ci, 3, 3), 7.0), torch.full((co,), 7.0)
    assert emu.emu_wgrad(_p(x), _p(gy), _p(gw), _p(gb), N, H, W, ci, co, 32, 0) == -1
    assert bool((gw == 7).all())
    # 4 -> 3: the thin kernel's shape, but both sides are fp32 under the storage rule
    # (bf16 iff > 4 channels), which the kernel would misread as its bf16 wide side
    x4, w4 = torch.zeros(N, H, W, 4), torch.zeros(3, 4, 3, 3)
    fwd4, _, f16, _ = _emu_pack(emu, w4)
    y3 = torch.full((N, H, W, 3), 7.0)
    assert emu.emu_conv(_p(x4), _p(fwd4), _p(f16), _p(None), _p(None), _p(None), _p(y3), N, H, W, 4, 3, 0, 0, 32) == -1
    assert emu.emu_wgrad(_p(x4), _p(y3), _p(w4), _p(None), N, H, W, 4, 3, 32, 0) == -1


def test_l1_and_sgd_on_cpu_emulator(emu):
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 5, 7, 3, generator=g)
    tgt = torch.randn(2, 5, 7, 3, generator=g)
    tgt[0, 1] = pred[0, 1]  # sign(0) = 0
    grad, loss = torch.empty_like(pred), torch.empty(1)
    emu.emu_l1(_p(pred), _p(tgt), _p(grad), _p(loss), ctypes.c_longlong(pred.numel()))
    rl, rg = R.l1_loss_grad(pred, tgt)
    assert torch.equal(grad, rg), "l1 grad differs from sign(d) / numel"
    _close(loss[0], rl, 1e-6, "l1 loss")
    ps = [torch.randn(n, generator=g) for n in (5, 3000, 1)]
    gs = [torch.randn_like(p) for p in ps]
    want = [p.clone() for p in ps]
    lr = torch.tensor([0.013])
    R.sgd_update_(want, gs, lr[0])
    arr = ctypes.c_void_p * 3
    emu.emu_sgd(arr(*[p.data_ptr() for p in ps]), arr(*[q.data_ptr() for q in gs]),
                (ctypes.c_longlong * 3)(*[p.numel() for p in ps]), 3, _p(lr))
    for a, b in zip(ps, want):
        assert torch.equal(a, b), "sgd update differs from p - g * lr"


def test_backend_kernel_variant_env():
    """MZSR_FAST_CUDA_VARIANT picks the precision string the cuda backend passes to the
    ops; a bad value is an error naming the variable."""
    from mzsr_fast.backends.cuda import kernel_precision

    assert kernel_precision("bf16", {}) == ("bf16", 0)
    for v, want in (("", ("bf16", 0)), ("0", ("bf16", 0)), ("1", ("bf16:1", 1)), (" 2", ("bf16:2", 2)),
                    ("3", ("bf16:3", 3))):
        assert kernel_precision("bf16", {"MZSR_FAST_CUDA_VARIANT": v}) == want
    for bad in ("4", "bf16", "-1"):
        with pytest.raises(ValueError, match="MZSR_FAST_CUDA_VARIANT"):
            kernel_precision("tf32", {"MZSR_FAST_CUDA_VARIANT": bad})


# ======================================================================== GPU
def _ops():
    from mzsr_fast import _ext

    if not _ext.has_op("cuda_adapt", "cuda"):
        pytest.fail(f"mzsr_fast._C has no CUDA ops on a CUDA machine: {_ext.status}")
    return torch.ops.mzsr_fast


def _rand(shape, g, scale=1.0):
    return (torch.randn(shape, generator=g) * scale).to(DEV)


gpu = pytest.mark.gpu


@gpu
@pytest.mark.parametrize("precision", CONV_PRECISIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=_sid)
def test_conv3x3_fwd(shape, precision):
    ops = _ops()
    N, H, W, ci, co = shape
    g = torch.Generator().manual_seed(1)
    x, w = _rand((N, H, W, ci), g), _rand((co, ci, 3, 3), g, 1 / (3 * ci**0.5))
    b, res = _rand((co,), g), _rand((N, H, W, co), g)
    tol = _tol(precision)
    for bias, relu, resid in ((b, True, None), (b, False, res), (None, False, None), (None, True, res)):
        y = ops.cuda_conv3x3_fwd(x, w, bias, relu, resid, precision)
        want = R.conv3x3_fwd(x.double(), w.double(), None if bias is None else bias.double(), relu,
                             None if resid is None else resid.double())
        _close(y, want, tol, f"fwd {shape} {precision} bias={bias is not None} relu={relu} res={resid is not None}")
    if precision == "fp32":  # the core schema op is the exact path
        y = ops.conv3x3_fwd(x, w, b, True, res)
        _close(y, R.conv3x3_fwd(x.double(), w.double(), b.double(), True, res.double()), tol, f"core fwd {shape}")


@gpu
@pytest.mark.parametrize("precision", CONV_PRECISIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=_sid)
def test_conv3x3_dgrad(shape, precision):
    ops = _ops()
    N, H, W, ci, co = shape
    g = torch.Generator().manual_seed(2)
    gy, w = _rand((N, H, W, co), g), _rand((co, ci, 3, 3), g, 1 / (3 * ci**0.5))
    mask = _rand((N, H, W, ci), g)
    tol = _tol(precision)
    for m in (mask, None):
        gx = ops.cuda_conv3x3_dgrad(gy, w, m, precision)
        want = R.conv3x3_dgrad(gy.double(), w.double(), None if m is None else m.double())
        _close(gx, want, tol, f"dgrad {shape} {precision} mask={m is not None}")
    if precision == "fp32":
        _close(ops.conv3x3_dgrad(gy, w, mask), R.conv3x3_dgrad(gy.double(), w.double(), mask.double()), tol,
               f"core dgrad {shape}")


@gpu
@pytest.mark.parametrize("precision", PRECISIONS + ("fp32:2", "bf16:2"))  # + the halo / thin partials
@pytest.mark.parametrize("shape", SHAPES, ids=_sid)
def test_conv3x3_wgrad(shape, precision):
    ops = _ops()
    N, H, W, ci, co = shape
    g = torch.Generator().manual_seed(3)
    x, gy = _rand((N, H, W, ci), g), _rand((N, H, W, co), g)
    tol = _tol(precision)
    gw, gb = ops.cuda_conv3x3_wgrad(x, gy, precision)
    rw, rb = R.conv3x3_wgrad(x.double(), gy.double())
    _close(gw, rw, 2 * tol, f"wgrad {shape} {precision}")
    _close(gb, rb, 1e-5, f"bias grad {shape} {precision}")
    gw2, gb2 = ops.cuda_conv3x3_wgrad(x, gy, precision)
    assert torch.equal(gw, gw2) and torch.equal(gb, gb2), "wgrad is not bitwise reproducible"
    if precision == "fp32":
        cw, cb = ops.conv3x3_wgrad(x, gy)
        assert torch.equal(cw, gw) and torch.equal(cb, gb), "core wgrad != cuda_conv3x3_wgrad fp32"


@gpu
@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (2, 7, 5, 3), (1, 64, 48, 3), (3, 1000)], ids=str)
def test_l1_loss_grad(shape):
    ops = _ops()
    g = torch.Generator().manual_seed(4)
    pred, tgt = _rand(shape, g), _rand(shape, g)
    tgt.view(-1)[::3] = pred.view(-1)[::3]  # exact zeros: sign(0) = 0
    loss, grad = ops.l1_loss_grad(pred, tgt)
    rg = R.l1_loss_grad(pred, tgt)[1]
    rl = R.l1_loss_grad(pred.double(), tgt.double())[0]
    assert loss.shape == () and grad.shape == pred.shape
    assert torch.equal(grad, rg), "l1 grad != sign(d) / numel"
    _close(loss, rl, 1e-5, f"l1 loss {shape}")


@gpu
def test_sgd_update_multi_tensor():
    ops = _ops()
    g = torch.Generator().manual_seed(5)
    # 19 tensors: more than one launch of 16
    ps = [_rand((n,), g) for n in [1, 3, 64, 1728, 36864] * 3 + [5, 7, 9, 11]]
    gs = [_rand(p.shape, g) for p in ps]
    want = [p.clone() for p in ps]
    lr = torch.tensor(0.0137, device=DEV)
    R.sgd_update_(want, gs, lr)
    ops.sgd_update_(ps, gs, lr)
    for i, (a, b) in enumerate(zip(ps, want)):
        assert torch.equal(a, b), f"sgd tensor {i}: max diff {float((a - b).abs().max())}"


def _net_inputs(n, h, w, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, h, w, 3, generator=g)
    tgt = (x + 0.05 * torch.randn(n, h, w, 3, generator=g)).clamp(0, 1)
    p = model.init_params(seed, bias=bias)
    if bias:
        p = {k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in p.items()}
    plist = [p[k] for k in model.param_names(bias)]
    return x.to(DEV), tgt.to(DEV), [t.to(DEV).contiguous() for t in plist]


@gpu
@pytest.mark.parametrize("precision", CONV_PRECISIONS)
@pytest.mark.parametrize("nhw", [(1, 1, 1), (2, 9, 7), (1, 30, 41)], ids=str)
def test_adapt_step_vs_reference(nhw, precision):
    """One fused step (cuda_adapt_step; adapt_step for fp32) vs reference.adapt_step in
    float64: the loss and every parameter after the update."""
    ops = _ops()
    x, tgt, plist = _net_inputs(*nhw)
    ref = [p.double().clone() for p in plist]
    lr = torch.tensor(0.01, device=DEV)
    rloss = R.adapt_step(ref, x.double(), tgt.double(), lr.double())
    mine = [p.clone() for p in plist]
    loss = ops.cuda_adapt_step(mine, x, tgt, lr, precision)
    tol = _tol(precision, 1)
    _close(loss, rloss, tol, f"adapt_step loss {nhw} {precision}")
    for i, (a, b, p0) in enumerate(zip(mine, ref, plist)):
        # compare the updates (p_after - p_before): the weights themselves barely move
        _close_update(a, b, p0, 10 * tol, f"adapt_step param {i} {nhw} {precision}")
    if precision == "fp32":
        core = [p.clone() for p in plist]
        loss2 = ops.adapt_step(core, x, tgt, lr)
        assert torch.equal(loss2, loss) and all(torch.equal(a, b) for a, b in zip(core, mine))


@gpu
@pytest.mark.parametrize("precision", PRECISIONS + ("bf16:2", "bf16:3"))
def test_net_grads_and_forward_vs_reference(precision):
    ops = _ops()
    x, tgt, plist = _net_inputs(2, 13, 10, seed=3)
    pd = [p.double() for p in plist]
    acts = R.net_forward(pd, x.double())
    rloss, gout = R.l1_loss_grad(acts[-1], tgt.double())
    rgrads = R.net_backward(pd, acts, gout)
    loss, grads = ops.cuda_net_grads(plist, x, tgt, precision)
    tol = _tol(precision, 1)
    _close(loss, rloss, tol, f"net loss {precision}")
    for i, (a, b) in enumerate(zip(grads, rgrads)):
        _close(a, b, tol, f"net grad {i} {precision}")
    _close(ops.cuda_net_forward(plist, x, precision), acts[-1], tol, f"net forward {precision}")


@gpu
def test_no_bias_params():
    ops = _ops()
    x, tgt, plist = _net_inputs(1, 8, 9, seed=4, bias=False)
    pd = [q for p in plist for q in (p.double(), None)]
    acts = R.net_forward(pd, x.double())
    _close(ops.cuda_net_forward(plist, x, "fp32"), acts[-1], 1e-4, "no-bias forward")
    rloss, gout = R.l1_loss_grad(acts[-1], tgt.double())
    rgrads = R.net_backward(pd, acts, gout)[0::2]
    loss, grads = ops.cuda_net_grads(plist, x, tgt, "fp32")
    assert len(grads) == 8
    for i, (a, b) in enumerate(zip(grads, rgrads)):
        _close(a, b, 2e-4, f"no-bias grad {i}")


@gpu
def test_argument_checks():
    ops = _ops()
    x, tgt, plist = _net_inputs(1, 5, 6)
    w = plist[2]  # (64, 64, 3, 3)
    with pytest.raises(RuntimeError, match="channels|Cin"):
        ops.conv3x3_fwd(x, w, None, False, None)  # x has 3 channels, w wants 64
    with pytest.raises(RuntimeError, match="contiguous"):
        ops.conv3x3_fwd(x.permute(0, 2, 1, 3), plist[0], None, False, None)
    with pytest.raises(RuntimeError, match="float32"):
        ops.conv3x3_fwd(x.double(), plist[0].double(), None, False, None)
    with pytest.raises(RuntimeError, match="precision"):
        ops.cuda_conv3x3_fwd(x, plist[0], None, False, None, "fp16")
    with pytest.raises(RuntimeError, match="shape"):
        ops.l1_loss_grad(x, tgt[:, :4])
    with pytest.raises(RuntimeError):
        ops.sgd_update_(plist[:2], plist[:1], torch.tensor(0.1, device=DEV))


# ---------------------------------------------------------------- the backend
def _backend(precision, use_graphs):
    from mzsr_fast import backends

    ok, why = backends.available(DEV)["cuda"]
    if not ok:
        pytest.fail(f"cuda backend unavailable on a CUDA machine: {why}")
    return backends.get("cuda", DEV, precision, use_graphs=use_graphs)


def _nchw_inputs(n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, h, w, generator=g)
    tgt = (x + 0.05 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)
    p = model.init_params(seed)
    p = {k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in p.items()}
    return x.to(DEV), tgt.to(DEV), p


@gpu
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("use_graphs", [False, True], ids=["eager", "graphs"])
def test_backend_vs_reference(precision, use_graphs):
    from mzsr_fast.backends.reference import ReferenceBackend

    x, tgt, p = _nchw_inputs(2, 19, 14)
    b = _backend(precision, use_graphs)
    ref = ReferenceBackend(DEV, "fp32")  # TF32 off: the exact oracle
    b.prepare(p, x.shape)
    ref.prepare(p, x.shape)
    tol = _tol(precision, 1)
    _close(b.forward(x), ref.forward(x), tol, f"forward {precision}")
    loss, g = b.grads(x, tgt)
    rloss, rg = ref.grads(x, tgt)
    _close(loss, rloss, tol, "grads loss")
    assert set(g) == set(rg)
    for k in rg:
        _close(g[k], rg[k], tol, f"grad {k} {precision}")
    sched = [0.02, 0.01, 0.01]
    losses = b.adapt(x, tgt, sched)
    rlosses = ref.adapt(x, tgt, sched)
    assert losses.shape == (3,)
    _close(losses, rlosses, tol, f"adapt losses {precision}")
    pa, pr = b.params(), ref.params()
    for k in pr:
        _close_update(pa[k], pr[k], p[k], 10 * tol, f"{k} after 3 steps {precision}")
    _close(b.upscale(x), ref.upscale(x), tol, f"upscale {precision}")
    for k, v in p.items():  # the caller's params are untouched
        assert v.device.type == "cpu"


@gpu
@pytest.mark.parametrize("precision", PRECISIONS)
def test_graph_replay_equals_eager(precision):
    """The captured graphs replay exactly the eager ops: bitwise equal losses, weights
    and upscale output, also for a second schedule and a re-prepare on the same graph."""
    x, tgt, p = _nchw_inputs(1, 23, 17, seed=1)
    up = torch.rand(1, 3, 46, 34, device=DEV)
    eager, graphs = _backend(precision, False), _backend(precision, True)
    for sched in ([0.02, 0.01, 0.01, 0.005], [0.01, 0.0, 0.03, 0.005]):
        for b in (eager, graphs):
            b.prepare(p, x.shape)
        le, lg = eager.adapt(x, tgt, sched), graphs.adapt(x, tgt, sched)
        assert torch.equal(le, lg), f"losses: eager {le.tolist()} vs graph {lg.tolist()}"
        pe, pg = eager.params(), graphs.params()
        for k in pe:
            assert torch.equal(pe[k], pg[k]), f"{k} differs between eager and graph replay"
        assert torch.equal(eager.upscale(up), graphs.upscale(up)), "upscale graph != eager forward"
    assert len(graphs._graphs) == 1 and len(graphs._fgraphs) == 1, "graphs were re-captured"


@gpu
def test_step_matches_adapt():
    x, tgt, p = _nchw_inputs(1, 12, 9, seed=2)
    a, b = _backend("fp32", False), _backend("fp32", True)
    a.prepare(p, x.shape)
    b.prepare(p, x.shape)
    c = _backend("fp32", True)  # step() on a captured one-step graph
    c.prepare(p, x.shape)
    l1 = torch.stack([a.step(x, tgt, lr) for lr in (0.02, 0.01)])
    l2 = b.adapt(x, tgt, [0.02, 0.01])
    l3 = torch.stack([c.step(x, tgt, lr) for lr in (0.02, 0.01)])
    assert torch.equal(l1, l2) and torch.equal(l1, l3), f"eager {l1.tolist()} graph {l2.tolist()} step {l3.tolist()}"
    for k, v in a.params().items():
        assert torch.equal(v, b.params()[k]) and torch.equal(v, c.params()[k]), k


@gpu
def test_adapt_and_upscale_cuda_matches_reference():
    from mzsr_fast import adapt_and_upscale

    g = torch.Generator().manual_seed(7)
    img = torch.rand(3, 24, 20, generator=g).to(DEV)
    p = model.init_params(0)
    out_c = adapt_and_upscale(img, steps=3, backend="cuda", weights=p, device=DEV)
    out_r = adapt_and_upscale(img, steps=3, backend="reference", weights=p, device=DEV)
    assert out_c.shape == out_r.shape == (3, 48, 40)
    _close(out_c, out_r, 2e-4, "adapt_and_upscale cuda vs reference")
