"""Shared by the training tests: folders of random training images, the environment of a
training subprocess, and SIGKILL once its checkpoint reaches a step."""
import os
import signal
import subprocess
import time

from mzsr_fast.train import checkpoint as ck


def png_folder(d, shapes, seed: int = 0):
    """Write one random RGB PNG ``{i}.png`` per ``(h, w)`` of ``shapes`` into the new folder
    ``d`` (uint8 noise from ``default_rng(seed)``, drawn in order); returns ``d``."""
    import numpy as np
    from PIL import Image

    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(shapes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return d


def train_env() -> dict:
    """The subprocess environment: one thread, this checkout first on the path."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd()] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def kill_at_checkpoint(cmd, env, ckpt, min_step: int, timeout: float = 240.0) -> int:
    """Start ``cmd``; once ``ckpt`` loads with ``step >= min_step``, SIGKILL the process.
    Returns the step seen (asserts the process was still running and was killed)."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    killed_at = None
    try:
        while time.time() < deadline:
            st = None
            if ckpt.exists():
                try:
                    st = ck.load_checkpoint(ckpt)
                except ValueError:
                    st = None  # being replaced right now: not an error of the file on disk
            if st is not None and st["step"] >= min_step:
                killed_at = st["step"]
                break
            assert p.poll() is None, p.stderr.read().decode()[-3000:]
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert killed_at is not None, "the run never wrote a checkpoint"
    assert p.returncode == -signal.SIGKILL
    return killed_at
