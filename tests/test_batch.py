"""Folders and batches: ``mzsr-fast upscale IN... -o DIR`` and ``mzsr_fast.upscale_files``.

Tiny images (12x10 LR), tiny random weights, 1 step on the reference backend: these tests
are about files, names, kernels, failures and exit codes, not about the network."""
import errno
import io as _io
import os

import numpy as np
import pytest
import scipy.io
from PIL import Image

import mzsr_fast
from mzsr_fast import batch, cli, gaussian_kernel, model
from mzsr_fast import io as mio

RNG = np.random.default_rng(0)


@pytest.fixture()
def weights(tmp_path):
    f = tmp_path / "w.safetensors"
    model.save_weights(f, model.init_params(0), {"scale": 2, "subsampling": "direct"})
    return f


def _opts(weights):
    return dict(steps=1, weights=str(weights), backend="reference", device="cpu")


def _args(weights):
    return ["--steps", "1", "--weights", str(weights), "--backend", "reference", "--device", "cpu"]


def _png(path, h=12, w=10):
    Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def photos(tmp_path):
    """3 good images, a corrupt PNG and a text file."""
    d = tmp_path / "photos"
    d.mkdir()
    for n in ("a.png", "b.png", "c.jpg"):
        _png(d / n)
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    (d / "notes.txt").write_text("not an image\n")
    return d


def _snapshot(d):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir())}


def test_folder_cli_good_bad_and_skip_existing(photos, weights, tmp_path, capsys):
    out = tmp_path / "out" / "x2"  # nested: created
    rc = cli.main(["upscale", str(photos), "-o", str(out), "--quiet"] + _args(weights))
    cap = capsys.readouterr()
    assert rc == 2, cap
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.jpg"]  # no temp file either
    for p in out.iterdir():
        assert Image.open(p).size == (20, 24)
    err = cap.err.strip().splitlines()
    assert len(err) == 2, cap.err
    assert "broken.png" in err[0] and "cannot read image file" in err[0]
    assert "notes.txt" in err[1] and "cannot read image file" in err[1]
    assert all(line.startswith("mzsr-fast upscale: failed") for line in err)
    lines = cap.out.strip().splitlines()
    assert sum(" -> " in line for line in lines) == 3
    assert "3 done, 0 skipped, 2 failed of 5 files" in lines[-1]

    # second run: nothing is written, the three outputs are reported as skipped
    before = _snapshot(out)
    rc = cli.main(["upscale", str(photos), "-o", str(out), "--skip-existing", "--quiet"] + _args(weights))
    cap = capsys.readouterr()
    assert rc == 2
    assert _snapshot(out) == before
    assert sum(line.startswith("skipped ") for line in cap.out.splitlines()) == 3
    assert "0 done, 3 skipped, 2 failed of 5 files" in cap.out.strip().splitlines()[-1]
    assert len(cap.err.strip().splitlines()) == 2

    # without --skip-existing or --force an existing output is a failure of that file
    rc = cli.main(["upscale", str(photos / "a.png"), str(photos / "b.png"), "-o", str(out), "-q"] + _args(weights))
    cap = capsys.readouterr()
    assert rc == 2 and _snapshot(out) == before
    assert "exists" in cap.err and "--force" in cap.err and "0 done, 0 skipped, 2 failed" in cap.out


def test_folder_all_good_exit_zero_and_glob(photos, weights, tmp_path, capsys):
    out = tmp_path / "o"
    rc = cli.main(["upscale", str(photos / "*.png"), "-o", str(out), "--suffix", "_x2", "--ext", "bmp", "-q"]
                  + _args(weights))
    cap = capsys.readouterr()
    # the glob takes a.png, b.png and broken.png
    assert rc == 2 and sorted(p.name for p in out.iterdir()) == ["a_x2.bmp", "b_x2.bmp"], cap
    rc = cli.main(["upscale", str(photos / "a.png"), str(photos / "c.jpg"), "-o", str(out), "--force", "-q"]
                  + _args(weights))
    cap = capsys.readouterr()
    assert rc == 0 and cap.err == "" and "2 done, 0 skipped, 0 failed of 2 files" in cap.out
    assert (out / "a.png").exists() and (out / "c.jpg").exists()


def test_output_folder_is_the_input_folder(photos, weights, capsys):
    """Same name into the input folder is refused before any work; with a suffix it works,
    and a second run does not take the first run's outputs as inputs."""
    with pytest.raises(ValueError, match="would overwrite its input"):
        mzsr_fast.upscale_files([photos / "a.png"], photos, **_opts(weights))
    rc = cli.main(["upscale", str(photos / "a.png"), "-o", str(photos) + "/"] + _args(weights))
    assert rc == 2 and "would overwrite its input" in capsys.readouterr().err
    r1 = mzsr_fast.upscale_files(photos, photos, suffix="_sr", progress=False, **_opts(weights))
    assert [r.status for r in r1] == ["done", "done", "failed", "done", "failed"]
    r2 = mzsr_fast.upscale_files(photos, photos, suffix="_sr", skip_existing=True, progress=False, **_opts(weights))
    assert [r.path.name for r in r2] == [r.path.name for r in r1]
    assert [r.status for r in r2] == ["skipped", "skipped", "failed", "skipped", "failed"]


def test_per_image_kernel_rule(tmp_path, weights):
    """img.npy / img_kernel.mat beside an image is its kernel; others get `kernel`; two
    kernel files beside one image is that image's failure.  Outputs equal direct calls."""
    d = tmp_path / "in"
    d.mkdir()
    k_a, k_b, k_default = gaussian_kernel(5, 0.6), gaussian_kernel(7, 2.0), gaussian_kernel(3, 1.0)
    for n in ("a", "b", "c", "d"):
        _png(d / f"{n}.png", 14, 12)
    np.save(d / "a.npy", k_a)
    scipy.io.savemat(d / "b_kernel.mat", {"kernel": k_b})
    np.save(d / "d.npy", k_a)
    scipy.io.savemat(d / "d.mat", {"kernel": k_b})
    np.save(tmp_path / "default.npy", k_default)
    res = mzsr_fast.upscale_files(d, tmp_path / "out", kernel=tmp_path / "default.npy", progress=False,
                                  **_opts(weights))
    by = {r.path.name: r for r in res}
    assert [r.path.name for r in res] == ["a.png", "b.png", "c.png", "d.png"]  # kernel files are not inputs
    assert by["a.png"].kernel == d / "a.npy"
    assert by["b.png"].kernel == d / "b_kernel.mat"
    assert by["c.png"].kernel == tmp_path / "default.npy"
    assert by["d.png"].status == "failed" and "2 kernel files beside d.png" in by["d.png"].reason
    assert not (tmp_path / "out" / "d.png").exists()
    for name, k in (("a.png", k_a), ("b.png", k_b), ("c.png", k_default)):
        want = mzsr_fast.adapt_and_upscale(mio.load_image(d / name), kernel=k, **_opts(weights))
        got = Image.open(tmp_path / "out" / name)
        assert np.array_equal(np.asarray(got), np.asarray(want)), name
    # the rule also holds for one file given alone (CLI, legacy IN OUT form)
    assert cli.main(["upscale", str(d / "a.png"), str(tmp_path / "one.png"), "-q"] + _args(weights)) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "one.png")),
                          np.asarray(Image.open(tmp_path / "out" / "a.png")))


def test_upscale_files_results_and_hr(tmp_path, weights):
    """Per-file results: status, output, time, kernel, sizes; PSNR/SSIM against an hr folder
    (matched by name, then by stem); images without a ground truth get None."""
    lr, hr = tmp_path / "lr", tmp_path / "hr"
    lr.mkdir()
    hr.mkdir()
    for n in ("p", "q"):
        big = RNG.integers(0, 256, (24, 20, 3), dtype=np.uint8)
        Image.fromarray(big).save(hr / f"{n}.{'png' if n == 'p' else 'bmp'}")
        Image.fromarray(big[::2, ::2]).save(lr / f"{n}.png")
    _png(lr / "r.png")
    calls = []
    res = mzsr_fast.upscale_files([lr / "q.png", str(lr / "p.png"), lr / "r.png", lr / "missing.png"],
                                  tmp_path / "out", hr=hr, progress=False, on_result=calls.append, **_opts(weights))
    assert calls == res
    assert [(r.path.name, r.status) for r in res] == [("q.png", "done"), ("p.png", "done"), ("r.png", "done"),
                                                     ("missing.png", "failed")]
    assert "not found" in res[3].reason and res[3].output == tmp_path / "out" / "missing.png"
    for r in res[:2]:
        assert r.output == tmp_path / "out" / r.path.name and r.output.exists()
        assert r.size == (10, 12) and r.out_size == (20, 24) and r.seconds > 0 and r.kernel is None
        assert 0 < r.psnr < 100 and 0 < r.ssim <= 1 and r.bicubic_psnr is not None
        assert r.info["times"]["adapt"] >= 0
    assert res[2].psnr is None


def test_an_output_that_is_a_named_input(tmp_path, photos, weights):
    """A file named as an input is never overwritten by another input's output: that writer
    fails; the same file found in a folder is taken as an earlier run's output instead."""
    o = tmp_path / "o"
    o.mkdir()
    _png(o / "a_s.png")
    before = (o / "a_s.png").read_bytes()
    res = mzsr_fast.upscale_files([photos / "a.png", o / "a_s.png"], o, suffix="_s", progress=False, **_opts(weights))
    assert [(r.path.name, r.status) for r in res] == [("a.png", "failed"), ("a_s.png", "done")]
    assert "also an input" in res[0].reason and (o / "a_s.png").read_bytes() == before
    assert (o / "a_s_s.png").exists()


def test_upscale_files_bad_arguments(tmp_path, photos, weights):
    f = tmp_path / "file.png"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        mzsr_fast.upscale_files(photos, f, **_opts(weights))
    with pytest.raises(ValueError, match="unknown image extension"):
        mzsr_fast.upscale_files(photos, tmp_path / "o", ext="gif", **_opts(weights))
    with pytest.raises(ValueError, match="path separator"):
        mzsr_fast.upscale_files(photos, tmp_path / "o", suffix="a/b", **_opts(weights))
    with pytest.raises(ValueError, match="kernel file not found"):
        mzsr_fast.upscale_files(photos, tmp_path / "o", kernel=tmp_path / "nope.npy", **_opts(weights))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no input files"):
        mzsr_fast.upscale_files(empty, tmp_path / "o", **_opts(weights))
    with pytest.raises(TypeError, match="return_info"):
        mzsr_fast.upscale_files(photos, tmp_path / "o", return_info=True, **_opts(weights))
    with pytest.raises(ValueError, match="progress"):
        mzsr_fast.upscale_files(photos, tmp_path / "o", progress="yes", **_opts(weights))
    assert not (tmp_path / "o").exists()  # every check before the output folder is made
    res = mzsr_fast.upscale_files([str(tmp_path / "*.nothing")], tmp_path / "o", **_opts(weights))
    assert [r.status for r in res] == ["failed"] and "no file matches" in res[0].reason


def test_cli_needs_an_output(photos, weights, capsys):
    rc = cli.main(["upscale", str(photos / "a.png"), str(photos / "b.png"), str(photos / "c.jpg")] + _args(weights))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "-o" in err[0]


def test_one_file_with_o_is_a_file(photos, weights, tmp_path, capsys):
    """`IN -o OUT.png` is the legacy `IN OUT.png`; `IN -o DIR/` writes DIR/<name>."""
    assert cli.main(["upscale", str(photos / "a.png"), "-o", str(tmp_path / "x.png"), "-q"] + _args(weights)) == 0
    assert cli.main(["upscale", str(photos / "a.png"), str(tmp_path / "y.png"), "-q"] + _args(weights)) == 0
    assert (tmp_path / "x.png").read_bytes() == (tmp_path / "y.png").read_bytes()
    assert cli.main(["upscale", str(photos / "a.png"), "-o", str(tmp_path / "d") + "/", "-q"] + _args(weights)) == 0
    assert (tmp_path / "d" / "a.png").read_bytes() == (tmp_path / "x.png").read_bytes()
    out = capsys.readouterr().out
    assert "wrote" in out and "1 done, 0 skipped, 0 failed of 1 file " in out
    rc = cli.main(["upscale", str(photos / "a.png"), "-o", str(tmp_path / "x.png"), "--skip-existing"]
                  + _args(weights))
    assert rc == 0 and "skipped" in capsys.readouterr().out


def test_internal_error_exit_1_and_others_written(photos, weights, tmp_path, capsys, monkeypatch):
    """A failure that is not a bad input (a bug, a full disk) makes the exit code 1; the
    other files are still written, the failed one is absent, no temp file is left."""
    real = mzsr_fast.adapt_and_upscale

    def flaky(img, **kw):
        if img.size == (10, 12) and flaky.n == 1:
            flaky.n += 1
            raise RuntimeError("simulated bug")
        flaky.n += 1
        return real(img, **kw)

    flaky.n = 0
    monkeypatch.setattr(mzsr_fast, "adapt_and_upscale", flaky)
    out = tmp_path / "o"
    rc = cli.main(["upscale", str(photos / "a.png"), str(photos / "b.png"), str(photos / "c.jpg"), "-o", str(out),
                   "-q"] + _args(weights))
    cap = capsys.readouterr()
    assert rc == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.jpg"]
    assert cap.err.strip() == f"mzsr-fast upscale: failed {photos / 'b.png'}: simulated bug"


def test_half_written_output_leaves_nothing(photos, weights, tmp_path, capsys, monkeypatch):
    """The disk fills up while the second file is written: it is absent (not truncated), no
    temp file is left, the first and third are complete, exit code 1."""
    real_save = Image.Image.save
    count = {"n": 0}

    def save(self, fp, format=None, **kw):
        count["n"] += 1
        if count["n"] == 2:
            buf = _io.BytesIO()
            real_save(self, buf, format=format, **kw)
            fp.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, format=format, **kw)

    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "o"
    rc = cli.main(["upscale", str(photos / "a.png"), str(photos / "b.png"), str(photos / "c.jpg"), "-o", str(out),
                   "-q"] + _args(weights))
    cap = capsys.readouterr()
    monkeypatch.undo()
    assert rc == 1 and "No space left" in cap.err and "b.png" in cap.err
    assert sorted(os.listdir(out)) == ["a.png", "c.jpg"]
    for n in ("a.png", "c.jpg"):
        assert Image.open(out / n).size == (20, 24)


def test_expand_inputs(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    for n in ("b.png", "a.png", ".hidden.png", "a.npy", "k.mat", "t.txt"):
        (d / n).write_bytes(b"x")
    (d / "sub").mkdir()
    got = batch.expand_inputs([d, d / "a.png", str(d / "*.png")])
    assert [(p.name, prob) for p, prob in got] == [("a.png", None), ("b.png", None), ("t.txt", None)]
    assert batch.expand_inputs(str(tmp_path / "none*.png"))[0][1].startswith("no file matches")
    assert batch.kernel_beside(d / "a.png") == d / "a.npy"
    assert batch.kernel_beside(d / "b.png") is None


def test_kernel_estimate_per_image_unless_one_is_beside(tmp_path, weights, capsys):
    """--kernel estimate is not a file: it is passed on (a blind estimate per image), and a
    kernel file beside an image still wins."""
    d = tmp_path / "in"
    d.mkdir()
    for n in ("a", "b"):
        _png(d / f"{n}.png", 20, 18)
    np.save(d / "a.npy", gaussian_kernel(5, 1.0))
    rc = cli.main(["upscale", str(d), "-o", str(tmp_path / "out"), "--kernel", "estimate", "-q"] + _args(weights))
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = {line.split(" -> ")[0]: line for line in out.splitlines() if " -> " in line}
    assert "kernel a.npy" in lines[str(d / "a.png")]
    assert "kernel estimated (Gaussian variance" in lines[str(d / "b.png")]
