"""The ``mzsr-fast`` command line.

    mzsr-fast upscale IN OUT [--kernel F] [--scale 2] [--steps 10] [--subsampling direct]
                             [--backend auto] [--device D] [--precision fp32] [--weights W]
                             [--hr GT] [--force] [--max-memory 4GiB] [--adapt-on full|crops]
    mzsr-fast eval --hr-dir D --setting g^d_2.0 [--steps 1,10] [--json OUT]
    mzsr-fast info
    mzsr-fast zssr ...            (vanilla ZSSR baseline)
    mzsr-fast pretrain ... / meta-train ...   (training)

Errors are one line on stderr and a non-zero exit code (2 for bad input, 1 for an OS or
internal error; see :func:`main`).  ``upscale`` never overwrites its input, refuses an
existing output without ``--force`` and writes atomically (:func:`mzsr_fast.io.save_image`).
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


def _common_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=int, default=2, help="upscaling factor (default 2)")
    p.add_argument("--backend", default="auto", help="auto | reference | cpu | triton | cuda")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument("--precision", default="fp32", help="fp32 | tf32 | bf16 (where the backend has it)")
    p.add_argument("--weights", default=None, help="safetensors weights (default: the shipped ones)")
    p.add_argument("--lr-search", action="store_true",
                   help="pick the first step's lr (schedule's or half) by the image's own training loss")


def _cmd_upscale(a) -> int:
    from . import adapt_and_upscale
    from . import io as mio
    from . import metrics

    inp, out = Path(a.input), Path(a.output)
    # every input file is protected (the image, the ground truth, the kernel), and all
    # checks run before the minutes of computation
    protect = tuple(p for p in (inp, a.hr, a.kernel) if p)
    mio.check_output_path(out, force=a.force, protect=protect)
    img = mio.load_image(inp)
    hr = None
    if a.hr:
        hr = np.asarray(mio.load_image(a.hr).convert("RGB"))
        hr = hr[: hr.shape[0] - hr.shape[0] % a.scale, : hr.shape[1] - hr.shape[1] % a.scale]
        want = (img.size[1] * a.scale, img.size[0] * a.scale)
        if hr.shape[:2] != want:
            raise ValueError(f"--hr {a.hr} is {hr.shape[0]}x{hr.shape[1]} (cropped to a multiple of {a.scale}), "
                             f"the result will be {want[0]}x{want[1]}")
    t0 = time.perf_counter()
    sr, info = adapt_and_upscale(
        img,
        scale=a.scale,
        kernel=a.kernel,
        steps=a.steps,
        subsampling=a.subsampling,
        weights=a.weights,
        backend=a.backend,
        device=a.device,
        precision=a.precision,
        max_memory=a.max_memory,
        adapt_on=a.adapt_on,
        lr_search=a.lr_search,
        return_info=True,
    )
    dt = time.perf_counter() - t0
    mio.save_image(sr, out, force=a.force, protect=protect)
    t = info["times"]
    print(
        f"{inp.name}: {img.size[0]}x{img.size[1]} -> {sr.size[0]}x{sr.size[1]} in {dt:.3f} s "
        f"(adapt {t['adapt']:.3f} s, upscale {t['upscale']:.3f} s, {a.steps} steps) "
        f"backend {info['backend_detail']}, weights {info['weights']}"
    )
    if hr is not None:
        srr = np.asarray(sr.convert("RGB"))
        from .degradation import imresize

        lr = np.asarray(img.convert("RGB"))
        bic = imresize(lr, a.scale)
        print(
            f"PSNR/SSIM (Y, shave {a.scale}): MZSR({a.steps}) {metrics.psnr_y(srr, hr, a.scale):.2f} dB / "
            f"{metrics.ssim_y(srr, hr, a.scale):.4f}   bicubic {metrics.psnr_y(bic, hr, a.scale):.2f} dB / "
            f"{metrics.ssim_y(bic, hr, a.scale):.4f}"
        )
    print(f"wrote {out}")
    return 0


def _list_images(d: Path) -> list[Path]:
    if not d.is_dir():
        raise ValueError(f"--hr-dir {d} is not a folder")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"))
    if not files:
        raise ValueError(f"no images in {d}")
    return files


def evaluate(hr_dir, setting: str, steps_list, *, scale=2, weights=None, backend="auto", device=None,
             precision="fp32", progress=True, lr_search=False) -> dict:
    """Degrade each HR per the setting, adapt, and measure (see ``mzsr-fast eval``).

    Returns ``{"rows": [{image, bicubic: (psnr, ssim), mzsr{k}: (psnr, ssim, seconds)}], "mean": {...}}``.
    """
    from . import adapt_and_upscale
    from . import io as mio
    from . import metrics
    from .degradation import degrade, imresize
    from .degradation import setting as get_setting

    kernel, sub = get_setting(setting)
    rows = []
    for f in _list_images(Path(hr_dir)):
        hr = np.asarray(mio.load_image(f).convert("RGB"))
        hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]
        lr = degrade(hr, kernel, scale, sub)
        row = {"image": f.name}
        bic = imresize(lr, scale)
        row["bicubic"] = (metrics.psnr_y(bic, hr, scale), metrics.ssim_y(bic, hr, scale))
        for k in steps_list:
            t = time.perf_counter()
            sr = adapt_and_upscale(lr, scale=scale, kernel=kernel, steps=k, subsampling=sub, weights=weights,
                                   backend=backend, device=device, precision=precision, lr_search=lr_search)
            dt = time.perf_counter() - t
            row[f"mzsr{k}"] = (metrics.psnr_y(sr, hr, scale), metrics.ssim_y(sr, hr, scale), dt)
        rows.append(row)
        if progress:
            print("  " + _fmt_row(row, steps_list), flush=True)
    mean = {"image": "mean"}
    for key in ["bicubic"] + [f"mzsr{k}" for k in steps_list]:
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        mean[key] = tuple(vals.mean(axis=0).tolist())
    return {"setting": setting, "scale": scale, "steps": list(steps_list), "lr_search": bool(lr_search), "rows": rows,
            "mean": mean}


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
    print(f"eval {a.hr_dir} setting {a.setting} x{a.scale}, steps {steps_list} (PSNR/SSIM on Y, shave {a.scale})")
    res = evaluate(a.hr_dir, a.setting, steps_list, scale=a.scale, weights=a.weights, backend=a.backend,
                   device=a.device, precision=a.precision, lr_search=a.lr_search)
    print("  " + "-" * 60)
    print("  " + _fmt_row(res["mean"], steps_list))
    if a.json:
        from .benchutil import machine_info

        res["machine"] = machine_info()
        _write_text_atomic(Path(a.json), json.dumps(res, indent=1))
        print(f"wrote {a.json}")
    return 0


def _write_text_atomic(path: Path, text: str) -> None:
    """temp file in the same folder + rename: ``path`` is never left half-written."""
    if not path.parent.is_dir():
        raise ValueError(f"output folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _cmd_info(a) -> int:
    import torch

    from . import __version__, _ext, backends
    from .benchutil import _cpu_model

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

    u = sub.add_parser("upscale", help="adapt to one image and upscale it")
    u.add_argument("input")
    u.add_argument("output")
    u.add_argument("--kernel", default=None, help=".mat (key 'kernel') or .npy blur kernel; none = bicubic")
    u.add_argument("--steps", type=int, default=10)
    u.add_argument("--subsampling", default="direct", choices=["direct", "bicubic"])
    u.add_argument("--hr", default=None, help="ground truth: print PSNR/SSIM against it")
    u.add_argument("--force", action="store_true", help="overwrite an existing output")
    u.add_argument("--max-memory", default=None,
                   help="memory budget, e.g. 4GiB or 2e9 (default: half of the free RAM / GPU memory); "
                        "larger images are processed in exact tiles")
    u.add_argument("--adapt-on", default="full", choices=["full", "crops"],
                   help="adapt on the whole image (default) or on random crops (large images; see README)")
    _common_model_args(u)
    u.set_defaults(func=_cmd_upscale)

    e = sub.add_parser("eval", help="degrade HR images per a paper setting, adapt, print PSNR/SSIM")
    e.add_argument("--hr-dir", required=True)
    e.add_argument("--setting", required=True, choices=["g^d_0.2", "g^d_2.0", "g^d_ani", "g^b_1.3"])
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


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
