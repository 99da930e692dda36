"""Test-time options (issue 15 item 4): back-projection, the 8-frame self-ensemble and the
``quality`` presets, implemented once in ``run.refine`` over any backend's forward."""
import numpy as np
import pytest
import torch

from mzsr_fast import adapt_and_upscale, degrade, gaussian_kernel, model
from mzsr_fast.options import BP_ROUNDS, QUALITY_PRESETS, Options
from mzsr_fast.refine import back_project, frame, frame_shift, median0, shift, unframe

K = gaussian_kernel(9, 1.5, 1.5, 0.0)


def _lr(h=17, w=22, seed=0):
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, (2 * h, 2 * w, 3), dtype=np.uint8)
    hr = np.asarray(torch.nn.functional.avg_pool2d(torch.from_numpy(hr).permute(2, 0, 1)[None].float(), 3, 1, 1)[0]
                    .permute(1, 2, 0).round().byte())  # some spatial correlation
    return degrade(hr, K, 2, "direct"), hr


def _params(seed=0):
    return model.init_params(seed)


def test_back_projection_pulls_toward_the_lr():
    lr, _ = _lr()
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    sr = adapt_and_upscale(x, kernel=K, steps=0, weights=_params(), backend="reference")
    errs = []
    for n in (0, 1, 5, 20):
        y = back_project(sr, x, K, 2, "direct", n)
        errs.append(float((degrade(y, K, 2, "direct", quantize=False) - x).abs().mean()))
    assert errs[0] > errs[1] > errs[2] > errs[3], errs
    assert torch.equal(back_project(sr, x, K, 2, "direct", 0), sr)
    api = adapt_and_upscale(x, kernel=K, steps=0, weights=_params(), backend="reference", back_projection=5)
    assert torch.allclose(api, back_project(sr, x, K, 2, "direct", 5), atol=1e-6)


def test_ensemble_is_the_median_of_the_frames_made_by_the_same_network():
    """steps=0 (fixed weights): the ensemble equals the median over frames of separate calls
    on the framed LR, each undone and shifted back (direct subsampling)."""
    lr, _ = _lr()
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    p = _params(1)
    outs = []
    for k in range(8):
        y = adapt_and_upscale(frame(x, k), kernel=K, steps=0, weights=p, backend="reference")
        outs.append(unframe(shift(y, *frame_shift(k, 2, "direct")), k))
    want = median0(torch.stack(outs))
    got = adapt_and_upscale(x, kernel=K, steps=0, weights=p, backend="reference", ensemble=True)
    assert torch.allclose(got, want, atol=1e-6), float((got - want).abs().max())
    assert not torch.allclose(got, outs[0], atol=1e-4)  # the frames differ: the test can fail


def test_frame_shift_aligns_reversed_frames_for_direct_subsampling():
    """The LR grid of a frame whose axis runs backwards is s-1 HR pixels off: degrading the
    shifted-back frame of HR gives the framed LR exactly (direct), and nothing to undo for
    bicubic subsampling."""
    rng = np.random.default_rng(3)
    hr = torch.from_numpy(rng.random((1, 3, 24, 24))).float()
    lr = degrade(hr, K, 2, "direct", quantize=False)
    for k in range(8):
        dy, dx = frame_shift(k, 2, "direct")
        # the frame's own HR, sampled on the frame's [0::2] grid, is the original grid shifted
        f_hr = frame(hr, k)
        f_lr = degrade(torch.roll(f_hr, shifts=(-dy, -dx), dims=(-2, -1)), K, 2, "direct", quantize=False)
        inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))  # away from the borders
        assert torch.allclose(f_lr[inner], frame(lr, k)[inner], atol=1e-5), k
    assert all(frame_shift(k, 2, "bicubic") == (0, 0) for k in range(8))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_refine_runs_on_every_backend_the_same(backend):
    from mzsr_fast import backends

    ok, why = backends.available("cpu")[backend]
    if not ok:
        pytest.skip(f"{backend} backend not available here: {why}")
    lr, _ = _lr(21, 18, 2)
    ref = adapt_and_upscale(lr, kernel=K, steps=2, backend="reference", quality="best")
    got = adapt_and_upscale(lr, kernel=K, steps=2, backend=backend, quality="best")
    d = np.abs(ref.astype(int) - got.astype(int))
    assert d.max() <= 1, f"{backend}: max |diff| {d.max()} (uint8)"


def test_tiled_upscale_with_ensemble_equals_whole():
    from test_tiling import _forcing_budget

    lr, _ = _lr(40, 34, 4)
    p = _params(2)
    whole = adapt_and_upscale(lr, kernel=K, steps=1, weights=p, backend="reference", ensemble=True, back_projection=3)
    tiled, info = adapt_and_upscale(lr, kernel=K, steps=1, weights=p, backend="reference", ensemble=True,
                                    back_projection=3, max_memory=_forcing_budget("reference", 40, 34),
                                    return_info=True)
    assert info["tiling"]["upscale_tile"] is not None, info["tiling"]  # the budget forced tiles
    d = np.abs(whole.astype(int) - tiled.astype(int))
    assert d.max() <= 1, d.max()


def test_presets_and_overrides():
    lr, _ = _lr()
    for name, pre in QUALITY_PRESETS.items():
        _, info = adapt_and_upscale(lr, kernel=K, backend="reference", quality=name, return_info=True)
        assert len(info["lr_schedule"]) == pre["steps"]
        assert (info["ensemble"], info["back_projection"]) == (pre["ensemble"], pre["back_projection"])
    _, info = adapt_and_upscale(lr, kernel=K, backend="reference", quality="best", steps=2, ensemble=False,
                                return_info=True)
    assert len(info["lr_schedule"]) == 2 and info["ensemble"] is False and info["back_projection"] == BP_ROUNDS
    _, info = adapt_and_upscale(lr, kernel=K, steps=1, backend="reference", return_info=True)
    assert (info["ensemble"], info["back_projection"], info["quality"]) == (False, 0, None)
    assert Options(back_projection=True).back_projection == BP_ROUNDS
    assert Options().steps == 10
    assert Options(quality="fast").steps == 1


@pytest.mark.parametrize("kw, msg", [
    ({"quality": "ultra"}, "quality must be"),
    ({"ensemble": "yes"}, "ensemble must be"),
    ({"back_projection": -1}, "back_projection must be"),
    ({"back_projection": 2.5}, "back_projection must be"),
])
def test_bad_options_are_clear_errors(kw, msg):
    lr, _ = _lr()
    with pytest.raises(ValueError, match=msg):
        adapt_and_upscale(lr, kernel=K, steps=1, backend="reference", **kw)


def test_refine_memory_is_planned():
    """The ensemble and back-projection run on the whole output: a budget the tiles fit but
    they do not is a clear error naming them, before any work."""
    from mzsr_fast import plan as planner

    h = w = 256
    hr_px = h * w * 4
    refine_need = hr_px * (planner.REFINE_BYTES["ensemble"] + planner.REFINE_BYTES["back_projection"]
                           + planner.IMAGE_BYTES["hr_out"])
    budget = refine_need - 1
    p = planner.plan("reference", h, w, 2, 1, budget)  # without the refinements the image fits (tiled)
    assert p is not None
    with pytest.raises(ValueError, match="ensemble and back-projection"):
        planner.plan("reference", h, w, 2, 1, budget, ensemble=True, back_projection=20)
    planner.plan("reference", h, w, 2, 1, refine_need + 1, ensemble=True, back_projection=20)
    lr, _ = _lr(h, w)
    with pytest.raises(ValueError, match="ensemble"):
        adapt_and_upscale(lr, kernel=K, steps=1, backend="reference", quality="best", max_memory=budget)
