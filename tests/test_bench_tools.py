"""The benchmark tools that run without a GPU: the harness (benchmarks/harness.py: results
table, machine kind, providers) and one real benchmark session writing rows, the README
renderer (benchmarks/render.py), the ZSSR curve of report_vs_zssr, the Set5 loader, and the
GPU check's kernel-time breakdown (benchmarks/kernel_breakdown.py)."""
from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks import harness as H  # noqa: E402
from benchmarks import render as R  # noqa: E402


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "benchmarks", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def kb():
    return _load("kernel_breakdown")


@pytest.mark.parametrize("name,fam", [
    ("void mzsr::mzsr_conv3x3_fwd_halo_bf16_nhwc<__nv_bfloat16>(Conv3x3Params)", "fwd"),
    ("void mzsr::mzsr_conv3x3_dgrad_halo_bf16_nhwc<float>(Conv3x3Params)", "dgrad"),
    ("void mzsr::mzsr_conv3x3_thin_in_nhwc<__nv_bfloat16>(Conv3x3Params)", "thin"),
    ("void mzsr::mzsr_conv3x3_wgrad_halo_bf16_nhwc<float>(Conv3x3WgradParams)", "wgrad"),
    ("void mzsr::mzsr_conv3x3_wgrad_thin_nhwc<true, float>(Conv3x3WgradParams)", "wgrad"),
    ("mzsr::mzsr_conv3x3_wgrad_reduce(Conv3x3WgradParams)", "reduce"),
    ("mzsr_conv3x3_wgrad_row3_partial_nhwc", "wgrad"),
    ("mzsr_wgrad_reduce_sgd", "reduce"),
    ("mzsr_conv3x3_dgrad_relumask_nhwc", "dgrad"),
    ("mzsr_conv3x3_fwd_relu_nhwc", "fwd"),
    ("void mzsr::mzsr_l1_loss_grad_partial(L1Params)", "loss"),
    ("void mzsr::mzsr_sgd_update_multi_tensor(SgdParams)", "sgd"),
    ("void mzsr::mzsr_conv3x3_pack_kernel(Conv3x3PackParams)", "elementwise"),
    ("sm90_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32_nhwckrsc_nhwc", "fwd"),
    ("sm90_xmma_dgrad_implicit_gemm_tf32f32", "dgrad"),
    ("sm80_xmma_wgrad_implicit_gemm_tf32f32", "wgrad"),
    ("some_unknown_kernel", "other"),
])
def test_kernel_families(kb, name, fam):
    assert kb.family(name) == fam, f"{name!r}: {kb.family(name)} != {fam}"


def test_summary_totals_and_order(kb):
    rows = [("a_conv3x3_fwd", 30.0, 3), ("b_dgrad", 50.0, 5), ("c_wgrad_reduce", 5.0, 5), ("idle", 0.0, 1),
            ("d_conv3x3_fwd", 10.0, 1)]
    s = kb.summarize(rows, top=3)
    assert s["total_us"] == 95.0 and s["launches"] == 14  # zero-time rows dropped
    assert s["families"] == {"dgrad": 50.0, "fwd": 40.0, "reduce": 5.0}
    assert [t["name"] for t in s["top"]] == ["b_dgrad", "a_conv3x3_fwd", "d_conv3x3_fwd"]
    assert s["top"][1]["mean_us"] == 10.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU exit")
def test_breakdown_needs_cuda(kb, tmp_path, capsys):
    assert kb.main(["--out", str(tmp_path / "b.json")]) == 2
    assert "needs CUDA" in capsys.readouterr().out
    assert not (tmp_path / "b.json").exists()


def test_device_entries_only(kb):
    """CPU ops (whose device time includes their kernels) are left out of the sum."""
    from types import SimpleNamespace as NS

    from torch.autograd import DeviceType

    assert kb._on_device(NS(device_type=DeviceType.CUDA))
    assert not kb._on_device(NS(device_type=DeviceType.CPU))
    assert kb._on_device(NS())  # older entries without the attribute: kept
    assert kb._device_us(NS(device_time_total=12.5)) == 12.5
    assert kb._device_us(NS(cuda_time_total=3.0)) == 3.0
    assert kb._device_us(NS()) == 0.0


# ----------------------------------------------------------------------------- harness
def _row(**kw):
    r = dict(date="2026-12-04 10:00", commit="abc", benchmark="e2e/adapt_and_upscale_steps10", provider="cpu_fp32",
             size="128", median="1.5", min="1.0", max="2.0", unit="s", source="test")
    r.update(kw)
    return r


def test_append_rows_is_append_only(tmp_path):
    p = str(tmp_path / "m.csv")
    H.append_rows(p, [_row()])
    H.append_rows(p, [_row(provider="reference_fp32", median="3")])
    lines = open(p).read().splitlines()
    assert lines[0] == ",".join(H.COLUMNS) and len(lines) == 3  # one header, rows appended
    rows = H.read_rows(p)
    assert [r["provider"] for r in rows] == ["cpu_fp32", "reference_fp32"] and rows[1]["median"] == 3.0
    with pytest.raises(ValueError, match="lacks columns"):
        H.append_rows(p, [{"date": "x"}])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        H.append_rows(str(bad), [_row()])
    assert bad.read_text() == "a,b\n1,2\n"
    H.append_rows(p, [])  # nothing to add: file untouched
    assert len(open(p).read().splitlines()) == 3


def test_aggregate_groups_rounds():
    recs = [("e2e/x", "cpu_fp32", "128", "s", [3.0]), ("e2e/x", "reference_fp32", "128", "s", [9.0]),
            ("e2e/x", "cpu_fp32", "128", "s", [1.0]), ("e2e/x", "cpu_fp32", "128", "s", [2.0, 10.0])]
    rows = H.aggregate(recs, "d", "c", "s")
    assert [(r["provider"], r["median"], r["min"], r["max"]) for r in rows] == [
        ("cpu_fp32", "2.5", "1", "10"), ("reference_fp32", "9", "9", "9")]


def test_machine_kind(monkeypatch):
    monkeypatch.delenv("MZSR_BENCH_MACHINE", raising=False)
    assert H.machine_kind({"gpu": "NVIDIA H100 80GB HBM3"}) == "h100"
    assert H.machine_kind({"gpu": "NVIDIA A100-SXM4-80GB"}) == "a100"
    assert H.machine_kind({"cpu": "AMD EPYC", "cpu_count": 2}) == "cpu-amd-epyc-2c"
    assert H.machine_kind({"cpu": "Intel(R) Xeon(R) Processor", "cpu_count": 2}) == "cpu-intel-xeon-processor-2c"
    monkeypatch.setenv("MZSR_BENCH_MACHINE", "my-box")
    assert H.machine_kind({"gpu": "NVIDIA H100"}) == "my-box"
    monkeypatch.setenv("MZSR_BENCH_MACHINE", "My Box/1")
    with pytest.raises(ValueError, match="MZSR_BENCH_MACHINE"):
        H.machine_kind()


def test_providers_and_skips(monkeypatch):
    monkeypatch.setenv("MZSR_BENCH_DEVICE", "cpu")
    provs = H.providers()
    assert provs[0] == "reference_fp32" and {"triton_fp32", "cuda_fp32"} <= set(provs)  # listed, then skipped
    assert H.split_provider("cuda_bf16:3") == ("cuda", "bf16", "3")
    assert H.split_provider("module_sgd_fp32")[0] == "module"
    assert H.provider_skip("reference_fp32") is None
    assert "cuda" in H.provider_skip("cuda_fp32")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "interpreter" in H.provider_skip("triton_fp32")
    with pytest.raises(ValueError, match="MZSR_BENCH_ROUNDS"):
        monkeypatch.setenv("MZSR_BENCH_ROUNDS", "0")
        H.rounds(3, 7)


def test_e2e_session_writes_interleaved_rows(tmp_path):
    """One real benchmark session (tiny): every round of every provider runs before the next
    round, the unavailable providers skip with their reason, and the session appends one row
    per (provider, size) with min <= median <= max to the table it is given."""
    out = tmp_path / "t.csv"
    env = dict(os.environ, MZSR_BENCH_DEVICE="cpu", MZSR_BENCH_E2E_SIZES="24", MZSR_BENCH_STEPS="2",
               MZSR_BENCH_ROUNDS="2", OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    env.pop("TRITON_INTERPRET", None)  # the test session's; the harness skips triton on the CPU anyway
    r = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/e2e", "--benchmark-only", "-v", "-rs",
                        "-p", "no:cacheprovider", "--results-csv", str(out),
                        "-k", "reference or cpu_fp32 or cuda or triton"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    ran = [ln.split("[")[1].split("]")[0] for ln in r.stdout.splitlines() if "PASSED" in ln]
    assert ran == ["r0-24-steps2-reference_fp32", "r0-24-steps2-cpu_fp32", "r1-24-steps2-reference_fp32",
                   "r1-24-steps2-cpu_fp32"] or ran == ["r0-24-steps2-reference_fp32", "r1-24-steps2-reference_fp32"]
    assert "SKIPPED" in r.stdout and "cuda" in r.stdout
    rows = H.read_rows(str(out))
    assert [(x["benchmark"], x["provider"], x["size"]) for x in rows] == [
        ("e2e/adapt_and_upscale_steps2", p.split("-")[-1], "24") for p in ran[: len(ran) // 2]]
    for x in rows:
        assert 0 < x["min"] <= x["median"] <= x["max"] and x["unit"] == "s" and x["commit"]


def test_record_disabled_benchmark_records_nothing():
    class B:  # what pytest-benchmark gives under --benchmark-disable: no stats
        extra_info: dict = {}
        stats = None

    n = len(H.RECORDS)
    H.record(B(), "e2e/x", "cpu_fp32", 8, metrics={"psnr_y": (30.0, "dB")})
    assert len(H.RECORDS) == n and B.extra_info["psnr_y"] == 30.0


# ----------------------------------------------------------------------------- render
def test_render_block_and_markers(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    p = str(res / "box.csv")
    H.append_rows(p, [_row(provider="reference_fp32", median="4", min="4", max="4"),
                      _row(provider="cpu_fp32", median="1", min="0.9", max="1.2"),
                      _row(provider="cpu_bf16", median="2", min="2", max="2"),
                      _row(provider="cpu_fp32", median="8", date="2026-12-01 10:00"),  # older: not shown
                      _row(benchmark="ops/step", provider="cpu_fp32", median="0.1")])
    block = R.render_block(str(res))
    assert "**box**" in block
    lines = [ln for ln in block.splitlines() if ln.startswith("| 128 |")]
    assert len(lines) == 2  # the fastest cpu precision and the reference
    assert lines[0].startswith("| 128 | cpu_fp32 | 1 s |") and "4.00x" in lines[0]
    assert lines[1].startswith("| 128 | reference_fp32 | 4 s |") and "1.00x" in lines[1]
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{R.START}\nstale\n{R.END}\nrest\n")
    assert R.main(["--readme", str(readme), "--results", str(res), "--check"]) == 1
    assert R.main(["--readme", str(readme), "--results", str(res), "--no-plots"]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n" + R.START) and text.endswith(R.END + "\nrest\n") and "stale" not in text
    assert R.main(["--readme", str(readme), "--results", str(res), "--check"]) == 0
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="markers"):
        R.main(["--readme", str(readme), "--results", str(res)])
    assert readme.read_text() == "no markers\n"


def test_committed_tables_are_well_formed():
    """Every committed results table has the harness's header and numeric, ordered values."""
    paths = [os.path.join(H.RESULTS, f) for f in os.listdir(H.RESULTS) if f.endswith(".csv")]
    assert paths
    for p in paths:
        with open(p, newline="") as f:
            assert tuple(next(csv.reader(f))) == H.COLUMNS, p
        for r in H.read_rows(p):
            assert r["min"] <= r["median"] <= r["max"], (p, r)


def test_legacy_import_is_committed_and_idempotent(tmp_path):
    """Every row benchmarks/import_legacy.py derives (from the old JSONs and the numbers that
    source comments quoted) is in the committed tables, and importing into a table twice
    adds nothing the second time."""
    il = _load("import_legacy")
    tables = il.legacy_rows()
    for path, rows in tables.items():
        assert rows and not il.missing_rows(path, rows), f"{path}: run python -m benchmarks.import_legacy"
    path, rows = next(iter(tables.items()))
    t = str(tmp_path / "t.csv")
    H.append_rows(t, il.missing_rows(t, rows[:5]))
    assert il.missing_rows(t, rows[:5]) == [] and len(H.read_rows(t)) == 5


def _rows(table, benchmark, **match):
    return [r for r in H.read_rows(os.path.join(H.RESULTS, table)) if r["benchmark"] == benchmark
            and all(r[k] == v for k, v in match.items())]


def test_kept_variants_have_their_winning_rows():
    """The switches the code keeps cite a row where they win (issue 20): the CPU bf16 mode
    (backends/cpu.py, csrc/cpu/conv_bf16.inc) and Winograd (csrc/cpu/cpu_ops.cpp) in the
    interleaved whole call on the AMD Zen 4 VM; the auto order on CUDA (backends/__init__.py)."""
    e2e = "e2e/adapt_and_upscale_steps10"
    run = {r["provider"]: r["median"] for r in _rows("cpu-amd-epyc-2c.csv", e2e, date="2026-11-26 12:24")}
    assert run["cpu_bf16"] < run["cpu_fp32"] < run["cpu_fp32:direct"], run
    from mzsr_fast import backends

    lat = {r["provider"]: r["median"] for r in _rows("h100.csv", "quality/mzsr10_g^d_2.0/latency",
                                                     date="2026-11-26 10:27")}
    for prec in ("fp32", "tf32", "bf16"):
        order = backends._AUTO[("cuda", prec)]
        times = [lat[f"{b}_{prec}"] for b in order if f"{b}_{prec}" in lat]
        assert len(times) >= 2 and times == sorted(times), (prec, order, lat)


# ----------------------------------------------------------------------------- quality tools
def test_zssr_curve_run_matches_zssr_upscale():
    """report_vs_zssr's ZSSR (the same trainer, scored during training) gives zssr_upscale's
    output bit for bit, and one curve point per checkpoint reached."""
    from benchmarks.quality.report_vs_zssr import zssr_with_curve
    from mzsr_fast.zssr import ZSSRConfig, zssr_upscale

    hr = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    lr = np.ascontiguousarray(hr[::2, ::2])
    cfg = ZSSRConfig(max_iters=5, output_flip=False, crop_size=24, back_projection_iters=2)
    a = zssr_upscale(lr, 2, None, cfg, device="cpu", progress=False, seed=0)
    b, info, curve = zssr_with_curve(lr, hr, 2, None, cfg, "cpu", 0, (2, 4, 99))
    assert np.array_equal(a, b) and info["iterations"] == 5
    assert [c["iteration"] for c in curve] == [2, 4] and curve[0]["seconds"] < curve[1]["seconds"] <= info["seconds"]
    assert all(np.isfinite(c["psnr"]) for c in curve)


def test_set5_g20_loader(data_dir):
    """The benchmarks' loader of the official Set5 g^d_2.0 LR images: five (LR, HR) pairs at
    x2 and the 21x21 kernel summing to 1."""
    k, imgs = H.set5_g20(data_dir)
    assert k.shape == (21, 21) and abs(float(k.sum()) - 1) < 1e-6
    assert sorted(imgs) == ["baby.png", "bird.png", "butterfly.png", "head.png", "woman.png"]
    for lr, hr in imgs.values():
        assert lr.dtype == hr.dtype == np.uint8 and hr.shape == (2 * lr.shape[0], 2 * lr.shape[1], 3)
