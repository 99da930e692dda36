"""The ``mzsr-fast`` command line.

    mzsr-fast upscale IN OUT [--kernel F] [--scale 2] [--steps 10] [--subsampling direct]
                             [--backend auto] [--device D] [--precision fp32] [--weights W]
                             [--hr GT] [--force] [--max-memory 4GiB] [--adapt-on full|crops] [-q]
    mzsr-fast upscale IN... -o OUT_DIR [--suffix S] [--ext png] [--skip-existing] [...]
                             (files, folders, globs; see :func:`mzsr_fast.batch.upscale_files`)
    mzsr-fast eval --hr-dir D --setting g^d_2.0 [--steps 1,10] [--json OUT]
    mzsr-fast info
    mzsr-fast zssr ...            (vanilla ZSSR baseline)
    mzsr-fast pretrain ... / meta-train ...   (training)

Errors are one line on stderr and a non-zero exit code (2 for bad input, 1 for an OS or
internal error; see :func:`main`).  ``upscale`` never overwrites its input, refuses an
existing output without ``--force`` and writes atomically (:func:`mzsr_fast.io.save_image`).
With several inputs, a bad file is one line on stderr and is skipped, the others are
written, a summary line ends the run, and the exit code is non-zero if any file failed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from .batch import _one_line


def _common_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=int, default=2, help="upscaling factor (default 2)")
    p.add_argument("--backend", default="auto", help="auto | reference | cpu | triton | cuda")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument("--precision", default="fp32", help="fp32 | tf32 | bf16 (where the backend has it)")
    p.add_argument("--weights", default=None, help="safetensors weights (default: the shipped ones)")
    p.add_argument("--lr-search", action="store_true",
                   help="pick the first step's lr (schedule's or half) by the image's own training loss")


def _emit(line: str, err: bool = False) -> None:
    """One line to stdout (or stderr) without tearing a progress bar on the terminal."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr if err else sys.stdout)


def _is_single(inputs: list[str], output: str) -> bool:
    """One input file (not a folder, not a pattern) and an output not written as a folder."""
    from .batch import _has_glob

    if len(inputs) != 1 or output.endswith(("/", os.sep)):
        return False
    p = Path(inputs[0])
    return not p.is_dir() and (p.exists() or not _has_glob(inputs[0]))


def _cmd_upscale(a) -> int:
    from . import batch
    from . import io as mio

    inputs, out = list(a.inputs), a.output
    if out is None:  # the two-argument form IN OUT
        if len(inputs) != 2:
            raise ValueError("no output: give -o FILE (one input file) or -o FOLDER, or the two-argument form IN OUT")
        inputs, out = inputs[:1], inputs[1]
    progress = False if a.quiet else None
    options = dict(steps=a.steps, subsampling=a.subsampling, weights=a.weights, backend=a.backend, device=a.device,
                   precision=a.precision, max_memory=a.max_memory, adapt_on=a.adapt_on, lr_search=a.lr_search,
                   quality=a.quality, ensemble=a.ensemble, back_projection=a.back_projection)
    if a.save_kernel and not _is_single(inputs, out):
        raise ValueError("--save-kernel takes one input file (the kernel of that image)")
    if a.save_kernel and not str(a.save_kernel).endswith(".npy"):
        raise ValueError(f"--save-kernel writes a .npy file, got {a.save_kernel!r}")
    if _is_single(inputs, out):
        # one file: any problem is the command's error (one line, exit 2 or 1; see main)
        if a.suffix or a.ext:
            raise ValueError("--suffix and --ext name the files of an output folder; -o here is a file")
        if a.save_kernel and Path(a.save_kernel).exists() and not a.force:
            raise ValueError(f"--save-kernel {a.save_kernel} exists (--force overwrites it)")
        r = batch.upscale_one(inputs[0], out, scale=a.scale, kernel=a.kernel, hr=a.hr, force=a.force,
                              skip_existing=a.skip_existing, progress=progress, **options)
        if r.status == "skipped":
            print(f"skipped {r.path}: {r.reason} (--skip-existing)")
            return 0
        _print_done(r, a.scale, detail=True)
        print(f"wrote {r.output}")
        if a.save_kernel:
            k = (r.info or {}).get("kernel")
            if k is None:
                raise ValueError("--save-kernel: this call used no kernel (bicubic degradation)")
            mio.write_atomic(a.save_kernel, lambda f: np.save(f, np.asarray(k, dtype=np.float64)))
            print(f"wrote the kernel to {a.save_kernel}")
        return 0

    def report(r) -> None:
        if r.status == "done":
            _print_done(r, a.scale, detail=False)
        elif r.status == "skipped":
            _emit(f"skipped {r.path}: {r.reason} (--skip-existing)")
        else:
            _emit(f"mzsr-fast upscale: failed {r.path}: {r.reason}", err=True)

    t0 = time.perf_counter()
    results = batch.upscale_files(inputs, out, scale=a.scale, kernel=a.kernel, hr=a.hr, suffix=a.suffix, ext=a.ext,
                                  skip_existing=a.skip_existing, force=a.force, progress=progress, on_result=report,
                                  **options)
    print(f"upscale: {batch.summarize(results, time.perf_counter() - t0)}; outputs in {out}")
    failed = [r for r in results if r.status == "failed"]
    if not failed:
        return 0
    # 2 when every failure is a bad input (as for one file), 1 when one was an OS or internal error
    bad_input = (ValueError, TypeError, FileNotFoundError)
    return 2 if all(r.exception is None or isinstance(r.exception, bad_input) for r in failed) else 1


def _print_done(r, scale: int, detail: bool) -> None:
    info = r.info or {}
    t = info.get("times", {})
    steps = len(info.get("lr_schedule", ()))  # what ran: --steps, or the --quality preset's
    line = f"{r.path if not detail else r.path.name}"
    line += f" -> {r.output}" if not detail else ""
    line += f": {r.size[0]}x{r.size[1]} -> {r.out_size[0]}x{r.out_size[1]} in {r.seconds:.3f} s"
    if detail:
        phases = ", ".join(f"{k} {t[k]:.3f} s" for k in ("adapt", "upscale", "refine") if k in t)
        line += (f" ({phases}, {steps} steps) backend {info.get('backend_detail', info.get('backend'))}, "
                 f"weights {info.get('weights')}")
    if r.kernel is not None:
        line += f", kernel {r.kernel.name}"
    elif info.get("kernel_estimate"):  # kernel="estimate": the Gaussian found for this image
        e = info["kernel_estimate"]
        shape = (f"variance {e['var1']:.2f}" if abs(e["var1"] - e["var2"]) < 1e-3 * e["var1"] else
                 f"variances {e['var1']:.2f}, {e['var2']:.2f} at {e['theta']:.2f} rad")
        line += f", kernel estimated (Gaussian {shape})"
    if r.psnr is not None and detail:
        line += (f"\nPSNR/SSIM (Y, shave {scale}): MZSR({steps}) {r.psnr:.2f} dB / "
                 f"{r.ssim:.4f}   bicubic {r.bicubic_psnr:.2f} dB / {r.bicubic_ssim:.4f}")
    elif r.psnr is not None:
        line += f", PSNR {r.psnr:.2f} dB (bicubic {r.bicubic_psnr:.2f})"
    _emit(line)


def _list_images(d: Path) -> list[Path]:
    if not d.is_dir():
        raise ValueError(f"--hr-dir {d} is not a folder")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"))
    if not files:
        raise ValueError(f"no images in {d}")
    return files


def evaluate(hr_dir, setting: str, steps_list, *, scale=2, weights=None, backend="auto", device=None,
             precision="fp32", progress=True, lr_search=False, kernel_mode="true", quality=None, seed=0) -> dict:
    """Degrade each HR per the setting, adapt, and measure (see ``mzsr-fast eval``).

    ``setting``: one of the paper's (SPEC section 2) or ``"random"``: image i gets the i-th of
    :func:`mzsr_fast.kernel_estimate.random_kernels` (anisotropic Gaussians, seeded by
    ``seed``), direct subsampling.  ``kernel_mode``: what the adaptation is told, ``"true"``
    (the degradation's kernel), ``"estimate"`` (``kernel="estimate"``: blind) or ``"none"``
    (bicubic assumption).  ``quality``: an ``adapt_and_upscale`` preset, with each ``k`` of
    ``steps_list`` as its steps.

    Returns ``{"rows": [{image, bicubic: (psnr, ssim), mzsr{k}: (psnr, ssim, seconds)}], "mean": {...}}``.
    """
    from . import adapt_and_upscale
    from . import io as mio
    from . import metrics
    from .degradation import degrade, imresize
    from .degradation import setting as get_setting

    if kernel_mode not in ("true", "estimate", "none"):
        raise ValueError(f"kernel must be true, estimate or none, got {kernel_mode!r}")
    files = _list_images(Path(hr_dir))
    if setting == "random":
        from .kernel_estimate import random_kernels

        kernels, sub = random_kernels(len(files), seed=seed, scale=scale), "direct"
    else:
        kernel, sub = get_setting(setting)
        kernels = [kernel] * len(files)
    rows = []
    for f, kernel in zip(files, kernels):
        hr = mio.load_hr_image(f, scale)
        lr = degrade(hr, kernel, scale, sub)
        row = {"image": f.name}
        bic = imresize(lr, scale)
        row["bicubic"] = (metrics.psnr_y(bic, hr, scale), metrics.ssim_y(bic, hr, scale))
        for k in steps_list:
            t = time.perf_counter()
            told = {"true": kernel, "estimate": "estimate", "none": None}[kernel_mode]
            sr = adapt_and_upscale(lr, scale=scale, kernel=told, steps=k, subsampling=sub, weights=weights,
                                   backend=backend, device=device, precision=precision, lr_search=lr_search,
                                   quality=quality)
            dt = time.perf_counter() - t
            row[f"mzsr{k}"] = (metrics.psnr_y(sr, hr, scale), metrics.ssim_y(sr, hr, scale), dt)
        rows.append(row)
        if progress:
            print("  " + _fmt_row(row, steps_list), flush=True)
    mean = {"image": "mean"}
    for key in ["bicubic"] + [f"mzsr{k}" for k in steps_list]:
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        mean[key] = tuple(vals.mean(axis=0).tolist())
    return {"setting": setting, "scale": scale, "steps": list(steps_list), "lr_search": bool(lr_search),
            "kernel": kernel_mode, "quality": quality, "seed": seed, "rows": rows, "mean": mean}


def _fmt_row(row, steps_list) -> str:
    s = f"{row['image']:<16} bicubic {row['bicubic'][0]:6.2f}/{row['bicubic'][1]:.4f}"
    for k in steps_list:
        v = row[f"mzsr{k}"]
        s += f"   MZSR({k}) {v[0]:6.2f}/{v[1]:.4f} ({v[2]:.2f} s)"
    return s


def _cmd_eval(a) -> int:
    try:
        steps_list = [int(s) for s in a.steps.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--steps must be a comma list of ints, got {a.steps!r}")
    if not steps_list or any(s < 0 for s in steps_list):
        raise ValueError(f"--steps must be a comma list of ints >= 0, got {a.steps!r}")
    if a.json and not Path(a.json).parent.is_dir():  # fail before the evaluation, not after it
        raise ValueError(f"--json: output folder {Path(a.json).parent} does not exist")
    print(f"eval {a.hr_dir} setting {a.setting} x{a.scale}, steps {steps_list}, kernel {a.kernel}"
          + (f", quality {a.quality}" if a.quality else "") + f" (PSNR/SSIM on Y, shave {a.scale})")
    res = evaluate(a.hr_dir, a.setting, steps_list, scale=a.scale, weights=a.weights, backend=a.backend,
                   device=a.device, precision=a.precision, lr_search=a.lr_search, kernel_mode=a.kernel,
                   quality=a.quality, seed=a.seed)
    print("  " + "-" * 60)
    print("  " + _fmt_row(res["mean"], steps_list))
    if a.json:
        from .machine import machine_info

        res["machine"] = machine_info()
        from . import io as mio

        mio.write_atomic(a.json, lambda f: f.write(json.dumps(res, indent=1).encode()))
        print(f"wrote {a.json}")
    return 0


def _cmd_info(a) -> int:
    import torch

    from . import __version__, _ext, backends
    from .machine import cpu_model as _cpu_model

    print(f"mzsr_fast {__version__}  python {platform.python_version()}  torch {torch.__version__}"
          f"  numpy {np.__version__}")
    try:
        import triton

        print(f"triton {triton.__version__}")
    except ImportError:
        print("triton: not installed")
    _ext.load()
    print(f"extension: {_ext.status}")
    devs = ["cpu"] + ([f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else [])
    for d in devs:
        name = torch.cuda.get_device_name(d) if d.startswith("cuda") else _cpu_model()
        print(f"device {d}: {name}")
        for b, (ok, why) in backends.available(d).items():
            print(f"  {b:<10} {'yes' if ok else 'no  (' + why + ')'}")
        print(f"  auto -> {backends.resolve('auto', d)[0]}")
    from .model import WEIGHTS_DIR

    print("shipped weights: " + ", ".join(sorted(p.name for p in WEIGHTS_DIR.glob("*.safetensors"))))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``mzsr-fast upscale: error: ...``, exit 2) instead of
    the usage block; ``-h`` still prints the full usage.  Subcommand parsers inherit it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mzsr-fast", description="Meta-transfer zero-shot super-resolution")
    sub = p.add_subparsers(dest="cmd", required=True)

    u = sub.add_parser("upscale", help="adapt to each image and upscale it: a file, several, a folder or a glob")
    u.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (their files) or glob patterns; without -o, exactly two "
                        "arguments IN OUT name the output last")
    u.add_argument("-o", "--output", default=None,
                   help="the output file for one input file, else the output folder (created)")
    u.add_argument("--suffix", default="", help="added to each output name's stem in a folder (default none)")
    u.add_argument("--ext", default=None, help="output format in a folder: png, jpg, bmp, tif (default: the input's)")
    u.add_argument("--skip-existing", action="store_true", help="leave existing outputs alone (reported as skipped)")
    u.add_argument("--kernel", default=None,
                   help=".mat (key 'kernel') or .npy blur kernel, or 'estimate' (a blind estimate from each "
                        "image); none = bicubic. A kernel file beside an image (img.npy, img_kernel.npy, img.mat, "
                        "img_kernel.mat) is used for that image instead")
    u.add_argument("--save-kernel", default=None, metavar="F.npy",
                   help="also write the kernel used (e.g. the --kernel estimate result) as .npy (one input)")
    u.add_argument("--steps", type=int, default=None,
                   help="SGD steps of adaptation per image (default 10, or the --quality preset's)")
    u.add_argument("--quality", default=None, choices=["fast", "balanced", "best"],
                   help="presets: fast (1 step + back-projection), balanced (10 steps + back-projection), "
                        "best (10 steps, 8-frame ensemble, back-projection); explicit options override them")
    u.add_argument("--ensemble", action="store_true", default=None,
                   help="median of the 8 rot90 x mirror frames' upscales (8 upscales instead of 1)")
    u.add_argument("--back-projection", type=int, default=None, metavar="N",
                   help="rounds of back-projection with the image's own degradation after the upscale (0: off)")
    u.add_argument("--subsampling", default="direct", choices=["direct", "bicubic"])
    u.add_argument("--hr", default=None,
                   help="ground truth: print PSNR/SSIM against it (a file; for a folder of inputs, a folder "
                        "of files of the same names)")
    u.add_argument("--force", action="store_true", help="overwrite existing outputs (never an input)")
    u.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    u.add_argument("--max-memory", default=None,
                   help="memory budget, e.g. 4GiB or 2e9 (default: half of the free RAM / GPU memory); "
                        "larger images are processed in exact tiles")
    u.add_argument("--adapt-on", default="full", choices=["full", "crops"],
                   help="adapt on the whole image (default) or on random crops (large images; see docs/api.md)")
    _common_model_args(u)
    u.set_defaults(func=_cmd_upscale)

    e = sub.add_parser("eval", help="degrade HR images per a paper setting, adapt, print PSNR/SSIM")
    e.add_argument("--hr-dir", required=True)
    e.add_argument("--setting", required=True, choices=["g^d_0.2", "g^d_2.0", "g^d_ani", "g^b_1.3", "random"],
                   help="a paper setting, or random: seeded random anisotropic Gaussians, one per image (--seed)")
    e.add_argument("--kernel", default="true", choices=["true", "estimate", "none"],
                   help="what the adaptation is told: the true kernel, a blind estimate, or none (bicubic)")
    e.add_argument("--quality", default=None, choices=["fast", "balanced", "best"],
                   help="an adapt_and_upscale preset (its ensemble and back-projection; --steps still apply)")
    e.add_argument("--seed", type=int, default=0, help="seed of the random setting's kernels [%(default)s]")
    e.add_argument("--steps", default="1,10", help="comma list of step counts (default 1,10)")
    e.add_argument("--json", default=None, help="also write the results as JSON")
    _common_model_args(e)
    e.set_defaults(func=_cmd_eval)

    i = sub.add_parser("info", help="versions, backends, devices")
    i.set_defaults(func=_cmd_info)

    for modname in ("mzsr_fast.zssr", "mzsr_fast.train.cli"):
        try:
            mod = __import__(modname, fromlist=["register"])
        except ImportError:
            continue
        if hasattr(mod, "register"):
            mod.register(sub)
    return p


def main(argv=None) -> int:
    """Run one subcommand; returns the exit code.

    0 success; 2 bad input or option (``ValueError``/``TypeError``: a one-line message
    naming the problem; argparse usage errors also exit 2); 1 an operating-system error
    (disk full, permission denied...) or an unexpected internal error, also one line
    (``MZSR_FAST_TRACEBACK=1`` re-raises it with the traceback); 130 interrupted.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"mzsr-fast {args.cmd}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mzsr-fast {args.cmd}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"mzsr-fast {args.cmd}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line, never a traceback, unless asked for
        if os.environ.get("MZSR_FAST_TRACEBACK") == "1":
            raise
        print(f"mzsr-fast {args.cmd}: internal error: {type(e).__name__}: {_one_line(e)} "
              f"(MZSR_FAST_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
