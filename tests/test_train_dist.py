"""Distributed meta-training: torchrun with 2 gloo CPU processes for a few meta-iterations
ends with identical weights on both ranks, equal (to float tolerance) to a 1-process run
over the same tasks."""
import subprocess
import sys

import pytest
import torch

from trainproc import png_folder, train_env
from mzsr_fast import model

pytestmark = pytest.mark.slow

TINY = ["--steps", "3", "--patch", "16", "--meta-batch", "2", "--inner-steps", "2", "--n-train", "2",
        "--n-test", "2", "--val-every", "0", "--no-bar", "--threads", "1", "--beta", "0.05",
        # plain SGD outside: Adam divides by sqrt(v) + 1e-8 and turns float-rounding noise of
        # near-zero gradient entries into full-size steps, which no tolerance could separate
        "--outer-optim", "sgd",
        "--pretrain-weight", "0.5", "--pretrain-batch", "2", "--save-rank-weights"]


def _images(tmp_path):
    return png_folder(tmp_path / "hr", [(24 + 4 * i, 28) for i in range(3)])


def test_two_gloo_ranks_match_one_process(tmp_path):
    data = _images(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    base = ["-m", "mzsr_fast.train.meta", "--data", str(data)] + TINY
    r1 = subprocess.run([sys.executable] + base + ["--out", str(one)], env=train_env(), capture_output=True,
                        text=True, timeout=300)
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        + base + ["--out", str(two)], env=train_env(), capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stderr[-3000:]
    w1, _ = model.load_weights(one / "rank0.safetensors")
    a, _ = model.load_weights(two / "rank0.safetensors")
    b, _ = model.load_weights(two / "rank1.safetensors")
    init = model.init_params(0)
    moved = 0.0
    for k in w1:
        assert torch.equal(a[k], b[k]), f"{k}: ranks differ by {float((a[k] - b[k]).abs().max()):.3e}"
        err = float((a[k] - w1[k]).abs().max())
        assert err <= 1e-6, f"{k}: 2-rank vs 1-process max err {err:.3e} (tol 1e-6)"
        moved = max(moved, float((w1[k] - init[k]).abs().max()))
    assert moved > 1e-4, "training did not move the weights: the comparison would be vacuous"
    logs = (two / "log.jsonl").read_text()
    assert '"world": 2' in logs
