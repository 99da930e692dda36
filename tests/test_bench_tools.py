"""The GPU check's analysis helpers that run without a GPU: the kernel-time breakdown's
name families and summary (benchmarks/kernel_breakdown.py)."""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
