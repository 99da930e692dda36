"""Progress on long work (mzsr_fast.progress convention): the folder loop of
upscale_files / `mzsr-fast upscale DIR -o OUT`, ZSSR iterations, training (train/log.py
make_bar).  A bar in a terminal; nothing extra when stderr is a pipe or a file; a
callback(done, total, desc) for pipelines; --quiet turns bars off."""
import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest
from PIL import Image

import mzsr_fast
from mzsr_fast import model, zssr
from mzsr_fast.train import log as tlog
from mzsr_fast.zssr import ZSSRConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(0)


@pytest.fixture()
def work(tmp_path):
    """in/: two good 12x10 images and one corrupt file; w.safetensors: tiny weights."""
    d = tmp_path / "in"
    d.mkdir()
    for n in ("a.png", "b.png"):
        Image.fromarray(RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(d / n)
    (d / "c.png").write_bytes(b"garbage")
    model.save_weights(tmp_path / "w.safetensors", model.init_params(0))
    return tmp_path


def _opts(work):
    return dict(steps=1, weights=str(work / "w.safetensors"), backend="reference", device="cpu")


def test_upscale_files_callback(work):
    calls = []
    res = mzsr_fast.upscale_files(work / "in", work / "out", progress=lambda *a: calls.append(a), **_opts(work))
    assert [r.status for r in res] == ["done", "done", "failed"]
    loop = [c for c in calls if c[2] == "upscale"]  # (tiles of large images would come with their own desc)
    assert loop == [(0, 3, "upscale"), (1, 3, "upscale"), (2, 3, "upscale"), (3, 3, "upscale")]


def test_zssr_callback():
    cfg = ZSSRConfig(max_iters=4, crop_size=16, back_projection_iters=1)
    calls = []
    _, info = zssr.zssr_upscale(RNG.integers(0, 256, (14, 12, 3), dtype=np.uint8), 2, None, cfg, device="cpu",
                                seed=0, progress=lambda *a: calls.append(a), return_info=True)
    train = [c for c in calls if c[2] == "ZSSR train"]
    ens = [c for c in calls if c[2] == "ZSSR ensemble"]
    assert train == [(i, 4, "ZSSR train") for i in range(info["iterations"] + 1)] and info["iterations"] == 4
    assert ens == [(i, 8, "ZSSR ensemble") for i in range(9)]
    with pytest.raises(ValueError, match="progress"):
        zssr.zssr_upscale(np.zeros((14, 12, 3), np.uint8), 2, None, cfg, progress="yes")


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_make_bar_follows_the_convention(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    assert isinstance(tlog.make_bar(10, 0, "pretrain"), tlog._NoBar)
    forced = tlog.make_bar(10, 0, "pretrain", progress=True)
    assert not isinstance(forced, tlog._NoBar)
    forced.close()
    assert "pretrain" in sys.stderr.getvalue()  # True: a bar even off a terminal
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(tlog.make_bar(10, 0, "pretrain", enabled=False, progress=True), tlog._NoBar)
    calls = []
    b = tlog.make_bar(10, 4, "meta-train", progress=lambda *a: calls.append(a))
    b.update(1)
    b.set_postfix(loss="0.1")
    b.set_postfix_str("x")
    b.close()
    assert calls == [(4, 10, "meta-train"), (5, 10, "meta-train")]
    assert sys.stderr.getvalue() == ""
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    b = tlog.make_bar(10, 0, "pretrain")  # a terminal: a bar
    b.update(3)
    b.close()
    assert "pretrain" in tty.getvalue() and "3/10" in tty.getvalue()
    monkeypatch.setattr(sys, "stderr", _TTY())
    assert isinstance(tlog.make_bar(10, 0, "pretrain", progress=False), tlog._NoBar)
    with pytest.raises(ValueError, match="progress"):
        tlog.make_bar(10, 0, "pretrain", progress=3)


# one process runs the three long loops: the CLI on a folder, the ZSSR CLI, a training bar
_SCRIPT = r"""
import sys
from mzsr_fast import cli
from mzsr_fast.train.log import make_bar
w = sys.argv[1]
opts = ["--steps", "1", "--weights", w + "/w.safetensors", "--backend", "reference", "--device", "cpu"]
print("rc", cli.main(["upscale", w + "/in", "-o", w + "/out", "--force"] + opts + sys.argv[2:]))
print("rc", cli.main(["zssr", w + "/in/a.png", w + "/z.png", "--max-iters", "3", "--device", "cpu", "--seed", "0",
                      "--force"] + sys.argv[2:]))
if "--quiet" not in sys.argv:
    b = make_bar(5, 0, "pretrain")
    b.update(5)
    b.close()
"""


def _run_script(work, stderr, *extra):
    script = work / "s.py"
    script.write_text(_SCRIPT)
    with open(work / "stdout.txt", "w") as out:
        p = subprocess.Popen([sys.executable, str(script), str(work)] + list(extra), stdout=out, stderr=stderr,
                             cwd=str(work), env=dict(os.environ, OMP_NUM_THREADS="1"))
    return p


def _check_stdout(work):
    out = (work / "stdout.txt").read_text()
    assert out.count("rc ") == 2 and "rc 2" in out and "rc 0" in out, out
    assert "\r" not in out and "%|" not in out, out  # bars never go to stdout
    return out


def test_nothing_extra_when_not_a_terminal(work):
    """stderr a pipe: exactly the one failure line; no bar, no carriage return."""
    p = _run_script(work, subprocess.PIPE)
    _, err = p.communicate(timeout=600)
    _check_stdout(work)
    err = err.decode()
    lines = err.splitlines()
    want = f"mzsr-fast upscale: failed {work / 'in' / 'c.png'}: cannot read"
    assert len(lines) == 1 and lines[0].startswith(want), err
    assert "\r" not in err and "it/s" not in err and "ZSSR" not in err and "pretrain" not in err


def _run_in_pty(work, *extra) -> str:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    p = _run_script(work, slave, *extra)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert p.wait(timeout=600) is not None
    return b"".join(chunks).decode(errors="replace")


def test_bars_in_a_terminal_and_quiet(work):
    tty = _run_in_pty(work)
    _check_stdout(work)
    # the folder loop (3 images), ZSSR training and ensemble, training: bars with counts
    assert "upscale" in tty and "/3 [" in tty, tty
    assert "ZSSR train" in tty and "/3 [" in tty and "ZSSR ensemble" in tty and "/8 [" in tty, tty
    assert "pretrain" in tty and "5/5" in tty, tty
    assert "failed" in tty and "c.png" in tty
    tty = _run_in_pty(work, "--quiet")
    _check_stdout(work)
    assert "%|" not in tty and "ZSSR" not in tty and "/3 [" not in tty, tty
    assert "failed" in tty and "c.png" in tty  # errors still show
