"""The training campaign (issue 15): one documented command starts or resumes it; killed with
SIGKILL it resumes exactly (same weights and Adam state as an uninterrupted run); the
validation suite reports every cell and selects best.safetensors by the mean over cells."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from trainproc import kill_at_checkpoint, png_folder, train_env
from mzsr_fast.train import campaign
from mzsr_fast.train import checkpoint as ck
from mzsr_fast.train.log import read_log
from mzsr_fast.train.validate import parse_suite

pytestmark = pytest.mark.slow


def _folder(d, n, seed, shape=(24, 28)):
    return png_folder(d, [(shape[0] + 4 * i, shape[1]) for i in range(n)], seed)


def _campaign(tmp_path, name, steps):
    """A campaign folder with a tiny recipe (what ``--preset`` would write, made small)."""
    data = tmp_path / "hr"
    if not data.exists():
        _folder(data, 3, 1)
        _folder(tmp_path / "val_a", 2, 2, (44, 46))  # LR >= the 21x21 validation kernels
        _folder(tmp_path / "val_b", 1, 3, (44, 46))
    folder = tmp_path / name
    folder.mkdir()
    init = tmp_path / "init.safetensors"
    if not init.exists():
        from mzsr_fast import model

        model.save_weights(init, model.init_params(0))
    cfg = {"preset": "tiny", "init": str(init), "data": str(data), "val_data": str(tmp_path / "val_a"),
           "meta_args": ["--patch", "16", "--meta-batch", "2", "--inner-steps", "1", "--n-train", "2", "--n-test", "2",
                         "--beta", "1e-3", "--log-every", "1", "--steps", str(steps), "--val-backend", "reference",
                         "--best-metric", "psnr_1+psnr_2", "--val-steps", "1,2"],
           "val_every": 3, "val_suite": f"{tmp_path / 'val_a'}:g20,{tmp_path / 'val_b'}:g02", "plot_every": 0}
    (folder / campaign.CONFIG).write_text(json.dumps(cfg))
    return folder


def _cmd(folder):
    return [sys.executable, "-m", "mzsr_fast.train.campaign", str(folder), "--time-budget", "0", "--no-bar",
            "--ckpt-every", "1", "--threads", "1"]


def test_campaign_killed_then_resumed_by_the_same_command_is_exact(tmp_path):
    steps = 7
    ref = _campaign(tmp_path, "ref", steps)
    r = subprocess.run(_cmd(ref), env=train_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]

    run = _campaign(tmp_path, "run", steps)
    ckpt = run / "ckpt.pt"
    killed_at = kill_at_checkpoint(_cmd(run), train_env(), ckpt, 4)  # past the first validation (step 3)
    assert killed_at < steps, killed_at

    r = subprocess.run(_cmd(run), env=train_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = ck.load_checkpoint(ref / "ckpt.pt"), ck.load_checkpoint(ckpt)
    assert a["step"] == b["step"] == steps
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])

    # the suite: every cell logged, the psnr keys are the means over cells, best by their sum
    vals = [r for r in read_log(run / "log.jsonl") if r["kind"] == "val"]
    assert [v["step"] for v in vals] == [3, 3, 6] or [v["step"] for v in vals] == [3, 6]
    for v in vals:
        cells = v["cells"]
        assert set(cells) == {"val_a:g20", "val_b:g02"}
        for key in ("psnr_1", "psnr_2", "bicubic"):
            assert v[key] == pytest.approx(np.mean([c[key] for c in cells.values()]), abs=1e-3)
        assert len(v["images"]) == 3  # 2 + 1 images, keyed cell/image
    best = max(vals, key=lambda v: v["psnr_1"] + v["psnr_2"])
    from mzsr_fast import model

    _, meta = model.load_weights(run / "best.safetensors")
    assert int(meta["steps"]) == best["step"]
    resumes = [r for r in read_log(run / "log.jsonl") if r.get("event") == "resume"]
    assert len(resumes) == 1 and resumes[0]["step"] >= killed_at  # continued, not restarted from 0


def test_campaign_recipe_is_fixed_per_folder(tmp_path):
    folder = _campaign(tmp_path, "c", 2)
    with pytest.raises(SystemExit, match="differs"):
        campaign.load_or_create(folder, "x2_direct")
    with pytest.raises(SystemExit, match="--preset"):
        campaign.load_or_create(tmp_path / "new", None)
    with pytest.raises(SystemExit, match="unknown preset"):
        campaign.load_or_create(tmp_path / "new", "nope")
    cfg = campaign.load_or_create(tmp_path / "fresh", "x2_direct")
    assert cfg["init_sha256"] and "--task-images" in cfg["meta_args"]
    assert campaign.load_or_create(tmp_path / "fresh", None) == cfg  # read back unchanged


def test_suite_parsing_names_bad_cells(tmp_path):
    _folder(tmp_path / "set5", 1, 0)
    cells = parse_suite("set5:g20, set5:gani", tmp_path)
    assert [c[0] for c in cells] == ["set5:g20", "set5:gani"]
    with pytest.raises(ValueError, match="SET:SETTING"):
        parse_suite("set5", tmp_path)
    with pytest.raises(ValueError, match="unknown setting"):
        parse_suite("set5:g99", tmp_path)
    with pytest.raises(ValueError, match="no folder"):
        parse_suite("set7:g20", tmp_path)


def test_best_restarts_when_the_validation_changes(tmp_path, monkeypatch):
    """A run continued as a campaign: the old single-set best (Set5 g20 ~ 68.8 for
    MZSR(1)+MZSR(10)) must not block the suite's lower means from selecting a snapshot."""
    import types

    from mzsr_fast import model
    from mzsr_fast.train import validate as V

    _folder(tmp_path / "v", 1, 0, (44, 46))
    suite = V.load_suite(f"{tmp_path / 'v'}:g20", tmp_path)
    monkeypatch.setattr(V, "validate_suite", lambda *a, **k: {"psnr_1": 31.0, "psnr_10": 32.0, "bicubic": 28.0,
                                                                "val_time": 0.1, "cells": {}, "images": {}})
    args = types.SimpleNamespace(val_backend="reference", best_metric="psnr_1+psnr_10", keep_val_snapshots=False)
    log = types.SimpleNamespace(log=lambda **r: None)
    bar = types.SimpleNamespace(write=lambda s: None)
    params = model.init_params(0)
    old = {"psnr_1": 34.0, "psnr_10": 35.0, "step": 100, "key": "psnr_1+psnr_10", "score": 69.0}
    kw = dict(step=400, device="cpu", args=args, out=tmp_path, log=log, bar=bar, prefix="t", train_time_s=1.0, meta={})
    best = V.validation_round(params, suite, [1, 10], best=dict(old), **kw)
    assert best["step"] == 400 and best["setting"] == suite.setting and (tmp_path / "best.safetensors").exists()
    # the same suite later with a lower score keeps the best
    monkeypatch.setattr(V, "validate_suite", lambda *a, **k: {"psnr_1": 30.0, "psnr_10": 32.0, "bicubic": 28.0,
                                                                "val_time": 0.1, "cells": {}, "images": {}})
    assert V.validation_round(params, suite, [1, 10], best=best, **{**kw, "step": 800})["step"] == 400
