"""Shared by the SIGKILL-and-resume tests: run a training process until its checkpoint
reaches a step, then SIGKILL it."""
import signal
import subprocess
import time

from mzsr_fast.train import checkpoint as ck


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
