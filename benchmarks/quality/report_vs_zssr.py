"""MZSR vs vanilla ZSSR on a set of HR images, one degradation setting, one machine, one run.

For each HR image (mod-cropped to the scale): LR = ``degrade(HR, k, s, subsampling)`` of the
setting (SPEC section 2), then

* bicubic: ``imresize(LR, s)``;
* ZSSR: :func:`mzsr_fast.zssr_upscale`'s trainer and self-ensemble (official defaults
  unless ``--zssr-preset`` / ``--zssr-max-iters``: lr policy, up to 3000 iterations,
  8-frame self-ensemble, back-projection), one run; in the same run the network is also
  scored at the ``--zssr-curve`` iterations (PSNR of its plain output, no self-ensemble,
  against the training seconds so far, the scoring time excluded), so that one plot shows
  ZSSR's PSNR-vs-time curve next to MZSR(k)'s;
* MZSR(k): :func:`mzsr_fast.adapt_and_upscale` with k steps (shipped weights unless
  ``--weights``), one warm-up call, then the median of ``--repeat`` timed calls;

and records wall time and PSNR/SSIM (Y, shave = scale).  After every image it rewrites

    <out-dir>/vs_zssr_<setting>_<date>.json   all numbers + machine + options
    <out-dir>/vs_zssr_<setting>_<date>.md     the table, machine, date, speed ratio
    <out-dir>/vs_zssr_<setting>_<date>.png    mean PSNR vs seconds (log time axis)

so an interrupted run still leaves a (subset) report that says how many images it covers.
``--from-json F`` only re-renders the table and plot from an earlier JSON.

(``--out-dir`` default: benchmarks/results/)

    python benchmarks/quality/report_vs_zssr.py --hr-dir ../shared/data/set5 --setting g^d_2.0 \
        [--images bird,head] [--steps 1,10,25,50] [--threads 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mzsr_fast import adapt_and_upscale, degrade, gaussian_kernel, imresize  # noqa: E402
from mzsr_fast import io as mio  # noqa: E402
from benchmarks.harness import machine_info  # noqa: E402
from mzsr_fast.metrics import psnr_y, ssim_y  # noqa: E402
from mzsr_fast.zssr import ZSSRConfig  # noqa: E402

#: the paper's x2 Set5 numbers (SPEC section 5): setting -> {method: (PSNR, SSIM)}
PAPER_SET5 = {
    "g^d_0.2": {"bicubic": (30.24, .8976), "zssr": (34.29, .9373), "mzsr1": (33.14, .9277), "mzsr10": (33.74, .9301)},
    "g^d_2.0": {"bicubic": (28.73, .8449), "zssr": (34.90, .9397), "mzsr1": (35.20, .9398), "mzsr10": (36.05, .9439)},
    "g^d_ani": {"bicubic": (28.15, .8265), "zssr": (33.96, .9307), "mzsr1": (34.05, .9271), "mzsr10": (34.78, .9323)},
    "g^b_1.3": {"bicubic": (30.54, .8773), "zssr": (35.24, .9434), "mzsr1": (35.18, .9430), "mzsr10": (36.64, .9498)},
}
_SETTINGS = {  # as mzsr_fast.degradation.SETTINGS (SPEC section 2)
    "g^d_0.2": (dict(size=21, var1=0.2), "direct"),
    "g^d_2.0": (dict(size=21, var1=2.0), "direct"),
    "g^d_ani": (dict(size=15, var1=4.0, var2=1.0, theta=-0.5), "direct"),
    "g^b_1.3": (dict(size=21, var1=1.3), "bicubic"),
}


def get_setting(name: str):
    try:
        from mzsr_fast.degradation import setting

        return setting(name)
    except ImportError:
        if name not in _SETTINGS:
            raise ValueError(f"unknown setting {name!r}; choose one of {sorted(_SETTINGS)}")
        kw, sub = _SETTINGS[name]
        return gaussian_kernel(**kw), sub


def _label(key: str) -> str:
    if key == "bicubic":
        return "Bicubic"
    if key == "zssr":
        return "ZSSR"
    if key.startswith("quality_"):
        return f'quality="{key[8:]}"'
    return f"MZSR({key[4:]})"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def zssr_with_curve(lr: np.ndarray, hr: np.ndarray, scale: int, kernel, cfg: ZSSRConfig, device, seed: int,
                    checkpoints=(), progress: bool = False):
    """ZSSR on one LR image (``(h, w, 3)`` uint8) as :func:`mzsr_fast.zssr_upscale` runs it
    (its trainer, seed and self-ensemble: the same output), also scoring the network after
    each iteration in ``checkpoints``.  -> ``(sr (s h, s w, 3) uint8, info, curve)``: info
    as ``zssr_upscale(return_info=True)``'s plus ``seconds`` (the call's wall time without
    the scoring), curve a list of ``{"iteration", "seconds", "psnr", "ssim"}`` (PSNR/SSIM on Y
    of the plain network output ``clip(net(imresize(lr, s)))``, seconds of training so far)."""
    from tqdm.auto import tqdm

    from mzsr_fast import io as _io
    from mzsr_fast import zssr as Z
    from mzsr_fast.api import resolve_device

    t0 = time.perf_counter()
    dev = resolve_device(device)
    k = _io.load_kernel(kernel)
    xs, meta = _io.to_internal(lr, dev)
    x = xs[0]
    sub = cfg.subsampling if k is not None else "bicubic"
    tr = Z._Trainer(x, k, scale, cfg, seed)
    want = set(int(c) for c in checkpoints)
    curve, excluded = [], [0.0]
    bar = tqdm(total=cfg.max_iters, desc="ZSSR train", unit="it", disable=not progress, leave=False)

    class _Hook:  # the trainer's progress bar: it calls update(1) after every iteration
        it = 0

        def update(self, n):
            bar.update(n)
            self.it += n
            if self.it in want:
                _sync(device)
                t = time.perf_counter()
                out = _io.from_internal([tr.predict(x)], meta)
                curve.append({"iteration": self.it, "seconds": t - t0 - excluded[0],
                              "psnr": psnr_y(out, hr, scale), "ssim": ssim_y(out, hr, scale)})
                excluded[0] += time.perf_counter() - t

        def __getattr__(self, name):  # the rest of the progress-bar calls (set_postfix...) go to the bar
            return getattr(bar, name)

    t1 = time.perf_counter()
    iters = tr.train(_Hook())
    bar.close()
    t2 = time.perf_counter()
    sr = Z.self_ensemble(tr.predict, x, scale, k, sub, flips=cfg.output_flip, bp_iters=cfg.back_projection_iters,
                         align=cfg.ensemble_align)
    _sync(device)
    t3 = time.perf_counter()
    info = {"iterations": iters, "lr_changes": tr.lr_changes[1:], "final_lr": tr.lr, "mse_steps": tr.mse_steps,
            "mse_rec": tr.mse_rec, "seed": seed,
            "times": {"train": t2 - t1 - excluded[0], "ensemble": t3 - t2}, "seconds": t3 - t0 - excluded[0]}
    return _io.from_internal([sr], meta), info, curve


def run_image(path: Path, kernel, sub: str, a, zcfg: ZSSRConfig) -> dict:
    s = a.scale
    hr = mio.load_hr_image(path, s)
    lr = degrade(hr, kernel, s, sub)  # uint8, bit-exact with the official LR for g^d_2.0
    row = {"image": path.name, "hr_shape": list(hr.shape), "lr_shape": list(lr.shape), "methods": {}}

    def score(sr, secs, **extra):
        return {"psnr": psnr_y(sr, hr, s), "ssim": ssim_y(sr, hr, s), "seconds": secs, **extra}

    def best_shift(sr):
        """The +-1 HR-pixel shift (dy, dx) of the output with the best PSNR (alignment check)."""
        ps = {(dy, dx): psnr_y(np.roll(sr, (dy, dx), axis=(0, 1)), hr, s + 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
        return list(max(ps, key=ps.get))

    def save(sr, key):
        if a.save_dir:
            from PIL import Image

            Path(a.save_dir).mkdir(parents=True, exist_ok=True)
            Image.fromarray(sr).save(Path(a.save_dir) / f"{path.stem}_{key}.png")

    t = time.perf_counter()
    bic = imresize(lr, s)
    row["methods"]["bicubic"] = score(bic, time.perf_counter() - t)
    print(f"  {path.name}: bicubic {row['methods']['bicubic']['psnr']:.2f} dB", flush=True)

    calls = [(f"mzsr{k}", dict(steps=k)) for k in a.steps] + [(f"quality_{q}", dict(quality=q)) for q in a.quality]
    for key, kw in calls:
        run = lambda: adapt_and_upscale(lr, scale=s, kernel=kernel, subsampling=sub,  # noqa: E731
                                        weights=a.weights, backend=a.backend, device=a.device, return_info=True, **kw)
        run()  # warm-up: weights load, backend set-up, caches
        times, sr, info = [], None, None
        for _ in range(a.repeat):
            _sync(a.device)
            t = time.perf_counter()
            sr, info = run()
            _sync(a.device)
            times.append(time.perf_counter() - t)
        row["methods"][key] = score(sr, statistics.median(times), times=times, backend=info["backend_detail"],
                                    weights=info["weights"], best_shift=best_shift(sr))
        save(sr, key)
        m = row["methods"][key]
        print(f"  {path.name}: {_label(key)} {m['psnr']:.2f} dB {m['seconds']:.3f} s", flush=True)

    if a.reused_zssr and path.name in a.reused_zssr:
        row["methods"]["zssr"] = dict(a.reused_zssr[path.name], reused=True)
        print(f"  {path.name}: ZSSR reused {row['methods']['zssr']['psnr']:.2f} dB", flush=True)
    elif not a.no_zssr:
        sr, info, curve = zssr_with_curve(lr, hr, s, kernel, zcfg, a.device, a.seed, a.zssr_curve, a.progress)
        dt = info["seconds"]
        row["methods"]["zssr"] = score(sr, dt, iterations=info["iterations"], lr_changes=info["lr_changes"],
                                       train_seconds=info["times"]["train"],
                                       ensemble_seconds=info["times"]["ensemble"], seed=info["seed"],
                                       mse_rec=info["mse_rec"], best_shift=best_shift(sr), curve=curve)
        save(sr, "zssr")
        m = row["methods"]["zssr"]
        print(f"  {path.name}: ZSSR {m['psnr']:.2f} dB {dt:.1f} s ({info['iterations']} iterations, "
              f"lr changes {info['lr_changes']})", flush=True)
    return row


def summarize(res: dict) -> dict:
    keys = []
    for r in res["rows"]:
        for k in r["methods"]:
            if k not in keys:
                keys.append(k)
    presets = [q for q in ("fast", "balanced", "best") if f"quality_{q}" in keys]
    order = ["bicubic"] + sorted([k for k in keys if k.startswith("mzsr")], key=lambda k: int(k[4:])) + [
        f"quality_{q}" for q in presets] + (["zssr"] if "zssr" in keys else [])
    mean = {}
    for k in order:
        vals = [r["methods"][k] for r in res["rows"] if k in r["methods"]]
        mean[k] = {f: float(np.mean([v[f] for v in vals])) for f in ("psnr", "ssim", "seconds")}
        mean[k]["n"] = len(vals)
    res["order"] = order
    res["mean"] = mean
    mz = [(r["image"], v) for r in res["rows"] for k, v in r["methods"].items()
          if k.startswith(("mzsr", "quality_"))]
    ws, bs = sorted({v["weights"] for _, v in mz}), sorted({v["backend"] for _, v in mz})
    if len(ws) > 1:  # the shipped default changed during the run: say which image used which
        res["mzsr_weights"] = "; ".join(f"{w} ({', '.join(sorted({i for i, v in mz if v['weights'] == w}))})"
                                        for w in ws)
    elif ws:
        res["mzsr_weights"] = ws[0]
    if bs:
        res["mzsr_backend"] = " + ".join(bs)
    z = [r["methods"]["zssr"]["curve"] for r in res["rows"] if r["methods"].get("zssr", {}).get("curve")]
    if z:  # mean over images of each checkpoint every image reached (ZSSR may stop early)
        its = sorted(set.intersection(*[{c["iteration"] for c in cv} for cv in z]))
        res["zssr_curve_mean"] = [
            {"iteration": i, "n": len(z), **{f: float(np.mean([c[f] for cv in z for c in cv if c["iteration"] == i]))
                                            for f in ("seconds", "psnr", "ssim")}} for i in its]
    if "zssr" in mean and "mzsr10" in mean:
        ratios = [r["methods"]["zssr"]["seconds"] / r["methods"]["mzsr10"]["seconds"]
                  for r in res["rows"] if "zssr" in r["methods"] and "mzsr10" in r["methods"]]
        res["speed_ratio_zssr_over_mzsr10"] = {
            "of_mean_times": mean["zssr"]["seconds"] / mean["mzsr10"]["seconds"],
            "per_image": ratios,
            "geomean": float(np.exp(np.mean(np.log(ratios)))) if ratios else None,
        }
    if "zssr" in mean and "quality_best" in mean:
        res["speed_ratio_zssr_over_best"] = mean["zssr"]["seconds"] / mean["quality_best"]["seconds"]
        res["best_minus_zssr_psnr"] = mean["quality_best"]["psnr"] - mean["zssr"]["psnr"]
    return res


def write_md(res: dict, stem: Path) -> None:
    m = res["machine"]
    o = res["options"]
    n_done, n_all = len(res["rows"]), len(res["images_planned"])
    lines = [
        f"# MZSR vs ZSSR, {res['setting']} x{o['scale']}, {res['set_name']}",
        "",
        f"Date (UTC): {res['finished_utc'] or res['started_utc'] + ' (in progress)'}. "
        f"Machine: {m.get('cpu')} ({m.get('cpu_count')} cores, shared), torch {m.get('torch')}, "
        f"{o['threads']} torch threads, device `{o['device']}`" + (f", GPU {m['gpu']}" if m.get("gpu") else "") + ".",
        "",
        f"Images: {n_done} of {n_all} planned ({', '.join(r['image'] for r in res['rows'])})"
        + ("" if n_done == res.get("images_in_set", n_all)
           else f"; **a subset of {res['set_name']}** ({res.get('images_in_set', n_all)} images): means are over "
           "these images only, not comparable one-to-one with the paper's whole-set means") + ". "
        f"LR = `degrade(HR, k, {o['scale']}, {res['subsampling']})` of the setting; PSNR/SSIM on Y, shave {o['scale']}.",
        "",
        f"ZSSR: `mzsr_fast.zssr_upscale`, preset `{res.get('zssr_preset', o['zssr_preset'])}`, "
        f"max {res['zssr_config']['max_iters']} iterations, "
        f"self-ensemble {'on' if res['zssr_config']['output_flip'] else 'off'}, "
        f"{res['zssr_config']['back_projection_iters']} back-projection rounds, seed {o['seed']}, one run per image. "
        f"MZSR(k): `adapt_and_upscale`, k steps, weights `{res.get('mzsr_weights')}`, backend "
        f"`{res.get('mzsr_backend')}`, median of {o['repeat']} warm calls.",
        "",
        "Command: `" + res["command"] + "`",
    ]
    if res.get("zssr_reused_from"):
        z = res["zssr_reused_from"]
        lines += ["", f"The ZSSR rows are reused from `{z['file']}` (started {z['started_utc']} UTC, same script, "
                  f"{z['threads']} threads, machine {z['cpu']}); bicubic and MZSR were measured in this run."]
    lines += [
        "",
        "| method | PSNR (dB) | SSIM | seconds / image | paper PSNR/SSIM (whole set) |",
        "|---|---|---|---|---|",
    ]
    paper = PAPER_SET5.get(res["setting"], {}) if res["set_name"].lower() == "set5" else {}
    for k in res["order"]:
        v = res["mean"][k]
        p = paper.get(k)
        ps = f"{p[0]:.2f}/{p[1]:.4f}" if p else "-"
        lines.append(f"| {_label(k)} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['seconds']:.3f} | {ps} |")
    sr = res.get("speed_ratio_zssr_over_mzsr10")
    if sr:
        lines += ["", f"Speed ratio ZSSR / MZSR(10): **{sr['of_mean_times']:.0f}x** (mean times; per image "
                  + ", ".join(f"{x:.0f}x" for x in sr["per_image"]) + f"; geometric mean {sr['geomean']:.0f}x), "
                  f"at PSNR {res['mean']['zssr']['psnr']:.2f} dB (ZSSR) vs {res['mean']['mzsr10']['psnr']:.2f} dB "
                  "(MZSR(10))."]
    if res.get("speed_ratio_zssr_over_best") is not None:
        lines += ["", f'quality="best" against ZSSR: **{res["best_minus_zssr_psnr"]:+.2f} dB** in '
                  f'**1/{res["speed_ratio_zssr_over_best"]:.0f}** of its time (means over the images).']
    if res.get("zssr_curve_mean"):
        lines += ["", "ZSSR during training, same run (plain network output, no self-ensemble; seconds of training "
                  "so far, scoring excluded; mean over the images):", "",
                  "| iteration | seconds | PSNR (dB) | SSIM |", "|---|---|---|---|"]
        lines += [f"| {c['iteration']} | {c['seconds']:.3g} | {c['psnr']:.2f} | {c['ssim']:.4f} |"
                  for c in res["zssr_curve_mean"]]
    lines += ["", "Per image (PSNR dB / seconds):", "",
              "| image | " + " | ".join(_label(k) for k in res["order"]) + " | ZSSR iterations |",
              "|---|" + "---|" * (len(res["order"]) + 1)]
    for r in res["rows"]:
        cells = []
        for k in res["order"]:
            v = r["methods"].get(k)
            cells.append(f"{v['psnr']:.2f} / {v['seconds']:.3g}" if v else "-")
        z = r["methods"].get("zssr")
        it = f"{z['iterations']} (lr /10 at {z['lr_changes']})" if z else "-"
        if z and "best_shift" in z:
            it += f", best +-1 px shift {tuple(z['best_shift'])}"
        lines.append(f"| {r['image']} | " + " | ".join(cells) + f" | {it} |")
    lines += ["", f"Plot: `{stem.name}.png`; raw numbers: `{stem.name}.json`.", ""]
    _out(stem, ".md").write_text("\n".join(lines))


def write_plot(res: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", flush=True)
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = {"bicubic": "tab:gray", "zssr": "tab:red", "quality_fast": "tab:green", "quality_balanced": "tab:green",
              "quality_best": "tab:green"}
    for j, k in enumerate(res["order"]):
        v = res["mean"][k]
        c = colors.get(k, "tab:blue")
        pts = [(r["methods"][k]["seconds"], r["methods"][k]["psnr"]) for r in res["rows"] if k in r["methods"]]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=10, color=c, alpha=0.3)
        ax.scatter([v["seconds"]], [v["psnr"]], s=50, color=c, zorder=3)
        ax.annotate(_label(k), (v["seconds"], v["psnr"]), textcoords="offset points", xytext=(5, 4 if j % 2 else -13), fontsize=9)
    mz = [k for k in res["order"] if k.startswith("mzsr")]
    if mz:
        ax.plot([res["mean"][k]["seconds"] for k in mz], [res["mean"][k]["psnr"] for k in mz], color="tab:blue", lw=1)
    zc = res.get("zssr_curve_mean")
    if zc:
        ax.plot([c["seconds"] for c in zc] + [res["mean"]["zssr"]["seconds"]],
                [c["psnr"] for c in zc] + [res["mean"]["zssr"]["psnr"]], color="tab:red", lw=1, marker=".",
                label="ZSSR during training (no ensemble), then final")
        ax.legend(fontsize=8, loc="best")
    ax.set_xscale("log")
    ax.set_xlabel("wall time per image (s, log scale)")
    ax.set_ylabel("PSNR on Y (dB)")
    m = res["machine"]
    ax.set_title(f"{res['setting']} x{res['options']['scale']}, {res['set_name']} ({len(res['rows'])} images), "
                 f"{res['options']['device']}\n{m.get('cpu', '')[:48]}, {res['options']['threads']} threads, "
                 f"{(res['finished_utc'] or res['started_utc'])[:10]}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _out(stem: Path, ext: str) -> Path:
    return stem.parent / (stem.name + ext)  # not with_suffix: the setting name has a dot


def render(res: dict, stem: Path) -> None:
    summarize(res)
    _out(stem, ".json").write_text(json.dumps(res, indent=1))
    write_md(res, stem)
    write_plot(res, _out(stem, ".png"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hr-dir", default=os.environ.get("MZSR_FAST_DATA", str(ROOT.parent / "shared" / "data")) + "/set5")
    ap.add_argument("--setting", default="g^d_2.0", choices=sorted(_SETTINGS))
    ap.add_argument("--images", default=None, help="comma list of file stems to use (default: all)")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--steps", default="1,10,25,50", help="MZSR step counts (comma list)")
    ap.add_argument("--repeat", type=int, default=3, help="timed MZSR calls per step count (median)")
    ap.add_argument("--quality", default="", help="also the adapt_and_upscale quality presets (comma list: "
                    "fast,balanced,best)")
    ap.add_argument("--weights", default=None, help="MZSR weights (default: shipped)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--zssr-preset", default="default", choices=ZSSRConfig.PRESETS)
    ap.add_argument("--zssr-max-iters", type=int, default=3000)
    ap.add_argument("--no-zssr", action="store_true", help="skip ZSSR (MZSR/bicubic only)")
    ap.add_argument("--reuse-zssr-from", default=None,
                    help="take the ZSSR rows of matching images from an earlier report JSON (stated in the report)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--zssr-curve", default="25,50,100,200,400,800,1600",
                    help="ZSSR iterations at which to score the network in the same run (comma list; '' for none)")
    ap.add_argument("--progress", action="store_true", help="ZSSR progress bars")
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--tag", default="", help="suffix for the output names")
    ap.add_argument("--save-dir", default=None, help="also save the ZSSR and MZSR outputs (PNG) here")
    ap.add_argument("--from-json", default=None, help="re-render the .md/.png of an earlier JSON and exit")
    a = ap.parse_args(argv)

    if a.from_json:
        p = Path(a.from_json)
        stem = p.parent / p.name[: -len(".json")]
        res = json.loads(p.read_text())
        if a.reuse_zssr_from:  # merge the ZSSR rows of another run into this one
            old = json.loads(Path(a.reuse_zssr_from).read_text())
            z = {r["image"]: r["methods"]["zssr"] for r in old["rows"] if "zssr" in r["methods"]}
            for r in res["rows"]:
                if r["image"] in z:
                    r["methods"]["zssr"] = dict(z[r["image"]], reused=True)
            res["zssr_reused_from"] = {"file": Path(a.reuse_zssr_from).name, "started_utc": old["started_utc"],
                                       "threads": old["options"]["threads"], "cpu": old["machine"].get("cpu")}
            res["zssr_config"] = old["zssr_config"]
            res["zssr_preset"] = old.get("zssr_preset", old["options"]["zssr_preset"])
        render(res, stem)
        print(f"wrote {stem}.md and {stem}.png")
        return 0
    if a.threads:
        torch.set_num_threads(a.threads)
    a.steps = [int(x) for x in a.steps.split(",") if x.strip()]
    a.quality = [q.strip() for q in a.quality.split(",") if q.strip()]
    a.zssr_curve = [int(x) for x in a.zssr_curve.split(",") if x.strip()]
    a.reused_zssr, reused_meta = {}, None
    if a.reuse_zssr_from:
        old = json.loads(Path(a.reuse_zssr_from).read_text())
        a.reused_zssr = {r["image"]: r["methods"]["zssr"] for r in old["rows"] if "zssr" in r["methods"]}
        reused_meta = {"file": Path(a.reuse_zssr_from).name, "started_utc": old["started_utc"],
                       "threads": old["options"]["threads"], "cpu": old["machine"].get("cpu"),
                       "zssr_config": old["zssr_config"],
                       "zssr_preset": old.get("zssr_preset", old["options"]["zssr_preset"])}
    kernel, sub = get_setting(a.setting)
    zcfg = ZSSRConfig.preset(a.zssr_preset, max_iters=a.zssr_max_iters, subsampling=sub)
    hr_dir = Path(a.hr_dir)
    files = sorted(p for p in hr_dir.iterdir() if p.suffix.lower() in (".png", ".bmp", ".jpg"))
    n_in_set = len(files)
    if a.images:
        want = [x.strip() for x in a.images.split(",") if x.strip()]
        files = [p for w in want for p in files if p.stem == w]
        if len(files) != len(want):
            raise SystemExit(f"some of {want} are not in {hr_dir}")
    date = datetime.datetime.now(datetime.timezone.utc)
    stem = Path(a.out_dir) / f"vs_zssr_{a.setting.replace('^', '')}_{date:%Y-%m-%d}{a.tag}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    res = {
        "setting": a.setting, "subsampling": sub, "set_name": hr_dir.name,
        "images_planned": [p.name for p in files], "images_in_set": n_in_set,
        "options": {k: v for k, v in vars(a).items() if k not in ("from_json", "reused_zssr")}
        | {"threads": torch.get_num_threads()},
        "zssr_config": zcfg.__dict__ | {},
        "machine": machine_info(),
        "started_utc": f"{date:%Y-%m-%d %H:%M}", "finished_utc": None,
        "command": "python benchmarks/quality/report_vs_zssr.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "rows": [],
    }
    if reused_meta:
        res["zssr_reused_from"] = reused_meta
        res["zssr_config"] = reused_meta["zssr_config"]
        res["zssr_preset"] = reused_meta["zssr_preset"]
    print(f"{a.setting} on {len(files)} images of {hr_dir} -> {stem}.*", flush=True)
    for p in files:
        row = run_image(p, kernel, sub, a, zcfg)
        res["rows"].append(row)
        render(res, stem)
    res["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    render(res, stem)
    print(_out(stem, ".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
