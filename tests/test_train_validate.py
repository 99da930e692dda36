"""Validation during training: the ``--best-metric`` sum, snapshots per validation, the
validation backend, and a bad metric failing before any training."""
import json

import numpy as np
import torch
import pytest

from trainproc import png_folder
from mzsr_fast import model
from mzsr_fast.train import meta
from mzsr_fast.train.validate import best_keys


def test_best_keys():
    assert best_keys("psnr_10", [1, 10]) == ["psnr_10"]
    assert best_keys("psnr_1+psnr_10", [1, 10]) == ["psnr_1", "psnr_10"]
    assert best_keys("psnr_10", [0, 1]) == ["psnr_1"]  # the default falls back to the last validated count
    with pytest.raises(SystemExit, match="psnr_3"):
        best_keys("psnr_3", [1, 10])
    with pytest.raises(SystemExit, match="psnr_5"):
        best_keys("psnr_1+psnr_5", [1, 10])


def _folder(path, n, size, seed):
    return png_folder(path, [(size, size + 2 * i) for i in range(n)], seed)


@pytest.mark.parametrize("val_backend", ["reference", "cpu"])
def test_meta_validation_snapshots_and_sum_metric(tmp_path, val_backend):
    if val_backend == "cpu":
        pytest.importorskip("mzsr_fast._C")
    data = _folder(tmp_path / "hr", 3, 24, 0)
    val = _folder(tmp_path / "val", 1, 96, 1)
    out = tmp_path / "run"
    p = meta.add_args(__import__("argparse").ArgumentParser())
    args = p.parse_args(["--data", str(data), "--val-data", str(val), "--out", str(out), "--patch", "16",
                         "--meta-batch", "1", "--inner-steps", "1", "--n-train", "2", "--n-test", "2",
                         "--steps", "3", "--val-every", "1", "--val-steps", "0,1", "--no-bar", "--threads", "1",
                         "--best-metric", "psnr_0+psnr_1", "--keep-val-snapshots", "--val-backend", val_backend,
                         "--beta", "1e-3"])
    res = meta.run(args)
    vals = [json.loads(line) for line in open(out / "log.jsonl") if '"val"' in line]
    assert [v["step"] for v in vals] == [1, 2, 3]
    for v in vals:  # per-image PSNRs whose mean is the logged one
        assert sorted(v["images"]) == ["0"]
        assert v["images"]["0"]["psnr_1"] == pytest.approx(v["psnr_1"], abs=1e-3)
    scores = [v["psnr_0"] + v["psnr_1"] for v in vals]
    best_step = [1, 2, 3][int(np.argmax(scores))]
    assert res["best"]["step"] == best_step and res["best"]["key"] == "psnr_0+psnr_1"
    for s in (1, 2, 3):
        assert (out / f"val_step{s}.safetensors").exists()
    _, best_meta = model.load_weights(out / "best.safetensors")
    _, snap_meta = model.load_weights(out / f"val_step{best_step}.safetensors")
    assert best_meta == snap_meta


def test_bad_best_metric_fails_before_training(tmp_path):
    data = _folder(tmp_path / "hr", 2, 24, 0)
    val = _folder(tmp_path / "val", 1, 96, 1)
    p = meta.add_args(__import__("argparse").ArgumentParser())
    args = p.parse_args(["--data", str(data), "--val-data", str(val), "--out", str(tmp_path / "run"),
                         "--patch", "16", "--steps", "1", "--val-every", "1", "--best-metric", "psnr_7", "--no-bar"])
    with pytest.raises(SystemExit, match="psnr_7"):
        meta.run(args)
    assert not (tmp_path / "run" / "ckpt.pt").exists()


def test_gpu_recipe_keeps_the_validated_best_on_cpu(tmp_path):
    """The budgeted recipe (mzsr_fast.train.gpu) with --meta-val-every: the meta stage
    validates, keeps snapshots, and its output file is the best validation's weights (a
    dry run on the CPU, one stage, a few seconds)."""
    from mzsr_fast.train import gpu

    data = _folder(tmp_path / "hr", 3, 40, 0)
    val = _folder(tmp_path / "val", 1, 96, 1)
    out = tmp_path / "recipe"
    rc = gpu.main(["recipe", "--out", str(out), "--device", "cpu", "--threads", "1", "--time-budget", "8",
                   "--reserve", "0", "--data", str(data), "--val-data", str(val), "--shares", "meta_x2_direct=1",
                   "--bank-patch", "32", "--meta-patch", "16", "--meta-batch", "1", "--inner-steps", "1",
                   "--fo-frac", "0", "--meta-val-every", "1", "--inner-data", "son", "--task-images", "one", "--no-tf32", "--no-channels-last"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    rec = summary["stages"]["meta_x2_direct"]
    start = json.loads(open(out / "meta_x2_direct" / "log.jsonl").readline())
    assert start["config"]["task_images"] == "one" and start["config"]["inner_data"] == "son"
    vals = [json.loads(line) for line in open(out / "meta_x2_direct" / "log.jsonl") if '"val"' in line]
    assert vals, "no validation ran"
    scores = [v["psnr_1"] + v["psnr_10"] for v in vals]
    best_step = vals[int(np.argmax(scores))]["step"]
    assert rec["steps"] == best_step
    shipped, _ = model.load_weights(out / "mzsr_x2_direct.safetensors")
    snap, _ = model.load_weights(out / "meta_x2_direct" / f"val_step{best_step}.safetensors")
    assert all(torch.equal(shipped[k], snap[k]) for k in snap)
