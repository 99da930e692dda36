"""File fuzzing (issue 4, part 3): image, kernel and weights files that are corrupt,
truncated, empty, random, misnamed or hostile give a ``ValueError`` naming the file and
the problem (never another exception, never a partial result), and the CLI never
overwrites its inputs, refuses an existing output without ``--force``, writes
atomically and exits non-zero with a one-line message (no traceback).

Bounded for CI: 20x-ish pixel images, the reference backend, steps 0/1; hypothesis with
``max_examples=25, derandomize=True``.
"""
from __future__ import annotations

import errno
import io as _io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import mzsr_fast
from mzsr_fast import adapt_and_upscale, cli, model
from mzsr_fast import io as mio

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (9, 7, 3), dtype=np.uint8)
REPO = Path(__file__).resolve().parents[1]


def _encode(fmt: str, arr=RGB, **kw) -> bytes:
    buf = _io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


FORMATS = {
    "png": _encode("PNG"),
    "png16": _encode("PNG", (RGB[..., 0].astype(np.uint16) * 257)),
    "jpg": _encode("JPEG", quality=95),
    "bmp": _encode("BMP"),
    "tif": _encode("TIFF", compression="tiff_deflate"),
    "gif": _encode("GIF"),
    "webp": _encode("WEBP", lossless=True),
}
EXT = {"png16": "png"}


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(_io.BytesIO(data)))


def _load_or_valueerror(path: Path):
    """load_image's contract: a PIL image or a ValueError naming the file."""
    try:
        return mio.load_image(path)
    except ValueError as e:
        assert str(path) in str(e), f"message does not name the file: {e}"
        return None


# ----------------------------------------------------------------------------- image files
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_truncation(tmp_path, fmt):
    """Every prefix of a small valid file: a ValueError, or (where only bytes after the
    pixel data are missing: trailer chunks, padding) exactly the original pixels --
    never partially decoded garbage and never another exception."""
    data = FORMATS[fmt]
    full = _decoded(data)
    p = tmp_path / f"t.{EXT.get(fmt, fmt)}"
    loaded = 0
    for n in range(len(data)):
        p.write_bytes(data[:n])
        im = _load_or_valueerror(p)
        if n == 0:
            assert im is None
        if im is not None:
            loaded += 1
            assert np.array_equal(np.asarray(im), full), f"{fmt}: prefix {n}/{len(data)} decoded to other pixels"
    # almost every prefix must be refused (the pixel data fills most of the file)
    assert loaded < 0.15 * len(data), (fmt, loaded, len(data))


def test_empty_missing_folder(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        mio.load_image(tmp_path / "e.png")
    with pytest.raises(ValueError, match="not found"):
        mio.load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="not a file"):
        mio.load_image(tmp_path)


@FUZZ
@given(data=st.binary(min_size=1, max_size=2048),
       magic=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"GIF89a", b"P6\n"]),
       ext=st.sampled_from(["png", "jpg", "bmp", "tif", "gif", "ppm", "txt"]))
def test_random_bytes(tmp_path_factory, data, magic, ext):
    """Random bytes, with or without a real format's magic number, under any extension."""
    p = tmp_path_factory.mktemp("rnd") / f"r.{ext}"
    p.write_bytes(magic + data)
    im = _load_or_valueerror(p)
    assert im is None or isinstance(im, Image.Image)


@FUZZ
@given(fmt=st.sampled_from(sorted(FORMATS)), where=st.lists(st.integers(0, 10**6), min_size=1, max_size=5),
       values=st.lists(st.integers(0, 255), min_size=5, max_size=5))
def test_flipped_bytes(tmp_path_factory, fmt, where, values):
    """Valid files with a few bytes changed: a ValueError or an image, nothing else."""
    data = bytearray(FORMATS[fmt])
    for i, v in zip(where, values):
        data[i % len(data)] = v
    p = tmp_path_factory.mktemp("flip") / f"f.{EXT.get(fmt, fmt)}"
    p.write_bytes(bytes(data))
    im = _load_or_valueerror(p)
    assert im is None or isinstance(im, Image.Image)


@pytest.mark.parametrize("content,name", [("png", "x.jpg"), ("jpg", "x.png"), ("bmp", "x.tif"), ("png", "x.dat")])
def test_wrong_extension_loads_by_content(tmp_path, content, name):
    """The format comes from the content, not the name (documented)."""
    (tmp_path / name).write_bytes(FORMATS[content])
    assert np.array_equal(np.asarray(mio.load_image(tmp_path / name)), _decoded(FORMATS[content]))


def test_not_an_image_with_image_extension(tmp_path):
    for name, data in [("a.png", b"hello world\n"), ("k.png", np.zeros((3, 3)).tobytes()),
                       ("w.png", (REPO / "mzsr_fast/weights/SHA256SUMS").read_bytes())]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match="cannot read image file"):
            mio.load_image(tmp_path / name)


def _png_header_only(w: int, h: int, color_type: int = 2, bit_depth: int = 8, idat: bytes = b"") -> bytes:
    """A PNG whose IHDR (valid CRC) claims w x h pixels, with (almost) no pixel data."""
    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat or zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("w,h", [(100_000, 100_000), (2**31 - 1, 2**31 - 1), (25_000, 20_000), (1, 500_000_000)])
def test_decompression_bomb_refused_before_decoding(tmp_path, w, h):
    """A header claiming more than io.MAX_IMAGE_PIXELS pixels is refused from the header
    alone (fast, no pixel memory), including the 1x-2x band where Pillow only warns
    (25000 x 20000 = 5e8 > 4e8); Pillow's process-wide limit is left as it was."""
    from PIL import Image as PImage

    before = PImage.MAX_IMAGE_PIXELS
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(w, h))
    t = time.perf_counter()
    with pytest.raises(ValueError, match="decompression bomb"):
        mio.load_image(p)
    assert time.perf_counter() - t < 2.0
    assert PImage.MAX_IMAGE_PIXELS == before


def test_bomb_limit_is_the_module_setting(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    p.write_bytes(FORMATS["png"])
    monkeypatch.setattr(mio, "MAX_IMAGE_PIXELS", 9 * 7 - 1)
    with pytest.raises(ValueError, match="decompression bomb"):
        mio.load_image(p)
    monkeypatch.setattr(mio, "MAX_IMAGE_PIXELS", 9 * 7)
    assert mio.load_image(p).size == (7, 9)


def test_header_claims_more_than_the_data(tmp_path):
    """Under the limit but the data is missing: a clear error, not a grey image."""
    p = tmp_path / "short.png"
    p.write_bytes(_png_header_only(3000, 2000))
    with pytest.raises(ValueError, match="cannot read image file"):
        mio.load_image(p)


# ----------------------------------------------------------------------------- kernel files
def test_kernel_files(tmp_path):
    k = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float64)
    np.save(tmp_path / "ok.npy", k)
    good = (tmp_path / "ok.npy").read_bytes()
    np.testing.assert_allclose(mio.load_kernel(tmp_path / "ok.npy"), k / 16)
    cases = {
        "empty.npy": b"",
        "random.npy": RNG.integers(0, 256, 300, dtype=np.uint8).tobytes(),
        "trunc_header.npy": good[:20],
        "trunc_data.npy": good[:-5],
        "random.mat": RNG.integers(0, 256, 300, dtype=np.uint8).tobytes(),
        "text.mat": b"MATLAB 5.0 MAT-file" + b"\x00" * 10,
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match="cannot read kernel file"):
            mio.load_kernel(tmp_path / name)
    # a pickled object array is refused (np.load with allow_pickle=False)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="cannot read kernel file"):
        mio.load_kernel(tmp_path / "obj.npy")
    import scipy.io

    scipy.io.savemat(tmp_path / "trunc.mat", {"kernel": k})
    data = (tmp_path / "trunc.mat").read_bytes()
    for n in range(1, len(data), 7):
        (tmp_path / "trunc.mat").write_bytes(data[:n])
        try:
            np.testing.assert_allclose(mio.load_kernel(tmp_path / "trunc.mat"), k / 16)
        except ValueError as e:
            assert "trunc.mat" in str(e)
    for bad, match in [(np.ones((4, 4)), "odd"), (np.ones((3, 3, 3)), "2-D"), (np.zeros((3, 3)), "normalised"),
                       (np.full((3, 3), np.nan), "NaN")]:
        np.save(tmp_path / "bad.npy", bad)
        with pytest.raises(ValueError, match=match):
            mio.load_kernel(tmp_path / "bad.npy")
        scipy.io.savemat(tmp_path / "bad.mat", {"kernel": bad})
        with pytest.raises(ValueError, match=match):
            mio.load_kernel(tmp_path / "bad.mat")
    scipy.io.savemat(tmp_path / "str.mat", {"kernel": "abc"})
    with pytest.raises((ValueError, TypeError), match="kernel"):
        mio.load_kernel(tmp_path / "str.mat")
    with pytest.raises(ValueError, match="not found"):
        mio.load_kernel(tmp_path)  # a folder is not a kernel file


# ----------------------------------------------------------------------------- weights
@pytest.fixture()
def wfile(tmp_path):
    f = tmp_path / "w.safetensors"
    model.save_weights(f, model.init_params(0), {"scale": 2})
    return f


def test_shipped_weights_flipped_byte_is_a_sha_mismatch(tmp_path, monkeypatch):
    """A copy of the shipped weights with one byte flipped, in a weights folder with the
    real SHA256SUMS: refused by its recorded SHA-256 (the intact copy loads)."""
    wdir = tmp_path / "weights"
    wdir.mkdir()
    shutil.copy(model.WEIGHTS_DIR / "SHA256SUMS", wdir / "SHA256SUMS")
    name = "mzsr_x2_direct.safetensors"
    data = bytearray((model.WEIGHTS_DIR / name).read_bytes())
    monkeypatch.setattr(model, "WEIGHTS_DIR", wdir.resolve())
    (wdir / name).write_bytes(bytes(data))
    model.load_weights(wdir / name)
    data[len(data) // 2] ^= 0x01  # inside the tensor data: safetensors alone cannot see it
    (wdir / name).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        model.load_weights(wdir / name)
    with pytest.raises(ValueError, match="SHA-256"):  # and through the API's default weights
        adapt_and_upscale(RGB, steps=0, backend="reference", device="cpu", weights=None, kernel=np.ones((1, 1)))


@FUZZ
@given(where=st.integers(0, 10**7), bit=st.integers(0, 7))
def test_flipped_bit_anywhere(wfile, where, bit):
    """A user file (no recorded sum) with one bit flipped: in the header a ValueError; in
    the data it may load (undetectable without a checksum, documented) but never raises
    anything else, and a NaN/inf it creates is refused."""
    data = bytearray(wfile.read_bytes())
    data[where % len(data)] ^= 1 << bit
    f = wfile.with_name("flipped.safetensors")
    f.write_bytes(bytes(data))
    try:
        params, _ = model.load_weights(f)
    except ValueError as e:
        assert "flipped.safetensors" in str(e)
    else:
        assert all(bool(torch.isfinite(v).all()) for v in params.values())


def test_truncated_weights(wfile):
    data = wfile.read_bytes()
    f = wfile.with_name("t.safetensors")
    hlen = struct.unpack("<Q", data[:8])[0]
    for n in sorted({0, 1, 7, 8, 9, 8 + hlen // 2, 8 + hlen, 8 + hlen + 1, len(data) // 2, len(data) - 1}):
        f.write_bytes(data[:n])
        with pytest.raises(ValueError, match="safetensors|empty|not found"):
            model.load_weights(f)


def test_wrong_keys_shapes_dtypes(tmp_path):
    from safetensors.torch import save_file

    good = model.init_params(0)
    f = tmp_path / "x.safetensors"
    cases = [
        ({k: v for k, v in good.items() if k != "layers.3.weight"}, "layers.3.weight"),
        ({**good, "extra": torch.zeros(1)}, "extra"),
        ({**good, "layers.7.weight": torch.zeros(3, 64, 5, 5)}, "shape"),
        ({**good, "layers.0.bias": torch.zeros(65)}, "shape"),
        ({k: v.to(torch.int32) for k, v in good.items()}, "floating"),
        ({"weight": torch.zeros(3)}, "unexpected"),
    ]
    for params, match in cases:
        save_file({k: v.contiguous() for k, v in params.items()}, str(f))
        with pytest.raises(ValueError, match=match):
            model.load_weights(f)
    save_file({k: v.half() for k, v in good.items()}, str(f))  # float16 is fine: converted
    p, _ = model.load_weights(f)
    assert all(v.dtype == torch.float32 for v in p.values())


class _Evil:
    """Unpickling this would create a marker file (pickles run code)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["torch.save", "pickle", "torch.save-legacy"])
def test_pickle_weights_refused_and_never_unpickled(tmp_path, how):
    marker = tmp_path / "pwned"
    f = tmp_path / "w.pt"
    payload = {"params": model.init_params(0), "evil": _Evil(str(marker))}
    if how == "pickle":
        f.write_bytes(pickle.dumps(payload, protocol=4))
    else:
        torch.save(payload, f, _use_new_zipfile_serialization=(how == "torch.save"))
    with pytest.raises(ValueError, match="pickle"):
        model.load_weights(f)
    with pytest.raises(ValueError, match="safetensors"):
        adapt_and_upscale(RGB, steps=0, backend="reference", device="cpu", weights=str(f))
    assert not marker.exists(), "the pickle was executed"
    # the same bytes under a .safetensors name are refused too
    g = tmp_path / "w.safetensors"
    g.write_bytes(f.read_bytes())
    with pytest.raises(ValueError, match="safetensors"):
        model.load_weights(g)
    assert not marker.exists()


# ----------------------------------------------------------------------------- CLI
@pytest.fixture()
def work(tmp_path):
    """A folder with lr.png (12x10), hr.png (24x20), k.npy and tiny weights w.safetensors."""
    hr = RNG.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    Image.fromarray(hr).save(tmp_path / "hr.png")
    Image.fromarray(hr[::2, ::2]).save(tmp_path / "lr.png")
    np.save(tmp_path / "k.npy", np.ones((3, 3)))
    model.save_weights(tmp_path / "w.safetensors", model.init_params(0))
    return tmp_path


def _args(work, *extra):
    return ["--steps", "1", "--weights", str(work / "w.safetensors"), "--backend", "reference",
            "--device", "cpu", *extra]


def _run_main(argv, capsys):
    rc = cli.main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _assert_one_line_error(rc, err, match=None, code=2):
    assert rc == code, (rc, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mzsr-fast"), err
    if match:
        assert match in lines[0], (match, err)


def _snapshot(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_cli_never_overwrites_inputs(work, capsys):
    before = _snapshot(work)
    inp = str(work / "lr.png")
    for out in [inp, str(work / "hr.png"), str(work / "k.npy")]:
        rc, _, err = _run_main(["upscale", inp, out, "--force", "--hr", str(work / "hr.png"),
                                "--kernel", str(work / "k.npy")] + _args(work), capsys)
        _assert_one_line_error(rc, err, "refusing to overwrite the input")
    # through a symlink and a hard link to the input
    os.symlink(work / "lr.png", work / "link.png")
    os.link(work / "lr.png", work / "hard.png")
    for out in ["link.png", "hard.png"]:
        rc, _, err = _run_main(["upscale", inp, str(work / out), "--force"] + _args(work), capsys)
        _assert_one_line_error(rc, err, "refusing to overwrite the input")
    after = _snapshot(work)
    for name, data in before.items():
        assert after[name] == data, f"{name} was modified"


def test_cli_existing_output_needs_force(work, capsys):
    out = work / "sr.png"
    out.write_bytes(b"keep me")
    rc, _, err = _run_main(["upscale", str(work / "lr.png"), str(out)] + _args(work), capsys)
    _assert_one_line_error(rc, err, "--force")
    assert out.read_bytes() == b"keep me"
    rc, text, err = _run_main(["upscale", str(work / "lr.png"), str(out), "--force"] + _args(work), capsys)
    assert rc == 0, err
    assert Image.open(out).size == (20, 24)
    assert not [p for p in work.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("existing", [False, True])
def test_cli_atomic_write(work, capsys, monkeypatch, existing):
    """A write that fails half-way (simulated full disk: Image.save writes half the PNG,
    then raises ENOSPC) leaves no partial output and no temp file; an existing output
    (with --force) keeps its old content."""
    out = work / "sr.png"
    if existing:
        Image.fromarray(RGB).save(out)
    old = out.read_bytes() if existing else None
    real_save = Image.Image.save
    calls = []

    def half_then_enospc(self, fp, format=None, **kw):
        calls.append(fp)
        buf = _io.BytesIO()
        real_save(self, buf, format=format, **kw)
        half = buf.getvalue()[: len(buf.getvalue()) // 2]
        if isinstance(fp, (str, os.PathLike)):
            with open(fp, "wb") as f:
                f.write(half)
        else:
            fp.write(half)
            fp.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", half_then_enospc)
    rc, _, err = _run_main(["upscale", str(work / "lr.png"), str(out), "--force"] + _args(work), capsys)
    _assert_one_line_error(rc, err, "No space left", code=1)
    assert len(calls) == 1
    assert (out.read_bytes() == old) if existing else not out.exists()
    assert not [p.name for p in work.iterdir() if ".tmp" in p.name], "temp file left behind"


def test_save_image_mode_the_format_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="RGBA.*JPEG"):
        mio.save_image(Image.fromarray(np.zeros((4, 4, 4), np.uint8)), tmp_path / "a.jpg")
    assert list(tmp_path.iterdir()) == []


def test_save_image_permissions_follow_umask(tmp_path):
    mio.save_image(Image.fromarray(RGB), tmp_path / "a.png")
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize(
    "make,argv_extra,match",
    [
        (lambda w: None, ["IN=missing.png"], "not found"),
        (lambda w: (w / "e.png").write_bytes(b""), ["IN=e.png"], "empty"),
        (lambda w: (w / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage"), ["IN=c.png"], "cannot read image"),
        (lambda w: (w / "t.png").write_bytes((w / "lr.png").read_bytes()[:100]), ["IN=t.png"], "cannot read image"),
        (lambda w: (w / "b.png").write_bytes(_png_header_only(30000, 30000)), ["IN=b.png"], "decompression bomb"),
        (lambda w: (w / "k.mat").write_bytes(b"junk"), ["--kernel", "K=k.mat"], "cannot read kernel"),
        (lambda w: np.save(w / "k4.npy", np.ones((4, 4))), ["--kernel", "K=k4.npy"], "odd"),
        (lambda w: torch.save(model.init_params(0), w / "w.pt"), ["--weights", "K=w.pt"], "pickle"),
        (lambda w: None, ["OUT=sr.xyz"], "unknown image extension"),
        (lambda w: None, ["OUT=nodir/sr.png"], "does not exist"),
        (lambda w: (w / "d.png").mkdir(), ["OUT=d.png"], "is a folder"),
        (lambda w: None, ["--steps", "-1"], "steps"),
        (lambda w: None, ["--scale", "1"], "scale"),
        (lambda w: None, ["--backend", "fastest"], "unknown backend"),
        (lambda w: None, ["--device", "tpu"], "device"),
        (lambda w: None, ["--steps", "x"], "invalid int"),
        (lambda w: None, ["--hr", "K=lr.png"], "--hr"),
    ],
    ids=["missing", "empty", "corrupt", "truncated", "bomb", "kernel-corrupt", "kernel-even", "weights-pickle",
         "out-ext", "out-nodir", "out-folder", "steps", "scale", "backend", "device", "argparse", "hr-size"],
)
def test_cli_bad_inputs_one_line(work, capsys, make, argv_extra, match):
    make(work)
    inp, out, extra = str(work / "lr.png"), str(work / "sr.png"), []
    for a in argv_extra:
        if a.startswith("IN="):
            inp = str(work / a[3:])
        elif a.startswith("OUT="):
            out = str(work / a[4:])
        elif a.startswith("K="):
            extra.append(str(work / a[2:]))
        else:
            extra.append(a)
    before = _snapshot(work)
    with pytest.raises(SystemExit) if match == "invalid int" else _nullctx() as ei:
        rc, _, err = _run_main(["upscale", inp, out] + _args(work) + extra, capsys)
    if ei is not None:  # argparse exits itself
        rc, err = ei.value.code, capsys.readouterr().err
    _assert_one_line_error(rc, err, match)
    assert _snapshot(work) == before, "a failed run changed the folder"


class _nullctx:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def test_cli_internal_error_is_one_line(work, capsys, monkeypatch):
    """An unexpected exception (a bug) is one line and exit 1; MZSR_FAST_TRACEBACK=1
    re-raises it."""
    def boom(*a, **k):
        raise RuntimeError("simulated\nbug")

    monkeypatch.setattr(mzsr_fast, "adapt_and_upscale", boom)
    rc, _, err = _run_main(["upscale", str(work / "lr.png"), str(work / "sr.png")] + _args(work), capsys)
    _assert_one_line_error(rc, err, "internal error: RuntimeError: simulated bug", code=1)
    monkeypatch.setenv("MZSR_FAST_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        cli.main(["upscale", str(work / "lr.png"), str(work / "sr.png")] + _args(work))
    assert not (work / "sr.png").exists()


@pytest.mark.parametrize("case", ["corrupt", "exists"])
def test_cli_subprocess(work, case):
    """The real process: exit code 2, one line on stderr, no traceback, nothing written."""
    out = work / "sr.png"
    inp = work / "lr.png"
    if case == "corrupt":
        inp = work / "c.jpg"
        inp.write_bytes(b"\xff\xd8\xff" + bytes(100))
    else:
        out.write_bytes(b"keep")
    r = subprocess.run([sys.executable, "-m", "mzsr_fast.cli", "upscale", str(inp), str(out)] + _args(work),
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    _assert_one_line_error(r.returncode, r.stderr, "cannot read image" if case == "corrupt" else "exists")
    assert r.stdout == ""
    assert (out.read_bytes() == b"keep") if case == "exists" else not out.exists()
