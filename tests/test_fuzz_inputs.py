"""Property tests (hypothesis) of ``adapt_and_upscale``'s input handling (issue 4, part 2).

Every accepted input kind and dtype either works as documented -- same kind, dtype and
layout back, ``scale`` times larger -- or raises ``ValueError``/``TypeError`` whose message
names the problem.  Any other exception escaping is a failure (``_call`` turns it into one).

Bounded for CI: the reference backend on CPU, steps 0 or 1, images of at most 12 pixels a
side, ``max_examples=25``, ``derandomize=True`` (the same examples every run).
"""
from __future__ import annotations

import io as _io
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from mzsr_fast import adapt_and_upscale, gaussian_kernel, model
from mzsr_fast import io as mio

P = model.init_params(0)
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SIDE = st.integers(2, 12)  # valid sides at scale 2
TINY_SIDE = st.integers(1, 12)  # includes the 1-pixel sides that must be refused
STEPS = st.sampled_from([0, 1])


class Escaped(AssertionError):
    pass


def _call(image, **kw):
    """adapt_and_upscale with the fuzz defaults; any exception other than ValueError /
    TypeError is re-raised as a test failure naming it."""
    args = dict(steps=1, weights=P, backend="reference", device="cpu")
    args.update(kw)
    try:
        return adapt_and_upscale(image, **args)
    except (ValueError, TypeError):
        raise
    except Exception as e:  # noqa: BLE001 - the point of the test
        raise Escaped(f"{type(e).__name__} escaped for input {_describe(image)}: {e}") from e


def _describe(x) -> str:
    if isinstance(x, np.ndarray):
        return f"numpy {x.shape} {x.dtype} strides {x.strides}"
    if isinstance(x, torch.Tensor):
        return f"torch {tuple(x.shape)} {x.dtype}"
    if isinstance(x, Image.Image):
        return f"PIL {x.mode} {x.size}"
    return type(x).__name__


def _expect_error(err, pattern, image, **kw):
    with pytest.raises(err) as ei:
        _call(image, **kw)
    assert re.search(pattern, str(ei.value)), f"{err.__name__} message {str(ei.value)!r} does not name {pattern!r}"


def _rand(seed, shape, dtype):
    """Random image of ``shape`` with the full value range of ``dtype`` (floats in [0, 1])."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if dtype == np.uint16:
        return rng.integers(0, 65536, shape, dtype=np.uint16)
    return rng.random(shape).astype(dtype)


NP_DTYPES = [np.uint8, np.uint16, np.float16, np.float32, np.float64]


@st.composite
def numpy_images(draw, side=SIDE):
    h, w = draw(side), draw(side)
    c = draw(st.sampled_from([None, 1, 2, 3, 4]))
    dtype = draw(st.sampled_from(NP_DTYPES))
    shape = (h, w) if c is None else (h, w, c)
    return _rand(draw(st.integers(0, 2**32 - 1)), shape, dtype)


def _relayout(a: np.ndarray, how: str) -> np.ndarray:
    """The same values in another memory layout (none of them contiguous C order)."""
    if how == "flip":  # negative strides on both axes
        return np.flip(np.ascontiguousarray(np.flip(a, (0, 1))), (0, 1))
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "strided":  # every other element of a 2x larger array
        big = np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)
        return big[::2, ::2]
    if how == "transposed":  # a transposed view of the transposed copy
        axes = (1, 0) + tuple(range(2, a.ndim))
        return np.ascontiguousarray(a.transpose(axes)).transpose(axes)
    if how == "byteswapped" and a.dtype.itemsize > 1:  # non-native byte order, same values
        return a.astype(a.dtype.newbyteorder("S"))
    return a


# ----------------------------------------------------------------------------- numpy
@FUZZ
@given(img=numpy_images(), steps=STEPS, kernel=st.sampled_from([None, "g3"]))
def test_numpy_any_dtype_and_layout(img, steps, kernel):
    """uint8/uint16/float16/32/64, (H, W) and (H, W, 1..4): same dtype and layout back, 2x."""
    k = gaussian_kernel(3, 0.5) if kernel and min(img.shape[:2]) >= 3 else None
    out = _call(img, steps=steps, kernel=k)
    assert isinstance(out, np.ndarray)
    assert out.dtype == img.dtype
    assert out.shape == (2 * img.shape[0], 2 * img.shape[1]) + img.shape[2:]
    if out.dtype.kind == "f":
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@FUZZ
@given(img=numpy_images(side=st.integers(2, 8)),
       how=st.sampled_from(["flip", "fortran", "strided", "transposed", "byteswapped"]))
def test_numpy_layout_does_not_change_the_result(img, how):
    """Non-contiguous, negative-stride, Fortran and byte-swapped arrays give bitwise the
    result of their C-contiguous copy."""
    other = _relayout(img, how)
    assert np.array_equal(other, img)
    if how in ("flip", "strided"):
        assert not other.flags.c_contiguous
    a = _call(np.ascontiguousarray(img))
    b = _call(other)
    assert b.dtype == other.dtype and b.shape == a.shape
    assert np.array_equal(a, b)


@FUZZ
@given(h=SIDE, w=SIDE, seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.uint8, np.float32]))
def test_greyscale_forms_agree(h, w, seed, dtype):
    """(H, W) and (H, W, 1) are the same greyscale image; it runs as three equal channels
    and comes back as their mean."""
    g = _rand(seed, (h, w), dtype)
    a = _call(g)
    b = _call(g[..., None])
    assert a.shape == (2 * h, 2 * w) and b.shape == (2 * h, 2 * w, 1)
    assert np.array_equal(a, b[..., 0])
    rgb = _call(np.repeat(g[..., None], 3, axis=2).astype(np.float32) / (255 if dtype == np.uint8 else 1))
    mean = rgb.mean(axis=2)
    if dtype == np.uint8:
        assert np.abs(a.astype(np.float64) - mean * 255).max() <= 0.5 + 1e-4
    else:
        np.testing.assert_allclose(a, mean, atol=1e-6)


@FUZZ
@given(img=numpy_images(side=TINY_SIDE))
def test_tiny_images(img):
    """1-pixel sides are refused by name; 2 pixels and up work (at scale 2)."""
    if min(img.shape[:2]) < 2:
        _expect_error(ValueError, "too small", img)
    else:
        assert _call(img, steps=0).shape[:2] == (2 * img.shape[0], 2 * img.shape[1])


@FUZZ
@given(img=numpy_images(), where=st.integers(0, 10**6), bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_nan_inf_refused(img, where, bad):
    assume(img.dtype.kind == "f")
    img = img.copy()
    img.flat[where % img.size] = bad
    _expect_error(ValueError, "NaN or inf", img)


@FUZZ
@given(img=numpy_images(), where=st.integers(0, 10**6),
       bad=st.sampled_from([-1e-3, -1.0, 1.001, 2.0, 255.0, 65535.0, -1e30]))
def test_float_outside_unit_range_refused(img, where, bad):
    assume(img.dtype.kind == "f")
    img = img.astype(np.float32 if img.dtype == np.float16 and abs(bad) > 6e4 else img.dtype)
    img.flat[where % img.size] = bad
    _expect_error(ValueError, r"\[0, 1\]", img)


@FUZZ
@given(ndim=st.sampled_from([0, 1, 4, 5]), side=st.integers(1, 4))
def test_numpy_wrong_rank(ndim, side):
    _expect_error(ValueError, "shape", np.zeros((side,) * ndim, np.uint8))


@FUZZ
@given(c=st.sampled_from([0, 5, 6, 64]), h=SIDE, w=SIDE)
def test_numpy_wrong_channels(c, h, w):
    _expect_error(ValueError, "shape|empty", np.zeros((h, w, c), np.uint8))


@FUZZ
@given(dtype=st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64, np.bool_,
                              np.complex64, np.complex128, object, "U1", "datetime64[s]"]), h=SIDE, w=SIDE)
def test_numpy_unsupported_dtype(dtype, h, w):
    _expect_error(TypeError, "dtype", np.zeros((h, w, 3), dtype=dtype))


@FUZZ
@given(h=st.integers(0, 3), w=st.integers(0, 3), c=st.sampled_from([None, 3]),
       dtype=st.sampled_from([np.uint8, np.float32]))
def test_empty_images(h, w, c, dtype):
    assume(h * w == 0)
    shape = (h, w) if c is None else (h, w, c)
    _expect_error(ValueError, "empty", np.zeros(shape, dtype))


# ----------------------------------------------------------------------------- torch
TORCH_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8]


@st.composite
def torch_images(draw):
    h, w = draw(SIDE), draw(SIDE)
    c = draw(st.sampled_from([1, 3, 4]))
    batch = draw(st.sampled_from([None, 1, 2]))
    dtype = draw(st.sampled_from(TORCH_DTYPES))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    shape = (c, h, w) if batch is None else (batch, c, h, w)
    if dtype == torch.uint8:
        t = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    else:
        t = torch.rand(shape, generator=g).to(dtype)
    if draw(st.booleans()):  # non-contiguous: a transposed view of the transposed copy
        t = t.transpose(-1, -2).contiguous().transpose(-1, -2)
        assert not t.is_contiguous() or min(h, w) == 1
    if draw(st.booleans()):
        t = t.flip(-1).contiguous().flip(-1)  # same values, a different (copied) buffer
    return t


@FUZZ
@given(t=torch_images(), steps=STEPS)
def test_torch_any_dtype_and_rank(t, steps):
    out = _call(t, steps=steps)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == t.dtype and out.device == t.device and out.dim() == t.dim()
    assert out.shape[:-2] == t.shape[:-2] and out.shape[-2:] == (2 * t.shape[-2], 2 * t.shape[-1])
    if t.is_floating_point():
        f = out.float()
        assert bool(torch.isfinite(f).all()) and float(f.min()) >= 0 and float(f.max()) <= 1


@FUZZ
@given(t=torch_images())
def test_torch_batch_items_are_independent(t):
    """Each image of a batch is adapted on its own: item i of the batch result equals the
    result of item i alone."""
    assume(t.dim() == 4 and t.shape[0] == 2)
    out = _call(t)
    for i in range(2):
        assert torch.equal(out[i], _call(t[i]))


@FUZZ
@given(t=torch_images(), bad=st.sampled_from([float("nan"), float("inf"), -1.0, 1.5]), where=st.integers(0, 10**6))
def test_torch_bad_values(t, bad, where):
    assume(t.is_floating_point())
    t = t.contiguous().clone()
    t.view(-1)[where % t.numel()] = bad
    _expect_error(ValueError, "NaN or inf" if not np.isfinite(bad) else r"\[0, 1\]", t)


@FUZZ
@given(ndim=st.sampled_from([0, 1, 2, 5]), c=st.sampled_from([0, 2, 5]), h=SIDE,
       dtype=st.sampled_from([torch.int32, torch.int64, torch.bool, torch.int8, torch.complex64]))
def test_torch_bad_shape_or_dtype(ndim, c, h, dtype):
    _expect_error(ValueError, "shape", torch.zeros((h,) * ndim))
    _expect_error(ValueError, "channels", torch.zeros(c, h, h))
    _expect_error(TypeError, "dtype", torch.zeros(3, h, h, dtype=dtype))


def test_torch_empty():
    _expect_error(ValueError, "empty", torch.zeros(0, 3, 4, 4))
    _expect_error(ValueError, "empty", torch.zeros(3, 0, 4))
    _expect_error(ValueError, "empty", torch.zeros(1, 3, 4, 0))


def test_torch_requires_grad_and_caller_tensor_untouched():
    t = torch.rand(3, 6, 5, requires_grad=True)
    before = t.detach().clone()
    out = _call(t)
    assert out.shape == (3, 12, 10) and not out.requires_grad
    assert torch.equal(t.detach(), before) and t.grad is None


# ----------------------------------------------------------------------------- PIL
#: mode given -> mode returned (documented in mzsr_fast/io.py and the README)
PIL_MODES = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "P": "RGB", "PA": "RGBA", "I;16": "I;16",
             "I": "I", "F": "F", "1": "L", "CMYK": "RGB", "YCbCr": "RGB", "La": "LA", "RGBa": "RGBA"}


def _pil(mode: str, h: int, w: int, seed: int) -> Image.Image:
    rgba = _rand(seed, (h, w, 4), np.uint8)
    if mode == "I;16":
        return Image.fromarray(_rand(seed, (h, w), np.uint16))
    if mode == "I":
        return Image.fromarray(_rand(seed, (h, w), np.uint16).astype(np.int32))
    if mode == "F":
        return Image.fromarray(_rand(seed, (h, w), np.float32))
    base = Image.fromarray(rgba, "RGBA")
    if mode == "P":
        return base.convert("RGB").quantize(8)
    if mode == "PA":
        return base.convert("RGB").quantize(8).convert("PA")
    return base.convert(mode)


@FUZZ
@given(mode=st.sampled_from(sorted(PIL_MODES)), h=SIDE, w=SIDE, seed=st.integers(0, 2**32 - 1), steps=STEPS)
def test_pil_modes(mode, h, w, seed, steps):
    img = _pil(mode, h, w, seed)
    assert img.mode == mode
    out = _call(img, steps=steps)
    assert isinstance(out, Image.Image)
    assert out.mode == PIL_MODES[mode], (mode, out.mode)
    assert out.size == (2 * w, 2 * h)


def test_palette_with_transparency_keeps_alpha():
    rgb = Image.fromarray(_rand(1, (6, 5, 3), np.uint8)).quantize(4)
    rgb.info["transparency"] = 0
    out = _call(rgb)
    assert out.mode == "RGBA" and out.size == (10, 12)
    alpha = np.asarray(out)[..., 3]
    assert alpha.min() < 255  # the transparent index survived as alpha


@FUZZ
@given(h=SIDE, w=SIDE, seed=st.integers(0, 2**32 - 1), bad=st.sampled_from([-1, 65536, 2**31 - 1]))
def test_pil_mode_i_outside_16_bit_refused(h, w, seed, bad):
    a = _rand(seed, (h, w), np.uint16).astype(np.int32)
    a[0, 0] = bad
    _expect_error(ValueError, "0..65535", Image.fromarray(a))


@FUZZ
@given(h=SIDE, w=SIDE, seed=st.integers(0, 2**32 - 1), bad=st.sampled_from([float("nan"), 2.0, -0.5]))
def test_pil_mode_f_bad_values(h, w, seed, bad):
    a = _rand(seed, (h, w), np.float32)
    a[-1, -1] = bad
    _expect_error(ValueError, "NaN|\\[0, 1\\]", Image.fromarray(a))


# EXIF orientation (tag 0x0112): applied, so the result is upright.  PIL's transposes that
# ImageOps.exif_transpose applies for each value:
EXIF_OPS = {2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180], 4: [Image.Transpose.FLIP_TOP_BOTTOM],
            5: [Image.Transpose.TRANSPOSE], 6: [Image.Transpose.ROTATE_270], 7: [Image.Transpose.TRANSVERSE],
            8: [Image.Transpose.ROTATE_90]}


@FUZZ
@given(orientation=st.integers(1, 8), h=SIDE, w=SIDE, seed=st.integers(0, 2**32 - 1),
       via_file=st.booleans())
def test_exif_orientation_applied(orientation, h, w, seed, via_file):
    """EXIF orientation is applied (documented): the result equals the result for the
    upright image, and its size is the upright size times 2.  Both for an in-memory
    image with the tag and for a PNG file with it (through io.load_image)."""
    img = Image.fromarray(_rand(seed, (h, w, 3), np.uint8))
    upright = img
    for op in EXIF_OPS.get(orientation, []):
        upright = upright.transpose(op)
    exif = img.getexif()
    exif[0x0112] = orientation
    if via_file:
        buf = _io.BytesIO()
        img.save(buf, format="PNG", exif=exif.tobytes())
        import tempfile
        import os

        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "o.png")
            with open(p, "wb") as f:
                f.write(buf.getvalue())
            tagged = mio.load_image(p)
    else:
        tagged = img.copy()
        tagged.getexif()[0x0112] = orientation
    out = _call(tagged)
    ref = _call(upright)
    assert out.size == (2 * upright.size[0], 2 * upright.size[1])
    assert np.array_equal(np.asarray(out), np.asarray(ref))


def test_16bit_and_palette_png_files(tmp_path):
    """A 16-bit PNG comes back 16-bit (mode I;16 or I), a palette PNG as RGB."""
    a16 = _rand(3, (7, 9), np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    im = mio.load_image(tmp_path / "g16.png")
    assert im.mode in ("I;16", "I") and np.array_equal(np.asarray(im).astype(np.uint16), a16)
    out = _call(im, steps=0)
    assert out.mode == im.mode and out.size == (18, 14)
    o = np.asarray(out).astype(np.int64)
    assert o.max() <= 65535 and o.min() >= 0
    assert (o % 257 != 0).mean() > 0.5  # 16-bit values, not 8-bit ones scaled by 257
    Image.fromarray(_rand(4, (7, 9, 3), np.uint8)).quantize(16).save(tmp_path / "p.png")
    pal = mio.load_image(tmp_path / "p.png")
    assert pal.mode == "P"
    assert _call(pal).mode == "RGB"


# ----------------------------------------------------------------------------- kernels
@st.composite
def kernels(draw):
    """Any-rank, any-size, any-sign kernels, sometimes with NaN/inf, sometimes all zero."""
    ndim = draw(st.sampled_from([2, 2, 2, 2, 1, 3, 0]))
    shape = tuple(draw(st.integers(0, 13)) for _ in range(ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["positive", "signed", "zero", "negative", "scaled", "nan", "inf", "huge"]))
    k = rng.random(shape)
    if kind == "signed":
        k = k - 0.3
    elif kind == "zero":
        k = np.zeros(shape)
    elif kind == "negative":
        k = -k
    elif kind == "scaled":
        k = k * draw(st.sampled_from([1e-30, 1e-6, 7.0, 1e30]))
    elif kind == "huge":
        k = k * 1e308
    elif kind in ("nan", "inf") and k.size:
        k.flat[draw(st.integers(0, 10**6)) % k.size] = np.nan if kind == "nan" else np.inf
    as_tensor = draw(st.booleans())
    return torch.from_numpy(k) if as_tensor else k


def _kernel_verdict(k, h, w):
    """(error type, message pattern) the documented checks give, in their order; None = ok."""
    k = k.numpy() if isinstance(k, torch.Tensor) else k
    if k.ndim != 2:
        return ValueError, "2-D"
    if k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        return ValueError, "odd"
    if not np.isfinite(k).all():
        return ValueError, "NaN or inf"
    a = np.abs(k).sum()
    kk = k / np.abs(k).max() if not np.isfinite(a) else k
    s, a = kk.sum(), np.abs(kk).sum()
    if not (s > 0 and s > 1e-12 * a):
        return ValueError, "normalised"
    if k.shape[0] > h or k.shape[1] > w:
        return ValueError, "larger than"
    return None


@FUZZ
@given(k=kernels(), h=SIDE, w=SIDE, seed=st.integers(0, 2**32 - 1))
def test_kernels(k, h, w, seed):
    """Kernels that are not normalised, not odd, negative, all zero, larger than the image,
    NaN/inf or of the wrong rank: each works (normalised to sum 1) or is refused by name."""
    img = _rand(seed, (h, w, 3), np.float32)
    verdict = _kernel_verdict(k, h, w)
    if verdict is not None:
        _expect_error(*verdict, img, kernel=k)
        return
    out = _call(img, kernel=k)
    assert out.shape == (2 * h, 2 * w, 3) and np.isfinite(out).all()
    # normalisation: the kernel divided by its sum gives the same result
    kn = np.asarray(k, dtype=np.float64)
    kn = kn / np.abs(kn).max()
    kn = kn / kn.sum()
    np.testing.assert_allclose(_call(img, kernel=kn), out, atol=1e-5)


@FUZZ
@given(h=SIDE, w=SIDE)
def test_kernel_odd_types(h, w):
    img = np.zeros((h, w, 3), np.uint8)
    _expect_error(TypeError, "real", img, kernel=np.ones((3, 3), np.complex64))
    _expect_error(TypeError, "real", img, kernel=torch.ones(3, 3, dtype=torch.complex64))
    _expect_error(TypeError, "numeric", img, kernel=[[1, 2], [3]])
    _expect_error(TypeError, "kernel", img, kernel=3.0)
    _expect_error(TypeError, "kernel", img, kernel={"k": 1})
    _expect_error(ValueError, "not found", img, kernel="/nonexistent/kernel.npy")


def test_not_an_image():
    for bad in (None, "image.png", [[0, 1], [1, 0]], 3, b"\x89PNG"):
        _expect_error(TypeError, "numpy array, PIL.Image or torch tensor", bad)


# ----------------------------------------------------------------------------- weights dicts
@pytest.mark.parametrize(
    "mutate,err,match",
    [
        (lambda p: p.pop("layers.4.weight"), ValueError, "missing"),
        (lambda p: p.update(extra=torch.zeros(1)), ValueError, "unexpected"),
        (lambda p: p.update({"layers.0.weight": torch.zeros(64, 3, 5, 5)}), ValueError, "shape"),
        (lambda p: p.update({"layers.7.bias": torch.zeros(4)}), ValueError, "shape"),
        (lambda p: p.update({"layers.2.weight": p["layers.2.weight"].numpy()}), TypeError, "torch.Tensor"),
        (lambda p: p.update({"layers.2.weight": p["layers.2.weight"].to(torch.int64)}), TypeError, "floating"),
        (lambda p: p["layers.5.bias"].__setitem__(0, float("nan")), ValueError, "NaN or inf"),
        (lambda p: p["layers.6.weight"].__setitem__((0, 0, 0, 0), float("inf")), ValueError, "NaN or inf"),
    ],
    ids=["missing", "extra", "w-shape", "b-shape", "numpy", "int", "nan", "inf"],
)
def test_check_params(mutate, err, match):
    """model.check_params: every wrong params dict refused by name; the caller's dict and
    tensors are left as they were."""
    p = {k: v.clone() for k, v in P.items()}
    mutate(p)
    keys = list(p)
    with pytest.raises(err, match=match):
        model.check_params(p, "weights dict")
    assert list(p) == keys
    with pytest.raises(TypeError, match="dict"):
        model.check_params([1, 2])


def test_check_params_accepts_and_converts():
    p = {k: v.double() for k, v in P.items()}
    q = model.check_params(p)
    assert list(q) == model.param_names() and all(v.dtype == torch.float32 for v in q.values())
    assert all(v.dtype == torch.float64 for v in p.values())  # the caller's dict untouched
    nb = model.check_params({k: v for k, v in P.items() if "bias" not in k})
    assert list(nb) == model.param_names(bias=False)
