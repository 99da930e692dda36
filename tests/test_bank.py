"""Kernel-conditioned weights banks (mzsr_fast.bank): kernel moments, the file format and its
errors, the entry selection, and adapt_and_upscale from a bank == from the selected entry."""
import json
import math
import warnings

import numpy as np
import pytest
import torch

import mzsr_fast
from mzsr_fast import bank, model
from mzsr_fast.degradation import gaussian_kernel

ISO = {"lam1": [1.0, None], "ratio": [None, 1.3], "gmean": [1.5, 2.25]}
NARROW = {"lam1": [None, 1.0]}


@pytest.mark.parametrize("size,v1,v2,theta", [(21, 2.0, 2.0, 0.0), (15, 4.0, 1.0, -0.5), (15, 3.0, 1.5, 1.0),
                                              (15, 1.2, 1.0, 2.0)])
def test_kernel_moments_recover_gaussian_variances(size, v1, v2, theta):
    m = bank.kernel_moments(gaussian_kernel(size, v1, v2, theta))
    # sampled on a finite grid the variances come out a little off (truncation, discreteness)
    assert m["lam1"] == pytest.approx(v1, rel=0.03, abs=0.01), m
    assert m["lam2"] == pytest.approx(v2, rel=0.03, abs=0.01), m
    assert m["gmean"] == pytest.approx(math.sqrt(m["lam1"] * m["lam2"]))


@pytest.mark.parametrize("v", [0.1, 0.2, 0.5, 0.99])
def test_narrow_kernels_sampled_on_the_grid_stay_narrow(v):
    """Below ~0.5 the sampled kernel's variance is smaller than the nominal one (g^d_0.2: 0.14):
    the bank's bounds are on the kernel as given, so a nominally narrow kernel stays below 1."""
    m = bank.kernel_moments(gaussian_kernel(21, v))
    assert 0 < m["lam1"] <= v * 1.001, m


def test_kernel_moments_delta_and_shift_invariance():
    d = np.zeros((5, 5))
    d[1, 3] = 1.0
    assert bank.kernel_moments(d) == {"lam1": 0.0, "lam2": 0.0, "ratio": 1.0, "gmean": 0.0}
    k = gaussian_kernel(9, 1.5, 0.5, 0.7)
    big = np.zeros((13, 13))
    big[1:10, 3:12] = k * 7  # off-centre, not normalised: same moments
    a, b = bank.kernel_moments(k), bank.kernel_moments(big)
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-9)
    with pytest.raises(ValueError, match="positive sum"):
        bank.kernel_moments(np.zeros((3, 3)))


def _params(seed):
    return model.init_params(seed)


def _entries():
    return [bank.Entry("iso", _params(1), ISO, [3e-3, 1e-3], "supervised"),
            bank.Entry("narrow", _params(2), NARROW, None, "supervised"),
            bank.Entry("meta", _params(3), {}, None, "meta")]


def test_select_first_match_in_order_and_fallback():
    b = bank.Bank(_entries(), {})
    assert b.select(gaussian_kernel(21, 2.0)).name == "iso"
    assert b.select(gaussian_kernel(21, 0.2)).name == "narrow"
    assert b.select(gaussian_kernel(15, 4.0, 1.0, -0.5)).name == "meta"  # ratio 4: not iso
    assert b.select(gaussian_kernel(21, 3.0)).name == "meta"  # gmean above the bin
    assert b.select(None).name == "meta"
    # bounds are [lo, hi): a kernel exactly at an edge goes to the upper bin
    e = bank.Entry("x", _params(0), {"gmean": [1.0, 2.0]})
    assert e.matches({"lam1": 1, "lam2": 1, "ratio": 1, "gmean": 1.0})
    assert not e.matches({"lam1": 2, "lam2": 2, "ratio": 1, "gmean": 2.0})


def test_write_load_round_trip(tmp_path):
    p = tmp_path / "b.safetensors"
    bank.write_bank(p, _entries(), {"note": "test"})
    b = bank.load_bank(p)
    assert b.names() == ["iso", "narrow", "meta"]
    assert b.metadata["note"] == "test"
    for e, ref in zip(b.entries, _entries()):
        assert e.match == ref.match and e.lr_schedule == ref.lr_schedule and e.stage == ref.stage
        for k in model.param_names():
            assert torch.equal(e.params[k], ref.params[k]), (e.name, k)
    with pytest.raises(ValueError, match="bank of starts"):
        model.load_weights(p)
    with pytest.raises(ValueError, match="not a bank"):
        model.save_weights(tmp_path / "w.safetensors", _params(0))
        bank.load_bank(tmp_path / "w.safetensors")


@pytest.mark.parametrize("spec,msg", [
    ([], "non-empty JSON list"),
    ([{"name": "a", "match": {"lam1": [0, 1]}}], "last bank entry"),
    ([{"name": "a"}, {"name": "a"}], "appears twice"),
    ([{"name": "a/b"}], "without '/'"),
    ([{"name": "a", "match": {"size": [0, 1]}}, {"name": "b"}], "unknown match key"),
    ([{"name": "a", "match": {"lam1": [0]}}, {"name": "b"}], r"\[lo, hi\]"),
    ([{"name": "a", "match": {"lam1": [0, "x"]}}, {"name": "b"}], r"\[lo, hi\]"),
    ([{"name": "a", "lr_schedule": [float("nan")]}], "lr_schedule"),
])
def test_malformed_bank_named(tmp_path, spec, msg):
    p = tmp_path / "bad.safetensors"
    tensors = {f"{e['name']}/{k}": v for e in spec for k, v in _params(0).items()} if spec else {"x/y": torch.zeros(1)}
    model.write_safetensors(p, tensors, {"bank": json.dumps(spec)})
    with pytest.raises(ValueError, match=msg) as ei:
        bank.load_bank(p)
    assert str(p) in str(ei.value)


def test_stray_and_broken_entry_tensors_named(tmp_path):
    p = tmp_path / "b.safetensors"
    spec = [{"name": "a"}]
    t = {f"a/{k}": v for k, v in _params(0).items()}
    model.write_safetensors(p, {**t, "ghost/layers.0.bias": torch.zeros(64)}, {"bank": json.dumps(spec)})
    with pytest.raises(ValueError, match="ghost"):
        bank.load_bank(p)
    t["a/layers.3.weight"] = torch.zeros(64, 64, 3, 1)
    model.write_safetensors(p, t, {"bank": json.dumps(spec)})
    with pytest.raises(ValueError, match="entry 'a'.*layers.3.weight"):
        bank.load_bank(p)


@pytest.mark.parametrize("kernel,entry", [(gaussian_kernel(15, 2.0), "iso"), (gaussian_kernel(15, 0.2), "narrow"),
                                          (gaussian_kernel(15, 4.0, 1.0, -0.5), "meta")])
def test_adapt_from_bank_equals_adapt_from_its_entry(tmp_path, kernel, entry):
    """The bank only chooses the start (and its schedule): the output is bitwise the output of
    the same call given that entry's parameters and schedule directly."""
    p = tmp_path / "b.safetensors"
    entries = _entries()
    bank.write_bank(p, entries, {})
    e = next(x for x in entries if x.name == entry)
    img = np.random.default_rng(0).random((23, 19, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, info = mzsr_fast.adapt_and_upscale(img, kernel=kernel, steps=2, weights=p, backend="reference",
                                                return_info=True)
        ref = mzsr_fast.adapt_and_upscale(img, kernel=kernel, steps=2, weights=e.params, backend="reference",
                                          lr_schedule=e.lr_schedule or mzsr_fast.default_lr_schedule(2))
    assert info["weights"] == f"{p.resolve()}#{entry}"
    assert info["lr_schedule"] == (e.lr_schedule or mzsr_fast.default_lr_schedule(2))
    np.testing.assert_array_equal(out, ref)
    # an explicit schedule still overrides the entry's
    _, info2 = mzsr_fast.adapt_and_upscale(img, kernel=kernel, steps=2, weights=p, backend="reference",
                                           lr_schedule=1e-4, return_info=True)
    assert info2["lr_schedule"] == [1e-4, 1e-4]


def test_steps0_warning_follows_the_entry_stage(tmp_path):
    p = tmp_path / "b.safetensors"
    bank.write_bank(p, _entries(), {})
    img = np.random.default_rng(1).random((17, 16, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the supervised entry: no warning
        mzsr_fast.adapt_and_upscale(img, kernel=gaussian_kernel(15, 2.0), steps=0, weights=p, backend="reference")
    with pytest.warns(UserWarning, match="meta-learned"):
        mzsr_fast.adapt_and_upscale(img, kernel=gaussian_kernel(15, 4.0, 1.0, -0.5), steps=0, weights=p,
                                    backend="reference")


def test_shipped_x2_direct_bank():
    """The default x2 direct weights are a bank; the paper's three direct kernels select the
    entries trained for their regions, and the fallback entry (other kernels, kernel=None) is
    the meta-learned file itself, bit for bit."""
    from mzsr_fast import options
    from mzsr_fast.degradation import setting

    path = model.default_weights_path(2, "direct")
    assert path.name == "mzsr_x2_direct_bank.safetensors"
    b = bank.load_bank(path)
    for name, want in (("g^d_2.0", "iso_1.5_2.25"), ("g^d_0.2", "narrow"), ("g^d_ani", "aniso")):
        assert b.select(setting(name)[0]).name == want, name
    assert b.select(None).name == "meta"
    meta, _ = model.load_weights(model.WEIGHTS_DIR / "mzsr_x2_direct.safetensors")
    for k in model.param_names():
        assert torch.equal(b.entries[-1].params[k], meta[k]), k
    params, desc = options.load_params(None, 2, "direct", kernel=setting("g^d_2.0")[0])
    assert desc.endswith("mzsr_x2_direct_bank.safetensors#iso_1.5_2.25")
    for k in model.param_names():
        assert torch.equal(params[k], b.entries[2].params[k])


def test_shipped_bank_sha_checked(tmp_path, monkeypatch):
    """A changed bank file in weights/ fails its recorded SHA-256, as the single files do."""
    import shutil

    wd = tmp_path / "weights"
    wd.mkdir()
    src = model.default_weights_path(2, "direct")
    shutil.copy(src, wd / src.name)
    shutil.copy(model.WEIGHTS_DIR / "SHA256SUMS", wd / "SHA256SUMS")
    monkeypatch.setattr(model, "WEIGHTS_DIR", wd)
    assert bank.load_bank(wd / src.name).names()[-1] == "meta"
    data = bytearray((wd / src.name).read_bytes())
    data[-5] ^= 1
    (wd / src.name).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        bank.load_bank(wd / src.name)
