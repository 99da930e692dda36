"""Every accepted input kind and dtype round-trips (kind, dtype, layout, size x scale), and
bad inputs raise TypeError/ValueError naming the problem."""
import numpy as np
import pytest
import torch
from PIL import Image

from mzsr_fast import io as mio

RNG = np.random.default_rng(0)
U8 = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


def _roundtrip(img):
    xs, meta = mio.to_internal(img)
    for x in xs:
        assert x.shape[1] == 3 and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    return mio.from_internal(xs, meta), xs


@pytest.mark.parametrize(
    "img",
    [
        U8,
        U8[..., 0],
        U8[..., :1],
        np.concatenate([U8, U8[..., :1]], axis=2),  # RGBA
        (U8.astype(np.uint16) * 257),
        U8.astype(np.float32) / 255,
        U8.astype(np.float64) / 255,
        U8.astype(np.float16) / 255,
        U8[::-1, ::-1],  # negative strides
        np.asfortranarray(U8),
    ],
    ids=["u8", "grey", "hw1", "rgba", "u16", "f32", "f64", "f16", "negstride", "fortran"],
)
def test_numpy_roundtrip(img):
    out, xs = _roundtrip(img)
    assert isinstance(out, np.ndarray) and out.dtype == img.dtype and out.shape == img.shape
    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
        assert np.array_equal(out, img)
    tol = 1e-3 if img.dtype == np.float16 else 1e-6
    ref = img.astype(np.float64) / (65535 if img.dtype == np.uint16 else 255 if img.dtype == np.uint8 else 1)
    np.testing.assert_allclose(out.astype(np.float64) / (65535 if img.dtype == np.uint16 else 255 if img.dtype == np.uint8 else 1), ref, atol=tol + 1 / 255)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "P", "I;16", "F"])
def test_pil_roundtrip(mode):
    base = Image.fromarray(U8)
    if mode == "I;16":
        img = Image.fromarray((U8[..., 0].astype(np.uint16) * 257))
    elif mode == "F":
        img = Image.fromarray(U8[..., 0].astype(np.float32) / 255)
    else:
        img = base.convert(mode)
    out, _ = _roundtrip(img)
    assert isinstance(out, Image.Image) and out.size == img.size
    if mode == "P":
        assert out.mode == "RGB"
    else:
        assert out.mode == img.mode


def test_exif_orientation_applied():
    img = Image.fromarray(RNG.integers(0, 256, (4, 7, 3), dtype=np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW
    import io as _io

    buf = _io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    buf.seek(0)
    xs, meta = mio.to_internal(Image.open(buf))
    assert tuple(xs[0].shape[-2:]) == (7, 4)


@pytest.mark.parametrize("shape", [(3, 6, 5), (1, 3, 6, 5), (2, 3, 6, 5), (1, 6, 5), (4, 6, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.uint8])
def test_torch_roundtrip(shape, dtype):
    t = torch.rand(shape)
    t = (t * 255).round().to(torch.uint8) if dtype == torch.uint8 else t.to(dtype)
    out, xs = _roundtrip(t)
    assert len(xs) == (shape[0] if len(shape) == 4 else 1)
    assert out.dtype == dtype and out.shape == t.shape and out.device == t.device
    tol = 1 if dtype == torch.uint8 else 1e-3
    assert float((out.double() - t.double()).abs().max()) <= tol


def test_noncontiguous_torch():
    t = torch.rand(3, 8, 6).transpose(1, 2)
    out, _ = _roundtrip(t)
    torch.testing.assert_close(out, t)


@pytest.mark.parametrize(
    "bad,err,match",
    [
        ([[1, 2]], TypeError, "numpy array, PIL.Image or torch tensor"),
        (np.zeros((2, 2), bool), TypeError, "dtype"),
        (np.zeros((2, 2, 2, 3), np.uint8), ValueError, "shape"),
        (np.zeros((2, 2, 5), np.uint8), ValueError, "shape"),
        (np.full((2, 2, 3), np.nan, np.float32), ValueError, "NaN"),
        (np.full((2, 2, 3), np.inf, np.float32), ValueError, "NaN"),
        (np.full((2, 2, 3), 2.0, np.float32), ValueError, r"\[0, 1\]"),
        (torch.zeros(2, 2), ValueError, "shape"),
        (torch.zeros(2, 2, 4, 4), ValueError, "channels"),
        (torch.zeros(0, 3, 4, 4), ValueError, "empty"),
        (torch.zeros(3, 4, 4, dtype=torch.int32), TypeError, "dtype"),
        (torch.full((3, 4, 4), float("nan")), ValueError, "NaN"),
    ],
)
def test_bad_images(bad, err, match):
    with pytest.raises(err, match=match):
        mio.to_internal(bad)


def test_kernel_loading(tmp_path):
    k = np.ones((3, 3))
    np.save(tmp_path / "k.npy", k)
    np.testing.assert_allclose(mio.load_kernel(tmp_path / "k.npy"), k / 9)
    import scipy.io

    scipy.io.savemat(tmp_path / "k.mat", {"kernel": k})
    np.testing.assert_allclose(mio.load_kernel(str(tmp_path / "k.mat")), k / 9)
    scipy.io.savemat(tmp_path / "bad.mat", {"other": k})
    with pytest.raises(ValueError, match="no key 'kernel'"):
        mio.load_kernel(tmp_path / "bad.mat")
    with pytest.raises(ValueError, match="not found"):
        mio.load_kernel(tmp_path / "missing.npy")
    (tmp_path / "k.txt").write_text("1")
    with pytest.raises(ValueError, match=".mat"):
        mio.load_kernel(tmp_path / "k.txt")
    with pytest.raises(TypeError):
        mio.load_kernel(3.0)
    assert mio.load_kernel(None) is None
    np.testing.assert_allclose(mio.load_kernel(torch.ones(3, 3)), k / 9)


def test_image_files(tmp_path):
    p = tmp_path / "a.png"
    Image.fromarray(U8).save(p)
    assert np.array_equal(np.asarray(mio.load_image(p)), U8)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        mio.load_image(tmp_path / "empty.png")
    (tmp_path / "trunc.png").write_bytes(p.read_bytes()[:40])
    with pytest.raises(ValueError, match="cannot read"):
        mio.load_image(tmp_path / "trunc.png")
    out = tmp_path / "b.png"
    mio.save_image(Image.fromarray(U8), out)
    with pytest.raises(ValueError, match="exists"):
        mio.save_image(Image.fromarray(U8), out)
    mio.save_image(Image.fromarray(U8), out, force=True)
    with pytest.raises(ValueError, match="input"):
        mio.save_image(Image.fromarray(U8), p, force=True, protect=(p,))
    assert not list(tmp_path.glob(".*tmp*"))
