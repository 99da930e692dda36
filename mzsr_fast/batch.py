"""Many files in, many files out: :func:`upscale_files` (what ``mzsr-fast upscale`` runs).

    results = mzsr_fast.upscale_files(["photos/"], "out/", steps=10, skip_existing=True)
    [r for r in results if r.status == "failed"]     # FileResult(path, output, status, reason, ...)

Inputs are files, folders (their files, not recursive, sorted by name) or glob patterns.
Each image gets its own kernel when a kernel file of the same stem sits beside it
(``img.png`` + ``img.npy``, ``img_kernel.npy``, ``img.mat`` or ``img_kernel.mat``), else the
``kernel`` argument.  One bad file (corrupt, not an image, an existing output without
``force``...) is a ``"failed"`` result with a one-line reason; the others are still written,
each atomically (:func:`mzsr_fast.io.save_image`: an output is complete or absent).
"""
from __future__ import annotations

import dataclasses
import glob as _glob
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .progress import ProgressArg, check_progress, make_progress

__all__ = ["FileResult", "upscale_files", "expand_inputs", "kernel_beside", "KERNEL_SUFFIXES"]

#: kernel files looked for beside ``<stem>.<image ext>``, in this order (at most one may exist)
KERNEL_SUFFIXES = (".npy", "_kernel.npy", ".mat", "_kernel.mat")
_KERNEL_EXTS = (".npy", ".mat")
_GLOB_CHARS = set("*?[")


@dataclasses.dataclass
class FileResult:
    """The outcome of one input file.

    status: ``"done"`` (``output`` written), ``"skipped"`` (``output`` existed and
    ``skip_existing``) or ``"failed"`` (``reason`` says why in one line; nothing written).
    seconds: wall time spent on this file.  kernel: the kernel file used (beside the image,
    or the ``kernel`` argument when it is a path), ``None`` for bicubic or an array.
    psnr / ssim (and bicubic_psnr / bicubic_ssim): Y-channel metrics against the ground
    truth when ``hr`` was given and has one for this image, else ``None``.
    """

    path: Path
    output: Path | None
    status: str
    reason: str = ""
    seconds: float = 0.0
    kernel: Path | None = None
    size: tuple[int, int] | None = None  # input (width, height)
    out_size: tuple[int, int] | None = None
    psnr: float | None = None
    ssim: float | None = None
    bicubic_psnr: float | None = None
    bicubic_ssim: float | None = None
    info: dict | None = dataclasses.field(default=None, repr=False)  # adapt_and_upscale's info
    exception: BaseException | None = dataclasses.field(default=None, repr=False)


def _has_glob(s: str) -> bool:
    return any(c in _GLOB_CHARS for c in s)


def _folder_files(d: Path) -> list[Path]:
    """The candidate images of a folder: every visible regular file except kernel files
    (a text file is listed and then fails as 'cannot read image file', as asked)."""
    return sorted(p for p in d.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in _KERNEL_EXTS)


def expand_inputs(inputs) -> list[tuple[Path, str | None]]:
    """``inputs`` (a path/pattern or a sequence of them) -> ``[(path, problem or None)]``.

    A folder gives its files; a pattern (``*``, ``?``, ``[``) that is not an existing path
    gives its sorted matches; anything else is taken as a file (a missing one fails later
    with 'image file not found').  A pattern matching nothing is one entry with its
    problem.  Duplicates (the same file twice) are dropped.
    """
    return [(p, prob) for p, prob, _ in _expand(inputs)]


def _expand(inputs) -> list[tuple[Path, str | None, bool]]:
    """:func:`expand_inputs` with a third field: whether the file was named itself (not
    found in a folder or by a pattern)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out, seen = [], set()

    def add(p: Path, problem=None, named=False):
        key = os.path.realpath(p) if problem is None else ("?", str(p))
        if key not in seen:
            seen.add(key)
            out.append((p, problem, named))

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in _folder_files(p):
                add(f)
        elif not p.exists() and _has_glob(str(item)):
            matches = sorted(Path(m) for m in _glob.glob(str(item)))
            files = [m for m in matches if m.is_file() and m.suffix.lower() not in _KERNEL_EXTS]
            if not files:
                add(p, f"no file matches {item}")
            for f in files:
                add(f)
        else:
            add(p, named=True)
    return out


def kernel_beside(image: Path) -> Path | None:
    """The kernel file of ``image`` (same folder and stem, one of :data:`KERNEL_SUFFIXES`),
    or ``None``.  More than one is a ``ValueError`` (which one is meant is not guessed)."""
    image = Path(image)
    found = [image.with_name(image.stem + s) for s in KERNEL_SUFFIXES]
    found = [f for f in found if f.is_file()]
    if len(found) > 1:
        raise ValueError(f"{len(found)} kernel files beside {image.name}: {', '.join(f.name for f in found)} "
                         f"(keep one)")
    return found[0] if found else None


def _hr_for(image: Path, hr) -> Path | None:
    """The ground truth of ``image``: ``hr`` itself (a file), or in folder ``hr`` the file of
    the same name, else of the same stem with any extension; ``None`` if there is none."""
    if hr is None:
        return None
    hr = Path(hr)
    if hr.is_file():
        return hr
    if not hr.is_dir():
        raise ValueError(f"--hr {hr}: image file not found")
    same = hr / image.name
    if same.is_file():
        return same
    for f in sorted(hr.glob(_glob.escape(image.stem) + ".*")):
        if f.is_file() and f.suffix.lower() not in _KERNEL_EXTS:
            return f
    return None


def _check_ext(ext) -> str | None:
    from .io import SAVE_FORMATS

    if ext is None:
        return None
    e = str(ext).lower()
    e = e if e.startswith(".") else "." + e
    if e not in SAVE_FORMATS:
        raise ValueError(f"ext {ext!r}: unknown image extension (png, jpg, bmp, tif)")
    return e


def _kernel_file(k) -> Path | None:
    """``k`` as a file path, or ``None`` for arrays, ``None`` and ``"estimate"`` (the API's
    blind estimate from each image)."""
    if isinstance(k, (str, os.PathLike)) and str(k) != "estimate":
        return Path(k)
    return None


def _output_name(image: Path, suffix: str, ext: str | None) -> str:
    from .io import SAVE_FORMATS

    e = ext or (image.suffix.lower() if image.suffix.lower() in SAVE_FORMATS else ".png")
    return f"{image.stem}{suffix}{e}"


def upscale_one(path, output, *, scale: int = 2, kernel=None, hr=None, force: bool = False,
                skip_existing: bool = False, progress: ProgressArg = None, **options) -> FileResult:
    """Upscale one image file into ``output`` (a file path).  Raises on any problem
    (``ValueError`` naming it, ``OSError``...); :func:`upscale_files` turns those into
    ``"failed"`` results.  Every check (output path, inputs, ground-truth size) runs before
    the computation; the write is atomic.  ``kernel`` is used unless a kernel file sits
    beside the image (:func:`kernel_beside`).  ``progress`` (bars over the tiles of a large
    image) and ``options`` go to ``adapt_and_upscale``."""
    import numpy as np

    import mzsr_fast

    from . import io as mio

    t0 = time.perf_counter()
    path, output = Path(path), Path(output)
    own = kernel_beside(path) if path.is_file() else None
    k = own if own is not None else kernel
    hr_path = _hr_for(path, hr)
    res = FileResult(path, output, "done", kernel=_kernel_file(k))
    protect = tuple(p for p in (path, hr_path, _kernel_file(k)) if p is not None)
    if skip_existing and output.exists() and not output.is_dir():
        mio.check_output_path(output, force=True, protect=protect)  # still never "skips" onto an input
        res.status, res.reason = "skipped", f"{output} exists"
        res.seconds = time.perf_counter() - t0
        return res
    mio.check_output_path(output, force=force, protect=protect)
    img = mio.load_image(path)
    res.size = img.size
    hr_arr = None
    if hr_path is not None:
        hr_arr = mio.load_hr_image(hr_path, scale)
        want = (img.size[1] * scale, img.size[0] * scale)
        if hr_arr.shape[:2] != want:
            raise ValueError(f"--hr {hr_path} is {hr_arr.shape[0]}x{hr_arr.shape[1]} (cropped to a multiple of "
                             f"{scale}), the result will be {want[0]}x{want[1]}")
    sr, info = mzsr_fast.adapt_and_upscale(img, scale=scale, kernel=k, return_info=True, progress=progress,
                                           **options)
    mio.save_image(sr, output, force=force, protect=protect)
    res.out_size, res.info = sr.size, info
    if hr_arr is not None:
        from . import metrics
        from .degradation import imresize

        srr = np.asarray(sr.convert("RGB"))
        bic = imresize(np.asarray(img.convert("RGB")), scale)
        res.psnr, res.ssim = metrics.psnr_y(srr, hr_arr, scale), metrics.ssim_y(srr, hr_arr, scale)
        res.bicubic_psnr, res.bicubic_ssim = metrics.psnr_y(bic, hr_arr, scale), metrics.ssim_y(bic, hr_arr, scale)
    res.seconds = time.perf_counter() - t0
    return res


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def upscale_files(
    inputs,
    out_dir,
    *,
    scale: int = 2,
    kernel=None,
    hr=None,
    suffix: str = "",
    ext: str | None = None,
    skip_existing: bool = False,
    force: bool = False,
    progress: ProgressArg = None,
    on_result: Callable[[FileResult], Any] | None = None,
    **options,
) -> list[FileResult]:
    """Adapt to and upscale every image of ``inputs``, writing into the folder ``out_dir``.

    Args:
        inputs: a path, folder or glob pattern, or a sequence of them (see :func:`expand_inputs`).
        out_dir: the output folder (created with its parents).  Output names are
            ``<stem><suffix><ext>``.
        scale, kernel: as :func:`mzsr_fast.adapt_and_upscale` (``kernel="estimate"``: a
            blind estimate per image); a kernel file beside an image (``img.npy``,
            ``img_kernel.npy``, ``img.mat``, ``img_kernel.mat``) takes precedence over
            ``kernel`` for that image.
        hr: ground truth: a folder with files of the same names (or stems), or one file
            when there is one input; fills ``psnr``/``ssim`` of the results.
        suffix: added to each output's stem (default none: same name in another folder).
        ext: output extension (``"png"``, ``".jpg"``...); default: the input's (PNG if it
            is not one we write).
        skip_existing: an existing output is left alone (``"skipped"``); else it is a
            failure unless ``force`` (overwrite; inputs are never overwritten).
        progress: the folder loop's bar (:mod:`mzsr_fast.progress`: ``None`` = a bar only
            on a terminal, ``False``, ``True`` or ``callback(done, total, desc)``).
        on_result: called with each :class:`FileResult` as soon as it is known (the CLI
            prints from it).
        options: the other keywords of :func:`mzsr_fast.adapt_and_upscale` (``steps``,
            ``weights``, ``backend``, ``device``, ``precision``, ``max_memory``...).

    Returns one :class:`FileResult` per input file, in input order.  Raises
    ``ValueError`` before any work for: no input files, ``out_dir`` being a file, an
    unknown ``ext``, a bad ``suffix``, an output that would be its own input, an unreadable
    ``kernel``, an ``hr`` that is neither a file nor a folder.  Per-file problems are
    ``"failed"`` results instead.
    """
    from . import io as mio

    for bad in ("image", "return_info"):
        if bad in options:
            raise TypeError(f"upscale_files() got an unexpected keyword argument {bad!r}")
    check_progress(progress)
    ext = _check_ext(ext)
    suffix = "" if suffix is None else str(suffix)
    if os.sep in suffix or (os.altsep and os.altsep in suffix):
        raise ValueError(f"suffix {suffix!r} must not contain a path separator")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output {out_dir} is a file; with several inputs the output is a folder")
    if hr is not None and not Path(hr).exists():
        raise ValueError(f"--hr {hr} not found")
    if kernel is not None and not (isinstance(kernel, str) and kernel == "estimate"):
        mio.load_kernel(kernel)  # a bad --kernel is one error now, not one failure per file
    entries = _expand(inputs)
    if not entries:
        given = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
        raise ValueError(f"no input files in {', '.join(map(str, given))}")
    if hr is not None and Path(hr).is_file() and len(entries) > 1:
        raise ValueError(f"--hr {hr} is one file but there are {len(entries)} inputs (give a folder)")

    # plan every output first.  An output that is its own input: refused (a ValueError, the
    # user's folder choice).  A file found in a folder or by a pattern that is the output of
    # another input: an earlier run's result (suffix into the input folder), not an input.
    # An output that is a file named as an input: that writer fails, the input is kept.
    # Two inputs with the same output: the second fails.
    outputs = {}
    for p, prob, _ in entries:
        if prob is None:
            o = out_dir / _output_name(p, suffix, ext)
            if os.path.realpath(o) == os.path.realpath(p):
                raise ValueError(f"output {o} would overwrite its input: give another output folder or a --suffix")
            outputs.setdefault(os.path.realpath(o), p)
    named = {os.path.realpath(p) for p, prob, is_named in entries if prob is None and is_named}
    jobs: list[tuple[Path, Path | None, str | None]] = []
    taken: dict[str, Path] = {}
    for p, prob, is_named in entries:
        if prob is not None:
            jobs.append((p, None, prob))
            continue
        rp = os.path.realpath(p)
        if not is_named and outputs.get(rp, p) != p:
            continue  # an earlier run's output of another input
        o = out_dir / _output_name(p, suffix, ext)
        ro = os.path.realpath(o)
        if ro in named:
            jobs.append((p, o, f"its output {o} is also an input of this run"))
        elif ro in taken:
            jobs.append((p, o, f"same output {o.name} as {taken[ro]}"))
        else:
            taken[ro] = p
            jobs.append((p, o, None))
    out_dir.mkdir(parents=True, exist_ok=True)

    results: list[FileResult] = []
    # inner bars (tiles of a large image): off with the loop's, else on a terminal only;
    # a callback gets them too (told apart by their desc)
    inner = False if progress is False else (None if progress is True else progress)
    with make_progress(len(jobs), "upscale", progress, unit="img", leave=False) as bar:
        for p, o, prob in jobs:
            bar.set_postfix_str(p.name)
            t0 = time.perf_counter()
            if prob is not None:
                r = FileResult(p, o, "failed", prob)
            else:
                try:
                    r = upscale_one(p, o, scale=scale, kernel=kernel, hr=hr, force=force,
                                    skip_existing=skip_existing, progress=inner, **options)
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # one file's problem, reported, the others go on
                    r = FileResult(p, o, "failed", _one_line(e), exception=e)
            r.seconds = time.perf_counter() - t0
            results.append(r)
            if on_result is not None:
                on_result(r)
            bar.update(1)
    return results


def summarize(results: Iterable[FileResult], seconds: float | None = None) -> str:
    """``'3 done, 0 skipped, 2 failed of 5 files in 4.1 s'``."""
    results = list(results)
    n = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    t = sum(r.seconds for r in results) if seconds is None else seconds
    return (f"{n['done']} done, {n['skipped']} skipped, {n['failed']} failed of {len(results)} "
            f"file{'s' if len(results) != 1 else ''} in {t:.1f} s")
