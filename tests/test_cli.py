"""The mzsr-fast CLI: upscale (with --hr), eval table, info, and its file-safety rules."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mzsr_fast import cli, degrade, gaussian_kernel, model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture()
def weights(tmp_path):
    f = tmp_path / "w.safetensors"
    model.save_weights(f, model.init_params(0), {"scale": 2, "subsampling": "direct"})
    return str(f)


@pytest.fixture()
def lr_png(tmp_path):
    rng = np.random.default_rng(0)
    hr = (rng.random((24, 20, 3)) * 255).astype(np.uint8)
    k = gaussian_kernel(5, 1.0)
    np.save(tmp_path / "k.npy", k)
    Image.fromarray(hr).save(tmp_path / "hr.png")
    Image.fromarray(degrade(hr, k, 2)).save(tmp_path / "lr.png")
    return tmp_path


def test_upscale_with_hr(lr_png, weights, capsys):
    out = lr_png / "sr.png"
    rc = cli.main(["upscale", str(lr_png / "lr.png"), str(out), "--kernel", str(lr_png / "k.npy"), "--steps", "2",
                   "--weights", weights, "--backend", "reference", "--hr", str(lr_png / "hr.png")])
    text = capsys.readouterr().out
    assert rc == 0 and out.exists(), text
    assert Image.open(out).size == (20, 24)
    assert "PSNR/SSIM" in text and "bicubic" in text and " s " in text


def test_upscale_file_safety(lr_png, weights, capsys):
    args = ["--steps", "1", "--weights", weights, "--backend", "reference"]
    inp = str(lr_png / "lr.png")
    before = open(inp, "rb").read()
    assert cli.main(["upscale", inp, inp, "--force"] + args) == 2
    assert open(inp, "rb").read() == before, "input was modified"
    out = lr_png / "exists.png"
    out.write_bytes(b"keep")
    assert cli.main(["upscale", inp, str(out)] + args) == 2
    assert out.read_bytes() == b"keep"
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err and len(err.strip().splitlines()) == 2
    assert cli.main(["upscale", str(lr_png / "missing.png"), str(lr_png / "o.png")] + args) == 2
    (lr_png / "bad.png").write_bytes(b"not a png")
    assert cli.main(["upscale", str(lr_png / "bad.png"), str(lr_png / "o.png")] + args) == 2
    assert not (lr_png / "o.png").exists()


def test_eval_prints_table(tmp_path, weights, capsys, data_dir):
    d = tmp_path / "hr"
    d.mkdir()
    img = np.asarray(Image.open(os.path.join(data_dir, "set5", "butterfly.png")).convert("RGB"))[:64, :56]
    Image.fromarray(img).save(d / "crop.png")
    rc = cli.main(["eval", "--hr-dir", str(d), "--setting", "g^d_2.0", "--steps", "0,1", "--weights", weights,
                   "--backend", "reference", "--json", str(tmp_path / "r.json")])
    cap = capsys.readouterr()
    out = cap.out
    assert rc == 0, cap.err
    assert "crop.png" in out and "mean" in out and "MZSR(1)" in out and "bicubic" in out
    assert (tmp_path / "r.json").exists()


def test_info_runs():
    r = subprocess.run([sys.executable, "-m", "mzsr_fast.cli", "info"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "reference" in r.stdout and "extension:" in r.stdout and "auto ->" in r.stdout


@pytest.mark.skipif(shutil.which("mzsr-fast") is None, reason="console script not installed (pip install -e .)")
def test_console_script_bad_args():
    r = subprocess.run(["mzsr-fast", "eval", "--hr-dir", "/nonexistent", "--setting", "g^d_2.0"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "not a folder" in r.stderr


def test_eval_json_folder_checked_first(tmp_path, capsys):
    """A --json path in a missing folder fails at once (exit 2, one line), before any image."""
    rc = cli.main(["eval", "--hr-dir", str(tmp_path), "--setting", "g^d_2.0", "--json", str(tmp_path / "no" / "r.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "--json" in err and len(err.strip().splitlines()) == 1


def test_upscale_max_memory_and_crops(lr_png, weights, capsys):
    """--max-memory reaches the API (a budget that fits: the same file; a budget too small or
    unparsable: a one-line error, exit 2); --adapt-on crops runs.  Tiling itself is tested
    in tests/test_tiling.py."""
    base = ["--kernel", str(lr_png / "k.npy"), "--steps", "2", "--weights", weights, "--backend", "reference",
            "--device", "cpu"]
    inp = str(lr_png / "lr.png")
    assert cli.main(["upscale", inp, str(lr_png / "a.png")] + base) == 0
    assert cli.main(["upscale", inp, str(lr_png / "b.png"), "--max-memory", "1GiB"] + base) == 0
    a = np.asarray(Image.open(lr_png / "a.png")).astype(int)
    b = np.asarray(Image.open(lr_png / "b.png")).astype(int)
    assert np.array_equal(a, b)
    assert cli.main(["upscale", inp, str(lr_png / "c.png"), "--adapt-on", "crops"] + base) == 0
    capsys.readouterr()
    assert cli.main(["upscale", inp, str(lr_png / "d.png"), "--max-memory", "lots"] + base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_memory" in err[0], err
    assert cli.main(["upscale", inp, str(lr_png / "e.png"), "--max-memory", "300KiB"] + base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "too small" in err[0], err


def test_upscale_quality_presets_and_overrides(lr_png, weights, capsys):
    """--quality reaches the API (fast = 1 step + 20 rounds of back-projection: the same
    file as those options given one by one), an explicit option overrides the preset, and
    the line reports the steps that ran."""
    base = ["--kernel", str(lr_png / "k.npy"), "--weights", weights, "--backend", "reference", "--device", "cpu", "-q"]
    inp = str(lr_png / "lr.png")

    def run(name, *opts):
        assert cli.main(["upscale", inp, str(lr_png / name)] + list(opts) + base) == 0
        return capsys.readouterr().out, np.asarray(Image.open(lr_png / name))

    out, fast = run("f.png", "--quality", "fast")
    assert "1 steps" in out, out
    _, same = run("s.png", "--steps", "1", "--back-projection", "20")
    _, plain = run("p.png", "--steps", "1", "--back-projection", "0")
    assert np.array_equal(fast, same) and not np.array_equal(fast, plain)
    out, over = run("o.png", "--quality", "fast", "--steps", "2", "--back-projection", "0")
    _, two = run("t.png", "--steps", "2")
    assert "2 steps" in out and np.array_equal(over, two)
    with pytest.raises(SystemExit) as e:  # argparse: one line, exit 2
        cli.main(["upscale", inp, str(lr_png / "i.png"), "--quality", "ultra"] + base)
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_upscale_estimate_and_save_kernel(tmp_path, capsys):
    """--kernel estimate --save-kernel F.npy: the kernel the call used is written (atomic .npy,
    sums to 1), refused for several inputs, a non-.npy name, or an existing file without --force."""
    img = np.asarray(Image.open(os.path.join(REPO, "mzsr_fast", "data", "butterfly_hr.png")).convert("RGB"))[64:160, 64:160]
    Image.fromarray(degrade(img, gaussian_kernel(15, 1.5), 2)).save(tmp_path / "lr.png")
    kf = tmp_path / "k.npy"
    args = ["--steps", "1", "--backend", "cpu"]
    rc = cli.main(["upscale", str(tmp_path / "lr.png"), str(tmp_path / "sr.png"), "--kernel", "estimate",
                   "--save-kernel", str(kf)] + args)
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    k = np.load(kf)
    assert k.shape == (15, 15) and abs(k.sum() - 1) < 1e-9 and "kernel estimated" in cap.out
    assert cli.main(["upscale", str(tmp_path / "lr.png"), str(tmp_path / "sr2.png"), "--kernel", "estimate",
                     "--save-kernel", str(kf)] + args) == 2  # exists
    assert cli.main(["upscale", str(tmp_path / "lr.png"), str(tmp_path / "sr3.png"), "--kernel", "estimate",
                     "--save-kernel", str(tmp_path / "k.txt")] + args) == 2
    assert cli.main(["upscale", str(tmp_path / "lr.png"), str(tmp_path / "lr.png"), "-o", str(tmp_path / "out"),
                     "--save-kernel", str(tmp_path / "k2.npy")] + args) == 2
    err = capsys.readouterr().err
    assert "exists" in err and ".npy" in err and "one input" in err
    assert not (tmp_path / "sr2.png").exists() and not (tmp_path / "k2.npy").exists()


def test_eval_kernel_modes_and_random_setting(tmp_path, weights, capsys, data_dir):
    d = tmp_path / "hr"
    d.mkdir()
    img = np.asarray(Image.open(os.path.join(data_dir, "set5", "butterfly.png")).convert("RGB"))[:64, :56]
    Image.fromarray(img).save(d / "crop.png")
    base = ["eval", "--hr-dir", str(d), "--steps", "1", "--weights", weights, "--backend", "reference"]
    rc = cli.main(base + ["--setting", "random", "--seed", "3", "--kernel", "none", "--quality", "fast",
                          "--json", str(tmp_path / "r.json")])
    assert rc == 0, capsys.readouterr().err
    import json

    res = json.loads((tmp_path / "r.json").read_text())
    assert (res["setting"], res["kernel"], res["quality"], res["seed"]) == ("random", "none", "fast", 3)
    # the random setting's kernel is the seeded one: evaluate with the true kernel equals a manual call
    from mzsr_fast import adapt_and_upscale, metrics
    from mzsr_fast.kernel_estimate import random_kernels

    r = cli.evaluate(d, "random", [1], weights=weights, backend="reference", seed=3, progress=False)
    k = random_kernels(1, seed=3)[0]
    lr = degrade(img, k, 2, "direct")
    want = metrics.psnr_y(adapt_and_upscale(lr, kernel=k, steps=1, weights=weights, backend="reference"), img, 2)
    assert abs(r["rows"][0]["mzsr1"][0] - want) < 1e-9
    with pytest.raises(ValueError, match="kernel must be"):
        cli.evaluate(d, "g^d_2.0", [1], kernel_mode="bogus", progress=False)
