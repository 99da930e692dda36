"""Ship trained weights into the package: ``mzsr_fast/weights/NAME.safetensors`` (fp32,
with metadata), a model card ``NAME.md``, and a regenerated ``SHA256SUMS``.

    python -m mzsr_fast.train.ship RUN/best.safetensors mzsr_x2_direct [--eval] [--note TEXT]

``--eval`` measures bicubic / MZSR(0) / MZSR(1) / MZSR(10) Y-PSNR on Set5 for the file's
setting (g^d_2.0 for direct, g^b_1.3 for bicubic; at the file's scale) with the reference
backend and records it in the metadata and the card.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
from pathlib import Path

from .. import model
from .common import DEFAULT_VAL

__all__ = ["ship", "ship_recipe", "write_sums"]

WEIGHTS_DIR = model.WEIGHTS_DIR


def write_sums(folder: Path = WEIGHTS_DIR) -> Path:
    """``SHA256SUMS`` in ``sha256sum`` format (``HASH  NAME``) over all ``*.safetensors``."""
    lines = []
    for p in sorted(folder.glob("*.safetensors")):
        lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}")
    out = folder / "SHA256SUMS"
    tmp = out.with_name(".SHA256SUMS.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)
    return out


def ship(src, name: str, *, evaluate: bool = True, note: str = "", val_data=DEFAULT_VAL, extra: dict | None = None,
         measured: dict | None = None, measured_on: str = "this machine's CPU") -> dict:
    params, meta = model.load_weights(src, verify=False)
    meta = {k: _maybe_json(v) for k, v in meta.items()}
    meta.update(extra or {})
    scale = int(meta.get("scale", 2))
    sub = meta.get("subsampling", "direct")
    if name.startswith("pretrain"):
        sub_eval = "direct"  # the pretrained file is the x2 fallback for both subsamplings
    else:
        sub_eval = sub
    setting = "b13" if sub_eval == "bicubic" else "g20"
    res = dict(measured or {})
    rec = model.schedule_from_metadata({k: json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()},
                                       f"weights {src}")
    if evaluate and not res:
        from .validate import load_valset, validate

        vs = load_valset(val_data, setting, scale)
        # the schedule the API will use for this file (its metadata's, else the default)
        sched = (lambda i: rec[min(i, len(rec) - 1)]) if rec else None  # noqa: E731
        res = validate(params, vs, (0, 1, 10), device="cpu", lr_schedule=sched)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta.update({f"set5_{setting}_{k}": round(v, 3) for k, v in res.items() if k != "val_time"})
    meta["shipped"] = date
    if note:
        meta["note"] = note
    dst = WEIGHTS_DIR / f"{name}.safetensors"
    model.save_weights(dst, params, meta)
    dst.chmod(0o644)  # package data: world-readable
    write_sums()
    sha = hashlib.sha256(dst.read_bytes()).hexdigest()
    card = _card(name, meta, res, setting, scale, sha, date, measured_on, rec)
    (WEIGHTS_DIR / f"{name}.md").write_text(card)
    return {"path": str(dst), "sha256": sha, "eval": res, "meta": meta}


def _maybe_json(v):
    try:
        return json.loads(v)
    except (TypeError, ValueError):
        return v


_LABEL = {"g20": "g^d_2.0 (isotropic var 2.0, direct)", "b13": "g^b_1.3 (isotropic var 1.3, bicubic)"}


def _f(res, k):
    return f"{res[k]:.2f}" if k in res else "-"


def _sched_text(rec) -> str:
    if not rec:
        return "default adaptation lr schedule (2e-2, 1e-2 x3, then 5e-3)"
    return f"the file's recommended adaptation lr schedule (metadata lr_schedule {rec}, last value repeated)"


def _card(name, meta, res, setting, scale, sha, date, measured_on="this machine's CPU", rec=None) -> str:
    keys = ["stage", "scale", "subsampling", "arch", "steps", "train_time_s", "patch", "batch", "meta_batch",
            "inner_steps", "alpha", "beta", "first_order", "first_order_steps", "init", "data", "world", "machine"]
    rows = "\n".join(f"| {k} | {meta[k]} |" for k in keys if k in meta)
    other = {k: v for k, v in meta.items() if k not in keys and not k.startswith("set5_") and not k.startswith("val_")}
    rows += "\n" + "\n".join(f"| {k} | {v} |" for k, v in sorted(other.items()))
    if res:
        val = (f"Set5 x{scale}, {_LABEL.get(setting, setting)}, Y-PSNR (dB, shave {scale}), reference backend, "
               f"{_sched_text(rec)}, measured on {measured_on} "
               f"(recorded {date}):\n\n"
               f"| bicubic | no adaptation | MZSR(1) | MZSR(10) |\n|---|---|---|---|\n"
               f"| {_f(res, 'bicubic')} | {_f(res, 'psnr_0')} | {_f(res, 'psnr_1')} | {_f(res, 'psnr_10')} |\n")
    else:
        val = "(not evaluated at shipping time)\n"
    return f"""# {name}.safetensors

MZSR network (SPEC section 1: 8 conv 3x3 layers, 64 channels, global residual), fp32,
{model.num_params()} parameters, safetensors with metadata.  SHA-256 `{sha}`.

Trained only on images of `shared/data/train` (T91 + BSD200 + half of General100, 340
images; see `data` below for the folder actually used); Set5/Set14 were used for validation only.  Trained with `mzsr_fast.train`
({'pretraining' if meta.get('stage') == 'pretrain' else 'meta-transfer learning'}).

## Validation

{val}
## Training record (from the file's metadata)

| key | value |
|---|---|
{rows}

Shipped {date}.
"""


RECIPE_SHIP = {"pre_x2": "pretrain_x2_bicubic", "meta_x2_direct": "mzsr_x2_direct",
               "meta_x2_bicubic": "mzsr_x2_bicubic", "meta_x4_direct": "mzsr_x4_direct"}


def ship_recipe(run_dir, *, only_better: bool = True, note: str = "") -> list[dict]:
    """Ship the outputs of ``scripts/gpu_train.sh RUN_DIR`` using the validation measured
    there (``summary.json``); with ``only_better`` a file replaces a shipped one only if its
    MZSR(10) PSNR on the same setting is higher than the one recorded in the shipped file."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    done = []
    for stage, name in RECIPE_SHIP.items():
        rec = summary.get("stages", {}).get(stage, {})
        src = run_dir / f"{name}.safetensors"
        if not src.is_file() or "val" not in rec:
            done.append({"name": name, "shipped": False, "why": "no output or no validation"})
            continue
        val = rec["val"]
        measured = {k: val[k] for k in ("bicubic", "psnr_0", "psnr_1", "psnr_10") if k in val}
        key = f"set5_{val['setting']}_psnr_10"
        cur = WEIGHTS_DIR / f"{name}.safetensors"
        if only_better and cur.is_file():
            _, m = model.load_weights(cur, verify=False)
            old = float(m.get(key, "-inf"))
            if measured.get("psnr_10", -1e9) <= old:
                done.append({"name": name, "shipped": False, "why": f"MZSR(10) {measured.get('psnr_10')} <= shipped {old}"})
                continue
        r = ship(src, name, evaluate=False, measured=measured,
                 note=note or f"GPU recipe run ({summary.get('device')}, {rec.get('budget_s')} s stage budget); "
                              f"validated on the GPU with the reference backend",
                 extra={"recipe_summary": {"elapsed_s": summary.get("elapsed_s"), "stage": rec,
                                           "data": summary.get("data")}},
                 measured_on=f"{summary.get('device')} (reference backend)")
        done.append({"name": name, "shipped": True, **{k: r[k] for k in ("sha256", "eval")}})
    return done


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mzsr_fast.train.ship", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="a .safetensors file, or with --recipe the OUTDIR of scripts/gpu_train.sh")
    p.add_argument("name", nargs="?", help="file stem, e.g. mzsr_x2_direct")
    p.add_argument("--recipe", action="store_true", help="ship all outputs of a GPU recipe run that improve")
    p.add_argument("--force", action="store_true", help="with --recipe: ship even if not better")
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--note", default="")
    p.add_argument("--set", action="append", default=[], help="extra metadata KEY=VALUE")
    p.add_argument("--measured", default=None, help='JSON of already measured results, e.g. {"bicubic": 28.74, "psnr_10": 30.1}')
    a = p.parse_args(argv)
    if a.recipe:
        print(json.dumps(ship_recipe(a.src, only_better=not a.force, note=a.note), indent=1))
        return 0
    if not a.name:
        p.error("name is required")
    extra = dict(kv.split("=", 1) for kv in a.set)
    r = ship(a.src, a.name, evaluate=not a.no_eval, note=a.note, extra=extra,
             measured=json.loads(a.measured) if a.measured else None)
    print(json.dumps({k: r[k] for k in ("path", "sha256", "eval")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
