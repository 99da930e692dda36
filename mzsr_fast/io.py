"""Input/output kinds, image and kernel files, and validation errors.

Every accepted image kind is converted to the internal form ``(1, 3, H, W) float32`` in
[0, 1] on the compute device, and converted back to the caller's kind afterwards:

| input | accepted | returned |
|---|---|---|
| numpy ``(H, W)`` / ``(H, W, C)``, C in 1..4 (2 = grey + alpha) | uint8, uint16 (0..65535), float16/32/64 in [0, 1]; either byte order, any strides | same dtype and layout |
| ``PIL.Image`` | L, LA, La, RGB, RGBA, RGBa, P / PA (palette), 1, I;16 (B/L), I (0..65535), F (in [0, 1]); CMYK, YCbCr, LAB, HSV, RGBX via RGB; EXIF orientation applied | same mode, except P -> RGB or RGBA, PA -> RGBA, La -> LA, RGBa -> RGBA, 1 -> L, I;16B/L -> I;16, others -> RGB |
| torch ``(C, H, W)`` / ``(N, C, H, W)``, C in 1, 3, 4 | float (any) in [0, 1], uint8 | same dtype, device, rank |

Greyscale is processed as three equal channels and returned as one (their mean).  Alpha
is not adapted: it is resized with the same bicubic ``imresize`` and clipped.  EXIF
orientation of a ``PIL.Image`` is applied first, so the result is upright and carries no
orientation tag (its size is the *transposed* input size times the scale for
orientations 5-8).
"""
from __future__ import annotations

import dataclasses
import os
import secrets
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .degradation import check_kernel, imresize

__all__ = ["ImageMeta", "to_internal", "from_internal", "load_image", "load_hr_image", "save_image",
           "check_output_path", "write_atomic", "load_kernel", "MAX_IMAGE_PIXELS"]

#: refuse images above this many pixels when decoding files (decompression bombs)
MAX_IMAGE_PIXELS = 40_000 * 40_000 // 4


@dataclasses.dataclass
class ImageMeta:
    kind: str  # "numpy" | "pil" | "torch"
    dtype: Any
    channels: int  # 1, 3 or 4 as given
    layout: str  # numpy: "hw" | "hwc"; torch: "chw" | "nchw"; pil: the mode
    device: Any = None
    alpha: torch.Tensor | None = None  # (1, 1, H, W) float32 for RGBA inputs
    scale_max: float = 1.0  # 255 for 8-bit, 65535 for 16-bit integer inputs


def _check_float_range(x: torch.Tensor, what: str) -> None:
    # one device->host read (a GPU sync) for all three facts
    finite, lo, hi = torch.stack([torch.isfinite(x).all().to(x.dtype), x.min(), x.max()]).tolist()
    if not finite:
        raise ValueError(f"{what} contains NaN or inf")
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{what}: float values must lie in [0, 1], got min {lo:.4g}, max {hi:.4g}")


def _split_channels(x: torch.Tensor, meta: ImageMeta) -> torch.Tensor:
    """x (1, C, H, W) float32 -> (1, 3, H, W), keeping alpha aside."""
    c = x.shape[1]
    if c == 1:
        return x.expand(1, 3, *x.shape[2:]).contiguous()
    if c == 3:
        return x
    if c == 4:
        meta.alpha = x[:, 3:4].contiguous()
        return x[:, :3].contiguous()
    if c == 2:  # grey + alpha (LA)
        meta.alpha = x[:, 1:2].contiguous()
        return x[:, :1].expand(1, 3, *x.shape[2:]).contiguous()
    raise ValueError(f"image must have 1, 3 or 4 channels, got {c}")


def to_internal(image, device: torch.device | str = "cpu") -> tuple[list[torch.Tensor], ImageMeta]:
    """Validate ``image`` and return ``([x (1, 3, H, W) float32 in [0, 1]] per image, meta)``.

    Raises ``TypeError`` for unsupported kinds/dtypes and ``ValueError`` for bad shapes,
    NaN/inf or out-of-range floats.
    """
    device = torch.device(device)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return _pil_to_internal(image, device)
    if isinstance(image, np.ndarray):
        given_dtype = image.dtype  # returned as given (byte order included)
        if image.dtype.byteorder not in ("=", "|"):
            # non-native byte order (e.g. from a FITS/TIFF reader): same values, native order
            image = image.astype(image.dtype.newbyteorder("="))
        if image.ndim in (2, 3) and 0 in image.shape[:2]:
            raise ValueError(f"image is empty: shape {image.shape}")
        if image.dtype == np.uint8:
            t, smax = torch.from_numpy(np.array(image, copy=True, order="C")).float() / 255.0, 255.0
        elif image.dtype == np.uint16:
            t, smax = torch.from_numpy(np.array(image, dtype=np.float32, order="C")) / 65535.0, 65535.0
        elif image.dtype in (np.float16, np.float32, np.float64):
            t, smax = torch.from_numpy(np.array(image, dtype=np.float32, order="C")), 1.0
            _check_float_range(t, "image")
        else:
            raise TypeError(f"numpy image dtype must be uint8, uint16 or float, got {image.dtype}")
        if image.ndim == 2:
            layout, t = "hw", t[None, None]
        elif image.ndim == 3:
            if image.shape[2] not in (1, 2, 3, 4):
                raise ValueError(f"numpy image must be (H, W) or (H, W, C) with C in 1..4, got shape {image.shape}")
            layout, t = "hwc", t.permute(2, 0, 1)[None]
        else:
            raise ValueError(f"numpy image must be (H, W) or (H, W, C), got shape {image.shape}")
        meta = ImageMeta("numpy", given_dtype, t.shape[1], layout, scale_max=smax)
        return [_split_channels(t.to(device).contiguous(), meta)], meta
    if isinstance(image, torch.Tensor):
        if image.dim() == 3:
            layout, t = "chw", image[None]
        elif image.dim() == 4:
            layout, t = "nchw", image
        else:
            raise ValueError(f"torch image must be (C, H, W) or (N, C, H, W), got shape {tuple(image.shape)}")
        if t.shape[1] not in (1, 3, 4):
            raise ValueError(f"torch image must have 1, 3 or 4 channels (dim 1 of NCHW), got shape {tuple(image.shape)}")
        if t.shape[0] == 0:
            raise ValueError("torch image batch is empty")
        if t.shape[2] == 0 or t.shape[3] == 0:
            raise ValueError(f"image is empty: shape {tuple(image.shape)}")
        if t.dtype == torch.uint8:
            tf, smax = t.to(device=device, dtype=torch.float32) / 255.0, 255.0
        elif t.is_floating_point():
            tf, smax = t.detach().to(device=device, dtype=torch.float32), 1.0
            _check_float_range(tf, "image")
        else:
            raise TypeError(f"torch image dtype must be float or uint8, got {t.dtype}")
        meta = ImageMeta("torch", image.dtype, t.shape[1], layout, device=image.device, scale_max=smax)
        xs = []
        alphas = []
        for i in range(tf.shape[0]):
            xs.append(_split_channels(tf[i : i + 1].contiguous(), meta))
            alphas.append(meta.alpha)
        meta.alpha = torch.cat(alphas) if alphas[0] is not None else None
        return xs, meta
    raise TypeError(
        f"image must be a numpy array, PIL.Image or torch tensor, got {type(image).__module__}.{type(image).__name__}"
    )


#: PIL modes converted before processing (-> the mode the result comes back in)
_PIL_CONVERT = {"P": None, "PA": "RGBA", "La": "LA", "RGBa": "RGBA", "1": "L"}
_PIL_DIRECT = ("L", "LA", "RGB", "RGBA")
_PIL_16 = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _pil_to_internal(img, device):
    from PIL import ImageOps

    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception as e:  # a malformed EXIF block in an in-memory image
        raise ValueError(f"cannot apply the EXIF orientation of the image: {e}") from e
    if 0 in img.size:
        raise ValueError(f"image is empty: PIL size {img.size}")
    mode = img.mode
    if mode in _PIL_16:
        arr = np.asarray(img).astype(np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 65535:
            raise ValueError(f"PIL mode {mode} image values must lie in 0..65535 (16-bit), got {lo:g}..{hi:g}")
        meta = ImageMeta("pil", np.uint16, 1, mode, scale_max=65535.0)
        t = torch.from_numpy(arr / 65535.0)[None, None].to(device)
        return [_split_channels(t, meta)], meta
    if mode == "F":
        t = torch.from_numpy(np.asarray(img, dtype=np.float32).copy())[None, None]
        _check_float_range(t, "image")
        meta = ImageMeta("pil", np.float32, 1, mode)
        return [_split_channels(t.to(device), meta)], meta
    if mode not in _PIL_DIRECT:
        target = _PIL_CONVERT.get(mode, "RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ... -> RGB
        if mode == "P":  # palette: RGBA if it has a transparent index or an alpha palette
            target = "RGBA" if ("transparency" in img.info or getattr(img.palette, "mode", "") == "RGBA") else "RGB"
        try:
            img = img.convert(target)
        except (ValueError, OSError) as e:
            raise ValueError(f"PIL image mode {mode!r} is not supported: {e}") from e
    arr = np.asarray(img)
    meta = ImageMeta("pil", np.uint8, 0, img.mode, scale_max=255.0)
    t = torch.from_numpy(arr.astype(np.float32) / 255.0)
    t = t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]
    meta.channels = t.shape[1]
    return [_split_channels(t.to(device).contiguous(), meta)], meta


def _resize_alpha(alpha: torch.Tensor, hw) -> torch.Tensor:
    return imresize(alpha, output_shape=hw).clamp_(0, 1)


def from_internal(ys: list[torch.Tensor], meta: ImageMeta):
    """Inverse of :func:`to_internal` for the outputs ``ys`` ((1, 3, H', W') each)."""
    # one image (the usual case): one clamped copy, no concatenation copy (a 4096^2 -> 8192^2
    # result is 0.8 GB per float32 copy; bench_large's peak was set here)
    y = ys[0].clamp(0, 1) if len(ys) == 1 else torch.cat([t.clamp(0, 1) for t in ys])  # (N, 3, H, W)
    hw = y.shape[-2:]
    if meta.channels in (1, 2):
        y = y.mean(dim=1, keepdim=True)
    if meta.alpha is not None:
        y = torch.cat([y, _resize_alpha(meta.alpha.to(y.device), hw)], dim=1)
    if meta.kind == "torch":
        out = y if meta.layout == "nchw" else y[0]
        if meta.dtype == torch.uint8:
            out = torch.floor(out * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8)
        else:
            out = out.to(meta.dtype)
        return out.to(meta.device)
    arr = y[0].permute(1, 2, 0).detach().cpu().numpy()  # (H, W, C) float32
    if meta.kind == "numpy":
        if meta.layout == "hw":
            arr = arr[..., 0]
        return _quantize(arr, meta.dtype, meta.scale_max)
    # PIL
    from PIL import Image

    if meta.layout in _PIL_16:
        a16 = _quantize(arr[..., 0], np.uint16, 65535.0)
        return Image.fromarray(a16.astype(np.int32)).convert("I") if meta.layout == "I" else Image.fromarray(a16)
    if meta.layout == "F":
        return Image.fromarray(arr[..., 0].astype(np.float32), mode="F")
    a8 = _quantize(arr if arr.shape[2] > 1 else arr[..., 0], np.uint8, 255.0)
    return Image.fromarray(a8)


def _quantize(arr: np.ndarray, dtype, smax: float) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return arr.astype(dtype)
    # in place on one float32 temporary (np.clip/floor/+ would each allocate another)
    a = np.clip(arr, 0, 1)
    a *= smax
    a += 0.5
    np.floor(a, out=a)
    return a.astype(dtype)


# ----------------------------------------------------------------------------- files
_PIL_LIMIT_LOCK = threading.Lock()


def load_image(path) -> "Any":
    """Open an image file as a ``PIL.Image`` (fully decoded, EXIF orientation applied).

    The format is read from the file's content, not its extension (a PNG named ``.jpg``
    loads).  Raises ``ValueError`` naming the file for: a missing path or a folder, an
    empty file, a file that no decoder reads (corrupt, truncated, random bytes, not an
    image), and a decompression bomb (a header claiming more than
    :data:`MAX_IMAGE_PIXELS` pixels: refused before any pixel memory is allocated).
    """
    from PIL import Image, ImageOps

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image file not found: {path}" if not path.exists() else f"not a file: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"image file is empty: {path}")
    try:
        # Image.open reads only the header.  Pillow's own bomb check (an error only above
        # 2x Image.MAX_IMAGE_PIXELS, a warning above 1x) is a process-wide setting: it is
        # lifted under a lock for the open only, and our limit checked here, before load().
        with _PIL_LIMIT_LOCK:
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = old
        with im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise _Bomb(f"image file {path} claims {w}x{h} pixels, more than the limit "
                            f"of {MAX_IMAGE_PIXELS} (io.MAX_IMAGE_PIXELS): refused as a decompression bomb")
            im.load()
            return (ImageOps.exif_transpose(im) or im).copy()
    except _Bomb as e:
        raise ValueError(str(e)) from None
    except MemoryError as e:
        raise ValueError(f"image file {path} is too large to decode in memory") from e
    except Exception as e:  # any decoder failure (OSError, SyntaxError, struct.error, ...) is a bad file
        raise ValueError(f"cannot read image file {path}: {type(e).__name__}: {e}") from e


class _Bomb(Exception):
    pass


def load_hr_image(path, scale: int) -> np.ndarray:
    """A ground-truth image: :func:`load_image` as RGB, cropped (bottom and right) to a
    multiple of ``scale`` so that it matches an ``x scale`` upscale; ``(H, W, 3) uint8``,
    contiguous."""
    hr = np.asarray(load_image(path).convert("RGB"))
    return np.ascontiguousarray(hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale])


def write_atomic(path, write) -> None:
    """``write(f)`` into a temp file (binary) in ``path``'s folder, then renamed over ``path``:
    ``path`` is either untouched or complete; a failed write leaves no temp file.  The folder
    must exist (``ValueError`` naming it)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"output folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


#: output extension -> PIL format
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


def check_output_path(path, *, force: bool = False, protect=()) -> Path:
    """The checks of :func:`save_image`, without writing (the CLI runs them before the
    computation, so a bad output path fails in milliseconds, not after the upscale)."""
    path = Path(path)
    for p in protect:
        if p is not None and path.exists() and Path(p).exists() and os.path.samefile(path, p):
            raise ValueError(f"refusing to overwrite the input file {p}")
    if path.is_dir():
        raise ValueError(f"output {path} is a folder")
    if path.exists() and not force:
        raise ValueError(f"output {path} exists (use --force to overwrite)")
    if not path.parent.is_dir():
        raise ValueError(f"output folder {path.parent} does not exist")
    if path.suffix.lower() not in SAVE_FORMATS:
        raise ValueError(f"output {path}: unknown image extension {path.suffix!r} (png, jpg, bmp, tif)")
    return path


def save_image(img, path, *, force: bool = False, protect=()) -> None:
    """Save a ``PIL.Image`` atomically: written to a temp file in the same folder, then
    renamed over ``path`` (``os.replace``), so ``path`` is either untouched or complete.

    Refuses (``ValueError``) to overwrite an existing file unless ``force``, to overwrite
    any path in ``protect`` (the inputs; compared by ``os.path.samefile``, so links
    count) even with ``force``, to write over a folder, into a missing folder, with an
    unknown extension, or a mode the format cannot hold (RGBA as JPEG...).  A failed write
    leaves no temp file behind.
    """
    path = check_output_path(path, force=force, protect=protect)
    fmt = SAVE_FORMATS[path.suffix.lower()]
    # a unique name per call (threads of one process may write side by side); O_EXCL never
    # opens an existing file, and mode 0o666 lets the umask set the permissions as open() would
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise ValueError(f"cannot write to the folder {path.parent}: {e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                img.save(f, format=fmt)
            except (OSError, ValueError, KeyError, TypeError) as e:
                if isinstance(e, OSError) and e.errno is not None:  # disk full, I/O error: not the image's fault
                    raise
                raise ValueError(f"cannot write a mode {img.mode} image as {fmt} ({path}): {e}") from e
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_kernel(kernel) -> np.ndarray | None:
    """A kernel given as array, tensor, or path to ``.mat`` (key ``kernel``) / ``.npy`` ->
    ``(kh, kw) float64`` normalised to sum 1 (``None`` stays ``None``: bicubic)."""
    if kernel is None:
        return None
    if isinstance(kernel, (str, os.PathLike)):
        p = Path(kernel)
        if not p.is_file():
            raise ValueError(f"kernel file not found: {p}")
        if p.suffix.lower() == ".mat":
            import scipy.io

            try:
                m = scipy.io.loadmat(str(p))
            except Exception as e:
                raise ValueError(f"cannot read kernel file {p} as .mat: {e}") from e
            if "kernel" not in m:
                keys = [k for k in m if not k.startswith("__")]
                raise ValueError(f"kernel file {p} has no key 'kernel' (keys: {keys})")
            kernel = m["kernel"]
        elif p.suffix.lower() == ".npy":
            try:
                kernel = np.load(p, allow_pickle=False)
            except Exception as e:
                raise ValueError(f"cannot read kernel file {p} as .npy: {e}") from e
        else:
            raise ValueError(f"kernel file {p}: expected .mat (key 'kernel') or .npy")
    elif not isinstance(kernel, (np.ndarray, torch.Tensor, list, tuple)):
        raise TypeError(f"kernel must be an array, tensor or path, got {type(kernel).__name__}")
    return check_kernel(kernel)
