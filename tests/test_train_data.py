"""Training data: augmentations, patch sampling with the flatness filter, the kernel/task
sampler, LR made exactly as at test time, determinism per (seed, step, task)."""
import numpy as np
import pytest
import torch

from mzsr_fast.degradation import degrade, imresize
from mzsr_fast.train.data import (
    PatchSampler,
    TaskSpec,
    augment,
    load_folder,
    make_inputs,
    sample_pretrain_batch,
    sample_task,
    sample_task_spec,
    step_rng,
)


def _textured(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, h, w, generator=g) * 255).to(torch.uint8)


@pytest.mark.parametrize("shape", [(3, 5, 5), (2, 3, 4, 4), (1, 1)])
def test_augment_is_the_dihedral_group(shape):
    x = torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(shape)
    outs = [augment(x, c) for c in range(8)]
    if shape[-1] > 1:
        keys = {tuple(o.flatten().tolist()) for o in outs}
        assert len(keys) == 8, f"expected 8 distinct variants, got {len(keys)}"
    for o in outs:  # a permutation of the pixels
        assert sorted(o.flatten().tolist()) == sorted(x.flatten().tolist())
    assert torch.equal(outs[0], x)
    with pytest.raises(ValueError):
        augment(x, 8)


def test_patch_sampler_flatness_filter():
    flat = torch.full((3, 64, 64), 120, dtype=torch.uint8)
    tex = _textured(64, 64)
    s = PatchSampler([flat, tex], flat_threshold=8.0, max_tries=50)
    p = s.sample(step_rng(0, 0), 12, 16)
    assert p.shape == (12, 3, 16, 16) and p.dtype == torch.float32
    assert 0.0 <= float(p.min()) and float(p.max()) <= 1.0
    stds = p.mean(1).flatten(1).std(1) * 255
    assert float(stds.min()) > 8.0, f"a flat patch passed the filter: stds {stds.tolist()}"
    # without the filter, flat patches appear (half the area is flat)
    s0 = PatchSampler([flat, tex], flat_threshold=0.0)
    p0 = s0.sample(step_rng(0, 0), 40, 16)
    assert float((p0.mean(1).flatten(1).std(1) * 255).min()) < 1.0
    with pytest.raises(ValueError, match="exceeds"):
        s.sample(step_rng(0, 0), 1, 65)


@pytest.mark.parametrize("scale", [2, 4])
def test_task_spec_ranges(scale):
    kinds = {}
    for i in range(300):
        spec = sample_task_spec(step_rng(1, i), scale, "direct")
        k = spec.kernel
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1 and abs(k.sum() - 1) < 1e-12
        # recover the covariance from the kernel's second moments
        ax = np.arange(k.shape[0]) - (k.shape[0] - 1) / 2
        xx, yy = np.meshgrid(ax, ax)
        cov = np.array([[(k * xx * xx).sum(), (k * xx * yy).sum()], [(k * xx * yy).sum(), (k * yy * yy).sum()]])
        ev = np.linalg.eigvalsh(cov)
        kinds.setdefault(spec.kind, []).append(ev)
    assert set(kinds) == {"aniso", "iso", "narrow"}
    narrow = np.array(kinds["narrow"])
    assert narrow.max() < 1.0 + 1e-6, f"narrow kernels must have variances < 1, max {narrow.max()}"
    wide = np.array(kinds["aniso"] + kinds["iso"])
    # truncation to the grid shrinks the widest slightly; allow 10 %
    assert wide.min() > 0.95 and wide.max() < 2.5 * scale * 1.0 + 1e-6, (wide.min(), wide.max())
    iso = np.array(kinds["iso"])
    assert np.allclose(iso[:, 0], iso[:, 1], rtol=1e-3)


@pytest.mark.parametrize("sub", ["direct", "bicubic"])
@pytest.mark.parametrize("scale,size", [(2, 16), (2, 18), (4, 24)])
def test_make_inputs_matches_test_time_degradation(sub, scale, size):
    """LR is degrade() of the HR (on the 8-bit grid, as the test LR images), then upsampled
    with imresize to the HR size: the same ops the API runs at test time."""
    hr8 = _textured(size, size, seed=scale + size)
    spec = sample_task_spec(step_rng(5, size), scale, sub)
    x = make_inputs(hr8[None].float() / 255.0, spec)
    lr8 = degrade(hr8.numpy().transpose(1, 2, 0), spec.kernel, scale, sub)  # uint8 path, rounded
    want = imresize(torch.from_numpy(lr8.transpose(2, 0, 1).copy()).float()[None] / 255.0, output_shape=(size, size))
    assert x.shape == (1, 3, size, size)
    err = float((x - want).abs().max())
    assert err < 1e-5, f"max err {err:.2e} (tol 1e-5)"


def test_make_inputs_noise_and_errors():
    hr = torch.rand(2, 3, 16, 16)
    spec = TaskSpec(None, 2, "direct", noise=0.05)
    a = make_inputs(hr, spec, step_rng(0, 1))
    b = make_inputs(hr, spec, step_rng(0, 1))
    c = make_inputs(hr, TaskSpec(None, 2, "direct"), step_rng(0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="divisible"):
        make_inputs(torch.rand(1, 3, 15, 15), TaskSpec(None, 2, "direct"))


def test_tasks_are_deterministic_per_seed_step_index():
    s = PatchSampler([_textured(40, 40, 1), _textured(33, 47, 2)], flat_threshold=0.0)
    t1 = sample_task(s, step_rng(3, 7, 1), patch=16, n_train=2, n_test=3)
    t2 = sample_task(s, step_rng(3, 7, 1), patch=16, n_train=2, n_test=3)
    t3 = sample_task(s, step_rng(3, 7, 2), patch=16, n_train=2, n_test=3)
    assert t1.x_tr.shape == (2, 3, 16, 16) and t1.y_te.shape == (3, 3, 16, 16)
    assert torch.equal(t1.x_tr, t2.x_tr) and torch.equal(t1.y_te, t2.y_te)
    assert not torch.equal(t1.y_tr, t3.y_tr)
    x, y = sample_pretrain_batch(s, step_rng(0, 0), batch=3, patch=16)
    assert x.shape == y.shape == (3, 3, 16, 16)
    assert float((x - y).abs().mean()) > 0  # the input is degraded


def test_son_tasks_mirror_meta_test():
    """inner="son": D_tr = LR-son -> LR and D_te = LR-up -> HR of the same patches, built
    exactly as test time builds them (8-bit LR, son from the LR with the same kernel)."""
    from mzsr_fast.train.data import make_lr

    s = PatchSampler([_textured(60, 60, 1), _textured(64, 50, 2)], flat_threshold=0.0)
    t = sample_task(s, step_rng(3, 7, 1), patch=32, n_train=2, n_test=3, inner="son")
    assert t.x_tr.shape == t.y_tr.shape == (5, 3, 16, 16) and t.x_te.shape == t.y_te.shape == (5, 3, 32, 32)
    assert torch.equal(t.y_tr, make_lr(t.y_te, t.spec))
    assert torch.equal(t.x_te, imresize(t.y_tr, output_shape=(32, 32)))
    assert torch.equal(t.x_tr, make_inputs(t.y_tr, t.spec))
    assert torch.equal(t.y_tr, torch.round(t.y_tr * 255) / 255)  # the LR is 8-bit
    same = sample_task(s, step_rng(3, 7, 1), patch=32, n_train=2, n_test=3, inner="son")
    assert torch.equal(same.x_tr, t.x_tr)
    with pytest.raises(ValueError, match="inner"):
        sample_task(s, step_rng(3, 7, 1), patch=32, inner="lr")


def test_load_folder(tmp_path):
    from PIL import Image

    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a" / "x.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "y.bmp")  # greyscale
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "notes.txt").write_text("not an image")
    ims = load_folder(tmp_path, min_side=10)
    assert len(ims) == 2 and all(im.shape == (3, 20, 30) and im.dtype == torch.uint8 for im in ims)
    with pytest.raises(ValueError, match="no images"):
        load_folder(tmp_path, min_side=100)
    with pytest.raises(ValueError, match="not found"):
        load_folder(tmp_path / "missing")


def test_bank_sampler_crops_and_filter():
    from mzsr_fast.train.gpu import BankSampler

    flat = torch.full((3, 40, 40), 90, dtype=torch.uint8)
    ims = [_textured(40, 48, 3), flat, _textured(30, 30, 4)]  # the 30 px image is below the bank side
    b = BankSampler(ims, bank_patch=32, per_mpix=20_000, device="cpu", flat_threshold=8.0)
    assert b.bank.shape[1:] == (3, 32, 32) and len(b) >= 16
    y = b.bank.float().mean(1).flatten(1).std(1)
    assert float(y.min()) >= 8.0, "a flat crop stayed in the bank"
    p = b.sample(step_rng(0, 0), 9, 16)
    assert p.shape == (9, 3, 16, 16) and p.dtype == torch.float32 and 0 <= float(p.min()) and float(p.max()) <= 1
    # every sample is a crop of a bank entry under one of the 8 flips/rotations
    for q in p:
        q8 = (q * 255).round().to(torch.uint8)
        found = False
        for c in range(8):
            back = q8
            k, flip = c % 4, c // 4
            if flip:
                back = torch.flip(back, dims=(-1,))
            back = torch.rot90(back, -k, dims=(-2, -1))
            win = b.bank.unfold(2, 16, 1).unfold(3, 16, 1)  # (M, 3, 17, 17, 16, 16)
            if (win == back[None, :, None, None]).all(dim=(1, 4, 5)).any():
                found = True
                break
        assert found, "sample is not an augmented crop of the bank"
    assert torch.equal(p, b.sample(step_rng(0, 0), 9, 16))
    with pytest.raises(ValueError):
        b.sample(step_rng(0, 0), 1, 33)


@pytest.mark.parametrize("setting,scale", [("g20", 2), ("b13", 2), ("g20", 4)])
def test_validate_small_folder(tmp_path, setting, scale):
    from PIL import Image

    from mzsr_fast import adapt_and_upscale, metrics, model
    from mzsr_fast.train.validate import load_valset, validate

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (90, 94, 3), dtype=np.uint8)).save(tmp_path / "a.png")  # LR >= the 21x21 kernel
    vs = load_valset(tmp_path, setting, scale)
    (name, lr, hr), = vs.items
    assert hr.shape == (90 - 90 % scale, 94 - 94 % scale, 3) and lr.shape == (hr.shape[0] // scale, hr.shape[1] // scale, 3)
    params = model.init_params(0)
    res = validate(params, vs, (0, 1), device="cpu")
    assert set(res) == {"bicubic", "psnr_0", "psnr_1", "val_time"}
    sr = adapt_and_upscale(lr, scale=scale, kernel=vs.kernel, steps=1, subsampling=vs.subsampling, weights=params,
                           backend="reference", device="cpu")
    assert abs(res["psnr_1"] - metrics.psnr_y(sr, hr, scale)) < 1e-9
    with pytest.raises(ValueError, match="unknown validation setting"):
        load_valset(tmp_path, "nope", 2)


def test_one_image_tasks_draw_all_patches_from_one_image():
    """task_images="one": every patch of a task comes from the same training image (told
    apart here by each image's own grey level); "mixed" draws an image per patch."""
    g = torch.Generator().manual_seed(0)
    imgs = [(torch.full((3, 40, 40), lvl) + torch.randint(0, 9, (3, 40, 40), generator=g)).to(torch.uint8)
            for lvl in (20, 110, 200)]
    s = PatchSampler(imgs, flat_threshold=0.0)

    def sources(t):
        return {int(round(float(p.mean()) * 255 / 90)) for p in t.y_te}

    for k in range(6):
        t = sample_task(s, step_rng(4, k, 0), patch=16, n_train=3, n_test=3, inner="son", one_image=True)
        assert len(sources(t)) == 1, sources(t)
        h = sample_task(s, step_rng(4, k, 0), patch=16, n_train=3, n_test=3, one_image=True)
        assert len(sources(h)) == 1
    mixed = [sources(sample_task(s, step_rng(4, k, 0), patch=16, n_train=3, n_test=3)) for k in range(6)]
    assert max(len(m) for m in mixed) > 1


def test_bank_sampler_one_image():
    """BankSampler(one_image=True): the task's crops all come from one source image."""
    from mzsr_fast.train.gpu import BankSampler

    g = torch.Generator().manual_seed(1)
    ims = [(torch.full((3, 40, 44), lvl) + torch.randint(0, 30, (3, 40, 44), generator=g)).to(torch.uint8)
           for lvl in (10, 110, 210)]
    b = BankSampler(ims, bank_patch=32, per_mpix=20_000, device="cpu", flat_threshold=0.0)
    src = lambda p: {int(float(q.mean()) * 255 // 100) for q in p}  # noqa: E731
    for k in range(6):
        assert len(src(b.sample(step_rng(2, k), 6, 16, one_image=True))) == 1
    assert max(len(src(b.sample(step_rng(2, k), 6, 16))) for k in range(6)) > 1


@pytest.mark.parametrize("bf16", [False, True])
def test_supervised_l1_step_is_one_adam_step_on_the_l1_loss(bf16):
    """train.common.supervised_l1_step (the bank entries' trainer): the loss it returns is the
    L1 of the forward, and the parameters after it are those of the same Adam step written out."""
    from mzsr_fast import model
    from mzsr_fast.train.common import supervised_l1_step

    g = torch.Generator().manual_seed(0)
    x, hr = torch.rand(2, 3, 10, 12, generator=g), torch.rand(2, 3, 10, 12, generator=g)
    p0 = model.init_params(3)
    a = {k: v.clone().requires_grad_(True) for k, v in p0.items()}
    b = {k: v.clone().requires_grad_(True) for k, v in p0.items()}
    oa, ob = torch.optim.Adam(a.values(), lr=1e-3), torch.optim.Adam(b.values(), lr=1e-3)
    loss = supervised_l1_step(a, oa, x, hr, bf16=bf16)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = model.forward(b, x.contiguous(memory_format=torch.channels_last))
    want = (y.float() - hr).abs().mean()
    want.backward()
    ob.step()
    assert loss.item() == pytest.approx(want.item(), rel=1e-6), (loss.item(), want.item())
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-7, msg=lambda m: f"{k}: {m}")
    assert not torch.equal(a["layers.0.weight"], p0["layers.0.weight"])
