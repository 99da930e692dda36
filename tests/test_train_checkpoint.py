"""Checkpoints: a training process killed with SIGKILL mid-run resumes exactly (same final
weights as an uninterrupted run), the last good checkpoint always loads, a failed write
never touches it, and a diverging run stops with a clear message keeping it."""
import os
import subprocess
import sys

import pytest
import torch

from trainproc import kill_at_checkpoint, png_folder, train_env
from mzsr_fast.train import checkpoint as ck

pytestmark = pytest.mark.slow

TINY = ["--patch", "16", "--meta-batch", "2", "--inner-steps", "1", "--n-train", "2", "--n-test", "2",
        "--val-every", "0", "--no-bar", "--threads", "1", "--ckpt-every", "1", "--log-every", "1", "--beta", "1e-3"]


def _images(tmp_path):
    return png_folder(tmp_path / "hr", [(20 + 4 * i, 24) for i in range(3)], seed=1)


def _cmd(data, out, steps, *extra):
    return [sys.executable, "-m", "mzsr_fast.train.meta", "--data", str(data), "--out", str(out),
            "--steps", str(steps)] + TINY + list(extra)


def test_sigkill_then_resume_is_exact(tmp_path):
    data = _images(tmp_path)
    steps = 8
    ref, run = tmp_path / "ref", tmp_path / "run"
    r = subprocess.run(_cmd(data, ref, steps), env=train_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]

    # a long run, killed with SIGKILL once a few checkpoints exist
    ckpt = run / "ckpt.pt"
    killed_at = kill_at_checkpoint(_cmd(data, run, 10_000), train_env(), ckpt, 3)
    st = ck.load_checkpoint(ckpt)  # the last good checkpoint is intact
    assert st["step"] >= killed_at and all(torch.isfinite(v).all() for v in st["params"].values())
    assert st["step"] < steps, "killed too late for the resume to be tested"

    r = subprocess.run(_cmd(data, run, steps, "--resume"), env=train_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = ck.load_checkpoint(ref / "ckpt.pt"), ck.load_checkpoint(ckpt)
    assert a["step"] == b["step"] == steps
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k]), (
            f"{k}: resumed run differs by {float((a['params'][k] - b['params'][k]).abs().max()):.3e}")
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    logs = (run / "log.jsonl").read_text()
    assert '"event": "resume"' in logs


def test_failed_write_keeps_last_good(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    ck.save_checkpoint(path, {"params": {"w": torch.ones(3)}, "step": 1, "rng": ck.rng_state()})
    real_save = torch.save

    def torn(obj, f, *a, **kw):
        f.write(b"PK\x03\x04 half a file")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(OSError, match="simulated"):
        ck.save_checkpoint(path, {"params": {"w": torch.zeros(3)}, "step": 2})
    monkeypatch.setattr(torch, "save", real_save)
    st = ck.load_checkpoint(path)
    assert st["step"] == 1 and torch.equal(st["params"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"], "temp file left behind"
    # killed between the two renames: only .prev exists -> still loadable
    ck.save_checkpoint(path, {"params": {"w": torch.full((3,), 2.0)}, "step": 3})
    os.unlink(path)
    assert ck.load_checkpoint(path)["step"] == 1
    # the RNG states round-trip
    ck.set_rng_state(st["rng"])
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="no loadable checkpoint"):
        ck.load_checkpoint(tmp_path / "bad.pt")


def test_nan_stops_with_message_and_keeps_checkpoint(tmp_path):
    from mzsr_fast.train import pretrain
    from mzsr_fast.train.common import TrainingDiverged

    g = torch.Generator().manual_seed(0)
    images = [(torch.rand(3, 24, 24, generator=g) * 255).to(torch.uint8) for _ in range(2)]
    p = pretrain.add_args(__import__("argparse").ArgumentParser())
    args = p.parse_args(["--out", str(tmp_path / "run"), "--steps", "50", "--patch", "16", "--batch", "2",
                         "--val-every", "0", "--no-bar", "--ckpt-every", "1", "--lr", "1e9", "--threads", "1"])
    with pytest.raises(TrainingDiverged, match="last good checkpoint") as ei:
        pretrain.run(args, images=images)
    print(ei.value)
    st = ck.load_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert all(torch.isfinite(v).all() for v in st["params"].values()), "a non-finite checkpoint was written"
