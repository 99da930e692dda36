"""The network (SPEC section 1): size, functional vs module view, init, weights I/O."""
import json

import pytest
import torch
from torch.func import functional_call

from mzsr_fast import model


def test_param_count_matches_spec():
    assert model.num_params() == 225_091
    p = model.init_params(0)
    assert sum(v.numel() for v in p.values()) == 225_091
    assert list(p) == model.param_names()


def test_functional_equals_module_view():
    p = model.init_params(3)
    x = torch.rand(2, 3, 9, 11)
    net = model.MZSRNet.from_params(p)
    torch.testing.assert_close(net(x), model.forward(p, x))
    torch.testing.assert_close(functional_call(model.MZSRNet(), p, (x,)), model.forward(p, x))


def test_init_statistics():
    p = model.init_params(0)
    w = p["layers.1.weight"]
    assert abs(w.std().item() - (1 / (64 * 9)) ** 0.5) < 0.1 * (1 / (64 * 9)) ** 0.5
    assert w.abs().max() <= 2 * (1 / (64 * 9)) ** 0.5 / 0.8796 + 1e-6  # truncated at 2 std
    assert all(float(v.abs().sum()) == 0 for k, v in p.items() if k.endswith("bias"))
    z = model.init_params(0, bias=False, init="zssr")
    assert "layers.0.bias" not in z and len(z) == 8
    with pytest.raises(ValueError):
        model.init_params(0, init="nope")


def test_weights_roundtrip_and_metadata(tmp_path):
    p = model.init_params(1)
    f = tmp_path / "w.safetensors"
    model.save_weights(f, p, {"scale": 2, "subsampling": "direct", "trained": "test"})
    q, meta = model.load_weights(f)
    for k in p:
        assert torch.equal(p[k], q[k]), k
    assert meta["arch"] == model.ARCH and json.loads(meta["scale"]) == 2 and meta["subsampling"] == "direct"
    assert not list(tmp_path.glob(".*tmp*")), "temp file left behind"


def test_weights_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        model.load_weights(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="safetensors"):
        model.load_weights(bad)
    p = model.init_params(0)
    p["layers.0.weight"] = torch.zeros(64, 3, 5, 5)
    f = tmp_path / "shape.safetensors"
    model.save_weights(f, p)
    with pytest.raises(ValueError, match="shape"):
        model.load_weights(f)
    p = model.init_params(0)
    p["layers.2.bias"][0] = float("nan")
    model.save_weights(f, p)
    with pytest.raises(ValueError, match="NaN"):
        model.load_weights(f)


def test_shipped_weights_verified():
    sums = model._shipped_sums()
    shipped = sorted(model.WEIGHTS_DIR.glob("*.safetensors"))
    for f in shipped:
        assert f.name in sums, f"{f.name} has no SHA-256 in weights/SHA256SUMS"
        if f.name.startswith("kernelnet_"):  # the blur-kernel predictor, another network
            from mzsr_fast import kernel_net

            assert kernel_net.load(f).width > 0
            continue
        if f.name.endswith("_bank.safetensors"):  # kernel-conditioned starts (mzsr_fast.bank)
            from mzsr_fast import bank

            b = bank.load_bank(f)
            assert "arch" in b.metadata and "scale" in b.metadata, f"{f.name}: metadata incomplete"
            assert b.entries[-1].name == "meta" and not b.entries[-1].match
            continue
        params, meta = model.load_weights(f)
        assert "arch" in meta and "scale" in meta, f"{f.name}: metadata incomplete {meta}"
