"""The public API: kinds in = kinds out, adaptation lowers the son->LR loss, every bad
input raises its named error, the caller's weights are never modified."""
import numpy as np
import pytest
import torch
from PIL import Image

import mzsr_fast
from mzsr_fast import adapt_and_upscale, default_lr_schedule, degrade, gaussian_kernel, imresize, model

P = model.init_params(0)
K = gaussian_kernel(7, 2.0)
RNG = np.random.default_rng(0)


def _smooth_image(h=16, w=14):
    hr = RNG.random((h * 2, w * 2, 3))
    hr = imresize(imresize(hr, 0.25), output_shape=(h * 2, w * 2)).clip(0, 1)
    return (degrade(hr, K, 2) * 255).round().astype(np.uint8)


LR = _smooth_image()


def test_default_schedule():
    assert default_lr_schedule(6) == [2e-2, 1e-2, 1e-2, 1e-2, 5e-3, 5e-3]
    assert default_lr_schedule(0) == []


def test_adaptation_lowers_loss_and_info():
    sr, info = adapt_and_upscale(LR, kernel=K, steps=6, weights=P, backend="reference", return_info=True)
    assert sr.shape == (32, 28, 3) and sr.dtype == np.uint8
    losses = info["losses"]
    assert len(losses) == 6 and losses[-1] < losses[0], losses
    assert info["backend"] == "reference" and info["lr_schedule"] == default_lr_schedule(6)
    for phase in ("degrade", "prepare", "adapt", "upscale", "total"):
        assert info["times"][phase] >= 0


def test_steps0_is_plain_forward():
    x = torch.from_numpy(LR).permute(2, 0, 1)[None].float() / 255
    up = imresize(x, output_shape=(32, 28))
    ref = model.forward(P, up).clamp(0, 1)
    out = adapt_and_upscale(x, kernel=K, steps=0, weights=P, backend="reference")
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_weights_not_modified():
    snap = {k: v.clone() for k, v in P.items()}
    adapt_and_upscale(LR, kernel=K, steps=2, weights=P, backend="reference")
    for k in P:
        assert torch.equal(P[k], snap[k])


@pytest.mark.parametrize(
    "img,check",
    [
        (LR, lambda o: isinstance(o, np.ndarray) and o.shape == (32, 28, 3) and o.dtype == np.uint8),
        (LR[..., 0], lambda o: isinstance(o, np.ndarray) and o.shape == (32, 28)),
        (LR.astype(np.float32) / 255, lambda o: o.dtype == np.float32 and o.shape == (32, 28, 3)),
        (Image.fromarray(LR), lambda o: isinstance(o, Image.Image) and o.size == (28, 32) and o.mode == "RGB"),
        (Image.fromarray(LR).convert("RGBA"), lambda o: o.mode == "RGBA" and o.size == (28, 32)),
        (torch.from_numpy(LR).permute(2, 0, 1).float() / 255, lambda o: o.shape == (3, 32, 28) and o.dtype == torch.float32),
        (torch.from_numpy(LR).permute(2, 0, 1)[None].repeat(2, 1, 1, 1).double() / 255, lambda o: o.shape == (2, 3, 32, 28) and o.dtype == torch.float64),
    ],
    ids=["np-u8", "np-grey", "np-f32", "pil", "pil-rgba", "torch-chw", "torch-nchw-batch2-f64"],
)
def test_kinds_roundtrip(img, check):
    out = adapt_and_upscale(img, kernel=K, steps=1, weights=P, backend="reference")
    assert check(out), type(out)


def test_no_kernel_means_bicubic():
    _, info = adapt_and_upscale(LR, steps=1, weights=P, backend="reference", return_info=True)
    assert info["subsampling"] == "bicubic"


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        (dict(image=np.zeros((8, 8, 3), np.int64)), TypeError, "dtype"),
        (dict(image=np.zeros((8, 8, 3, 1), np.uint8)), ValueError, "shape"),
        (dict(image=np.full((8, 8, 3), np.nan, np.float32)), ValueError, "NaN"),
        (dict(image="x.png"), TypeError, "numpy array"),
        (dict(kernel=np.ones(5)), ValueError, "2-D"),
        (dict(kernel=np.ones((4, 4))), ValueError, "odd"),
        (dict(kernel=np.zeros((3, 3))), ValueError, "normalised"),
        (dict(kernel=np.full((3, 3), np.inf)), ValueError, "NaN or inf"),
        (dict(kernel=np.ones((41, 41))), ValueError, "larger than"),
        (dict(image=np.zeros((1, 1, 3), np.uint8), kernel=None), ValueError, "too small"),
        (dict(backend="fastest"), ValueError, "unknown backend"),
        (dict(device="tpu"), ValueError, "device"),
        (dict(steps=-1), ValueError, "steps"),
        (dict(steps=1.5), ValueError, "steps"),
        (dict(scale=1), ValueError, "scale"),
        (dict(subsampling="area"), ValueError, "subsampling"),
        (dict(lr_schedule=[0.1]), ValueError, "lr_schedule"),
        (dict(lr_schedule=float("nan")), ValueError, "finite"),
        (dict(precision="fp8"), ValueError, "precision"),
        (dict(weights=3), TypeError, "weights"),
        (dict(weights="/nonexistent.safetensors"), ValueError, "not found"),
    ],
)
def test_bad_inputs(kwargs, err, match):
    args = dict(image=LR, kernel=K, steps=2, weights=P, backend="reference")
    args.update(kwargs)
    image = args.pop("image")
    with pytest.raises(err, match=match):
        adapt_and_upscale(image, **args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_requested_without_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        adapt_and_upscale(LR, kernel=K, steps=1, weights=P, device="cuda")


def test_public_names():
    for name in ("adapt_and_upscale", "degrade", "gaussian_kernel", "zssr_upscale", "__version__"):
        assert hasattr(mzsr_fast, name)


@pytest.mark.parametrize(
    "mutate,err,match",
    [
        (lambda p: p.pop("layers.3.weight"), ValueError, "weights dict: unexpected tensors"),
        (lambda p: p.update({"layers.1.weight": torch.zeros(64, 64, 5, 5)}), ValueError, "has shape"),
        (lambda p: p.update({"layers.1.weight": p["layers.1.weight"].numpy()}), TypeError, "torch.Tensor"),
        (lambda p: p["layers.0.bias"].__setitem__(0, float("nan")), ValueError, "NaN or inf"),
    ],
    ids=["missing", "shape", "numpy", "nan"],
)
def test_bad_weights_dict_is_named(mutate, err, match):
    """A params dict passed as weights= is validated by name (was: RuntimeError /
    AttributeError / silent garbage for shapes, numpy values, NaN)."""
    from mzsr_fast import model

    p = {k: v.clone() for k, v in model.init_params(0).items()}
    mutate(p)
    with pytest.raises(err, match=match):
        mzsr_fast.adapt_and_upscale(torch.rand(3, 8, 8), steps=1, weights=p, backend="reference", device="cpu")


def test_weights_file_schedule_is_the_default(tmp_path):
    """A weights file's metadata ``lr_schedule`` is the schedule of ``lr_schedule=None``
    (last value repeated); an explicit schedule overrides it; malformed metadata is named."""
    from mzsr_fast import model

    p = model.init_params(0)
    f = tmp_path / "w.safetensors"
    model.save_weights(f, p, {"lr_schedule": [0.03, 0.001]})
    img = torch.rand(3, 10, 12, generator=torch.Generator().manual_seed(0))
    kw = dict(steps=4, backend="reference", device="cpu", return_info=True)
    out, info = adapt_and_upscale(img, weights=str(f), **kw)
    assert info["lr_schedule"] == [0.03, 0.001, 0.001, 0.001]
    ref, _ = adapt_and_upscale(img, weights=p, lr_schedule=[0.03, 0.001, 0.001, 0.001], **kw)
    assert torch.equal(out, ref)
    _, info = adapt_and_upscale(img, weights=str(f), lr_schedule=0.01, **kw)
    assert info["lr_schedule"] == [0.01] * 4
    _, info = adapt_and_upscale(img, weights=p, **kw)  # a dict has no metadata: the default
    assert info["lr_schedule"] == default_lr_schedule(4)
    bad = tmp_path / "bad.safetensors"
    model.save_weights(bad, p, {"lr_schedule": "[0.01, -1]"})
    with pytest.raises(ValueError, match="lr_schedule"):
        adapt_and_upscale(img, weights=str(bad), **kw)


def test_shipped_bicubic_file_records_its_schedule():
    from mzsr_fast import model

    _, meta = model.load_weights(model.default_weights_path(2, "bicubic"))
    assert model.schedule_from_metadata(meta) == [0.01] * 5 + [0.005]
    # x2 direct keeps the default schedule (README): the bank and each of its entries, and the
    # meta-learned start it falls back to
    from mzsr_fast import bank

    b = bank.load_bank(model.default_weights_path(2, "direct"))
    assert model.schedule_from_metadata(b.metadata) is None
    assert [e.lr_schedule for e in b.entries] == [None] * len(b.entries)
    _, meta = model.load_weights(model.WEIGHTS_DIR / "mzsr_x2_direct.safetensors")
    assert model.schedule_from_metadata(meta) is None


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_lr_search_picks_the_lower_training_loss(backend):
    """lr_search=True: the first step's lr is the candidate (s0, s0/2) whose step leaves the
    lower son->LR loss, and the result equals a plain call with that schedule."""
    from mzsr_fast import backends

    if not backends.available("cpu")[backend][0]:
        pytest.skip(f"{backend} backend not built")
    k = gaussian_kernel(7, 1.5)
    img = torch.rand(3, 14, 12, generator=torch.Generator().manual_seed(5))
    kw = dict(kernel=k, steps=3, backend=backend, device="cpu", weights=model.init_params(1))
    out, info = adapt_and_upscale(img, lr_search=True, return_info=True, **kw)
    s = info["lr_search"]
    assert s["candidates"] == [2e-2, 1e-2] and s["chosen"] in s["candidates"]
    trial = {c: adapt_and_upscale(img, lr_schedule=[c, 0.0], steps=2, return_info=True,
                                  **{a: b for a, b in kw.items() if a != "steps"})[1]["losses"][1]
             for c in s["candidates"]}
    assert s["losses"] == [trial[c] for c in s["candidates"]]
    assert s["chosen"] == min(trial, key=trial.get)
    ref = adapt_and_upscale(img, lr_schedule=[s["chosen"]] + default_lr_schedule(3)[1:], **kw)
    assert torch.equal(out, ref)
    out0, info0 = adapt_and_upscale(img, lr_search=True, return_info=True, **{**kw, "steps": 0})
    assert info0["lr_search"] is None
    with pytest.raises(ValueError, match="lr_search"):
        adapt_and_upscale(img, lr_search="yes", **kw)


def test_steps0_with_meta_learned_weights_warns():
    """A meta-learned start is meant to be adapted: steps=0 with such a file warns (and
    names the pretrained file); adapted calls, the pretrained file and params dicts do not."""
    import warnings

    img = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match="pretrain_x2_bicubic"):
        adapt_and_upscale(img, steps=0, backend="reference")
    pre = model.WEIGHTS_DIR / "pretrain_x2_bicubic.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapt_and_upscale(img, steps=1, backend="reference")
        adapt_and_upscale(img, steps=0, backend="reference", weights=pre)
        adapt_and_upscale(img, steps=0, backend="reference", weights=model.load_weights(pre)[0])


# ----------------------------------------------------------------------------- progress
def _tiling_budget(h, w):
    """A max_memory under which an h x w LR image (cpu backend figures) runs on tiles in
    both phases (tests/test_tiling.py has the derivation)."""
    from mzsr_fast import plan, tiles

    ib, reg = plan.IMAGE_BYTES, (tiles.MIN_TILE + 2 * tiles.HALO) ** 2
    lr, hr = h * w, 4 * h * w
    up = ib["lr"] * lr + ib["hr_out"] * hr + (plan.memory_per_pixel("reference", "forward") + ib["lr_up"]) * reg
    ad = (ib["lr"] + ib["son_up"]) * lr + plan.memory_per_pixel("reference", "region_grads") * reg
    conv = ib["lr"] * lr + (ib["hr_out"] + ib["hr_convert"]) * hr
    return int(max(up, ad, conv) + plan.memory_per_pixel("reference", "const"))


def test_progress_callback_counts_tiles():
    """progress=callable: (0, total) at the start of each tiled phase, then one call per
    unit (tiles x steps for the adaptation, tiles for the upscale), ending at total."""
    img = np.random.default_rng(0).random((40, 34, 3)).astype(np.float32)
    calls = []
    out, info = adapt_and_upscale(img, kernel=K, steps=2, weights=P, backend="reference", return_info=True,
                                  max_memory=_tiling_budget(40, 34), progress=lambda d, t, s: calls.append((d, t, s)))
    ti = info["tiling"]
    assert ti["adapt_mode"] == "tiled" and ti["upscale_tiles"] > 1
    assert ti["masked_grads"] == "reference ops"
    by = {}
    for d, t, s in calls:
        by.setdefault(s, []).append((d, t))
    assert by["adapt (tiles)"] == [(i, 2 * ti["adapt_tiles"]) for i in range(2 * ti["adapt_tiles"] + 1)]
    assert by["upscale (tiles)"] == [(i, ti["upscale_tiles"]) for i in range(ti["upscale_tiles"] + 1)]
    assert set(by) == {"adapt (tiles)", "upscale (tiles)"}
    # the same result with and without a progress callback
    ref = adapt_and_upscale(img, kernel=K, steps=2, weights=P, backend="reference", max_memory=_tiling_budget(40, 34))
    assert np.array_equal(out, ref)


def test_progress_crops_counts_steps_and_whole_image_is_silent():
    img = np.random.default_rng(1).random((30, 28, 3)).astype(np.float32)
    calls = []
    adapt_and_upscale(img, kernel=K, steps=3, weights=P, backend="reference", adapt_on="crops", crop_size=12,
                      n_crops=2, progress=lambda d, t, s: calls.append((d, t, s)))
    assert calls == [(i, 3, "adapt (crops)") for i in range(4)]
    calls.clear()
    adapt_and_upscale(img, kernel=K, steps=3, weights=P, backend="reference", progress=lambda *a: calls.append(a))
    assert calls == []


def test_progress_none_prints_nothing_off_a_terminal(capfd):
    """progress=None (default) with stderr not a terminal (pytest captures it): no bar,
    nothing on stderr, also for a tiled call; progress=True does draw one."""
    img = np.random.default_rng(2).random((40, 34, 3)).astype(np.float32)
    kw = dict(kernel=K, steps=1, weights=P, backend="reference", max_memory=_tiling_budget(40, 34))
    adapt_and_upscale(img, **kw)
    assert capfd.readouterr().err == ""
    adapt_and_upscale(img, progress=True, **kw)
    assert "tiles" in capfd.readouterr().err


@pytest.mark.parametrize("bad", [1, "yes", 0.5])
def test_progress_bad_value(bad):
    with pytest.raises(ValueError, match="progress must be None, True, False or a callable"):
        adapt_and_upscale(np.zeros((8, 8, 3), np.float32), steps=1, weights=P, backend="reference", progress=bad)


def test_options_validate_like_the_call():
    """mzsr_fast.api.Options (shared with the CLI) raises what the call raises, before any
    image is read; a valid one carries the resolved device and budget."""
    from mzsr_fast.api import Options

    for kw, match in [({"scale": 1}, "scale must be an int >= 2"), ({"adapt_on": "tiles"}, "adapt_on must be one of"),
                      ({"max_memory": "3 parsecs"}, "unknown unit"), ({"device": "tpu"}, "invalid device|unsupported")]:
        with pytest.raises(ValueError, match=match):
            Options(**kw)
        with pytest.raises(ValueError, match=match):
            adapt_and_upscale(np.zeros((8, 8, 3), np.float32), weights=P, **kw)
    o = Options(device="cpu", max_memory="1GiB")
    assert o.device == torch.device("cpu") and o.budget == 2**30 and o.budget_source == "max_memory='1GiB'"
