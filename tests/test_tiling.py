"""Exact tiling (mzsr_fast.tiles geometry, mzsr_fast.run tiled phases): tiled forward,
upscale and adaptation equal the untiled computation to float tolerance for every CPU
backend; the memory planner (mzsr_fast.plan) and max_memory parsing.  Shapes stay <= 48 px so the file runs in seconds."""
import numpy as np
import pytest
import torch

from mzsr_fast import adapt_and_upscale, backends, gaussian_kernel, imresize, model, options
from mzsr_fast import plan as planner
from mzsr_fast import run, tiles

P = model.init_params(0)
K = gaussian_kernel(7, 2.0)
SCHED = [2e-2, 1e-2, 1e-2]
CPU_BACKENDS = [n for n in ("reference", "cpu") if backends.available("cpu")[n][0]]
# float32 rounding of sums taken in another order: well below any real error (a wrong halo
# gives >= 1e-3, see test_wrong_halo_is_detected)
ATOL = 2e-6


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One thread: these tiny shapes are dominated by per-op overhead, and two OpenMP
    threads on a shared 2-core machine spin-wait (3-4x slower, measured)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pair(h, w, seed=0, n=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g), torch.rand(n, 3, h, w, generator=g)


def _be(name, device="cpu", precision="fp32"):
    b = backends.get(name, device, precision)
    b.prepare(P, (1, 3, 16, 16))
    return b


def _maxdiff(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


# ----------------------------------------------------------------------------- tiles
@pytest.mark.parametrize("h,w,tile", [(37, 29, 10), (37, 29, 3), (20, 45, (7, 40)), (8, 8, 100), (1, 33, 4),
                                      (48, 48, 16), (17, 5, (1, 1))])
def test_tiles_partition_and_halo(h, w, tile):
    ts = tiles.tiles(h, w, tile)
    cover = torch.zeros(h, w, dtype=torch.int32)
    shapes = set()
    for t in ts:
        cover[t.interior] += 1
        # the region reaches HALO past the interior, or the image border
        assert t.ry0 <= max(0, t.y0 - tiles.HALO) and t.ry1 >= min(h, t.y1 + tiles.HALO)
        assert t.rx0 <= max(0, t.x0 - tiles.HALO) and t.rx1 >= min(w, t.x1 + tiles.HALO)
        assert 0 <= t.ry0 and t.ry1 <= h and 0 <= t.rx0 and t.rx1 <= w
        shapes.add((t.ry1 - t.ry0, t.rx1 - t.rx0))
    assert bool((cover == 1).all()), "interiors must partition the image"
    assert len(shapes) == 1, f"one region shape per call, got {shapes}"


def test_tile_argument_errors():
    with pytest.raises(ValueError, match="tile sizes must be >= 1"):
        tiles.tiles(8, 8, 0)
    with pytest.raises(TypeError, match="tile must be an int"):
        tiles.tiles(8, 8, "big")


# ----------------------------------------------------------------------------- forward
@pytest.mark.parametrize("name", CPU_BACKENDS)
@pytest.mark.parametrize("h,w,tile", [(37, 29, 10), (27, 29, 5), (23, 48, (7, 48)), (19, 21, 64), (1, 30, 4)])
def test_tiled_forward_equals_untiled(name, h, w, tile):
    x, _ = _pair(h, w)
    b = _be(name)
    torch.testing.assert_close(run.tiled_forward(b, x, tile), b.forward(x), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", CPU_BACKENDS)
@pytest.mark.parametrize("scale,h,w,tile", [(2, 21, 17, 9), (2, 24, 24, 48), (3, 13, 11, 8), (4, 9, 12, (5, 30))])
def test_tiled_upscale_equals_untiled(name, scale, h, w, tile):
    """Per-tile bicubic lr_up from an LR crop + forward == imresize of the whole + forward."""
    lr, _ = _pair(h, w, seed=1)
    b = _be(name)
    whole = run.upscale(b, lr, scale)
    ref = b.forward(imresize(lr, output_shape=(h * scale, w * scale))).clamp(0, 1)
    torch.testing.assert_close(whole, ref, atol=0, rtol=0)
    torch.testing.assert_close(run.upscale(b, lr, scale, tile=tile), ref, atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- adaptation
@pytest.mark.parametrize("name", CPU_BACKENDS)
@pytest.mark.parametrize("h,w,tile", [(37, 29, 13), (21, 19, 4), (20, 45, (7, 40)), (24, 24, 48), (33, 1, 5)])
def test_tiled_adaptation_equals_untiled(name, h, w, tile):
    """k steps on tiles: same losses, same weights, same output as the whole-image steps."""
    x, t = _pair(h, w, seed=2)
    whole, tiled = _be(name), _be(name)
    l0 = whole.adapt(x, t, SCHED[:2])
    l1 = run.adapt_tiled(tiled, x, t, SCHED[:2], tile)
    torch.testing.assert_close(l1, l0.cpu(), atol=ATOL, rtol=0)
    assert _maxdiff(whole.params(), tiled.params()) < ATOL
    torch.testing.assert_close(tiled.forward(x), whole.forward(x), atol=ATOL, rtol=0)
    # the adaptation moved the weights far more than the tolerance
    assert _maxdiff(whole.params(), P) > 1e-4


def _tile_grads(b, x, t, tile, halo=tiles.HALO):
    acc, lsum = None, 0.0
    for tl in tiles.tiles(x.shape[-2], x.shape[-1], tile, halo=halo):
        li, gi = b.region_grads(x[(..., *tl.region)], t[(..., *tl.region)], tl.box, t.numel())
        acc = run._accumulate(acc, gi)
        lsum += float(li)
    return lsum, acc


def _relerr(a: dict, b: dict) -> float:
    """Largest per-tensor error relative to the tensor's largest magnitude."""
    return max(((a[k] - b[k]).abs().max() / b[k].abs().max()).item() for k in b)


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_region_grads_sum_to_grads(name):
    """The tiles' accumulated gradients are the untiled gradients; with a halo one pixel
    short they are visibly wrong (negative control: the tolerance can fail)."""
    x, t = _pair(30, 30, seed=4)
    b = _be(name)
    loss, g = b.grads(x, t)
    lsum, acc = _tile_grads(b, x, t, 7)
    assert set(acc) == set(g)
    assert abs(lsum - float(loss)) < ATOL
    assert _relerr(acc, g) < 1e-5  # measured 1.5e-6 (reference), 7e-7 (cpu)
    _, short = _tile_grads(b, x, t, 7, halo=tiles.HALO - 1)
    assert _relerr(short, g) > 1e-2  # measured 2.9e-2


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_bias_free_params(name):
    p = {k: v for k, v in P.items() if k.endswith("weight")}
    x, t = _pair(20, 22, seed=5)
    whole, tiled = backends.get(name, "cpu"), backends.get(name, "cpu")
    whole.prepare(p, x.shape)
    tiled.prepare(p, x.shape)
    whole.adapt(x, t, SCHED)
    run.adapt_tiled(tiled, x, t, SCHED, 7)
    assert set(tiled.params()) == set(p)
    assert _maxdiff(whole.params(), tiled.params()) < ATOL


def test_base_masked_grads_fallback_and_apply(monkeypatch):
    """The Backend defaults (masked gradients from the reference ops, update through
    params()/prepare()) on the cpu backend, whose own are bypassed, agree with its own."""
    name = CPU_BACKENDS[-1]
    x, t = _pair(21, 18, seed=6)
    own, dflt = _be(name), _be(name)
    own_grads = type(dflt).grads

    def fallback(self, x, t, box=None, numel=None):  # the masked gradients through the base's fallback
        return own_grads(self, x, t) if box is None else backends.Backend.masked_grads_fallback(self, x, t, box, numel)

    monkeypatch.setattr(type(dflt), "grads", fallback)
    monkeypatch.setattr(type(dflt), "apply_grads", backends.Backend.apply_grads)
    l1 = run.adapt_tiled(dflt, x, t, SCHED, 8)
    monkeypatch.undo()
    l0 = run.adapt_tiled(own, x, t, SCHED, 8)
    torch.testing.assert_close(l1, l0, atol=ATOL, rtol=0)
    assert _maxdiff(own.params(), dflt.params()) < ATOL


def test_triton_interpreter_tiled():
    """Triton backend under TRITON_INTERPRET=1 (CPU; the interpreter is slow, so: one tiled
    step on 10x9 through the reference fallback of its masked grads + apply_grads (its params()/prepare())
    == the reference step, and a 2-tile forward with its kernels == the reference)."""
    ok, why = backends.available("cpu")["triton"]
    if not ok:
        pytest.skip(f"triton backend not runnable here: {why}")
    x, t = _pair(10, 9, seed=7)
    ref, tiled = _be("reference"), _be("triton")
    ref.step(x, t, 0.02)
    run.adapt_tiled(tiled, x, t, [0.02], 5)
    assert _maxdiff(ref.params(), tiled.params()) < ATOL
    torch.testing.assert_close(run.tiled_forward(tiled, x, (10, 5)), ref.forward(x), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- crops
@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_crops_deterministic_and_one_full_crop_is_full(name):
    x, t = _pair(24, 20, seed=8)
    a, b, c = _be(name), _be(name), _be(name)
    la = run.adapt_on_crops(a, x, t, SCHED, crop_size=8, n_crops=3, seed=1)
    lb = run.adapt_on_crops(b, x, t, SCHED, crop_size=8, n_crops=3, seed=1)
    assert torch.equal(la, lb) and _maxdiff(a.params(), b.params()) == 0
    run.adapt_on_crops(c, x, t, SCHED, crop_size=8, n_crops=3, seed=2)
    assert _maxdiff(a.params(), c.params()) > 1e-6
    # one crop as large as the image is exactly full adaptation
    full, crop = _be(name), _be(name)
    l0 = full.adapt(x, t, SCHED)
    l1 = run.adapt_on_crops(crop, x, t, SCHED, crop_size=64, n_crops=1)
    torch.testing.assert_close(l1, l0, atol=ATOL, rtol=0)
    assert _maxdiff(full.params(), crop.params()) < ATOL


# ----------------------------------------------------------------------------- the API
def _forcing_budget(name, h, w, scale=2, tile=tiles.MIN_TILE):
    """A budget under which an h x w LR image is adapted and upscaled in tiles of ~tile px."""
    be = backends.get(name, "cpu")
    ib = planner.IMAGE_BYTES
    lr, hr = h * w, h * w * scale * scale
    reg = (tile + 2 * tiles.HALO) ** 2
    up = ib["lr"] * lr + ib["hr_out"] * hr + (planner.memory_per_pixel(be, "forward") + ib["lr_up"]) * reg
    ad = (ib["lr"] + ib["son_up"]) * lr + planner.memory_per_pixel(be, "region_grads") * reg
    conv = ib["lr"] * lr + (ib["hr_out"] + ib["hr_convert"]) * hr
    return int(max(up, ad, conv) + planner.memory_per_pixel(be, "const"))


def _img(kind, h=40, w=34):
    rng = np.random.default_rng(0)
    hr = rng.random((h * 2, w * 2, 3))
    lr = imresize(imresize(hr, 0.25), output_shape=(h, w)).clip(0, 1)
    if kind == "grey_f32":
        return lr[..., 0].astype(np.float32)
    if kind == "rgba_u8":
        a = np.concatenate([lr, rng.random((h, w, 1))], axis=2)
        return (a * 255).round().astype(np.uint8)
    if kind == "torch_batch1":
        return torch.from_numpy(lr).permute(2, 0, 1)[None].float()
    return (lr * 255).round().astype(np.uint8)


@pytest.mark.parametrize("name", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ["rgb_u8", "grey_f32", "rgba_u8", "torch_batch1"])
def test_api_tiled_equals_untiled(name, kind):
    img = _img(kind)
    h, w = 40, 34
    kw = dict(kernel=K, steps=2, weights=P, backend=name, return_info=True)
    a, ia = adapt_and_upscale(img, **kw)
    b, ib = adapt_and_upscale(img, max_memory=_forcing_budget(name, h, w), **kw)
    assert ia["tiling"]["adapt_mode"] == "whole" and ia["tiling"]["upscale_tile"] is None
    assert ib["tiling"]["adapt_mode"] == "tiled" and ib["tiling"]["adapt_tiles"] > 1
    assert ib["tiling"]["upscale_tiles"] > 1
    np.testing.assert_allclose(ia["losses"], ib["losses"], atol=ATOL, rtol=0)
    a, b = (np.asarray(v, dtype=np.float64) if not isinstance(v, torch.Tensor) else v.double().numpy() for v in (a, b))
    assert a.shape == b.shape
    # uint8 outputs may round differently where a value sits at .5 of a step
    tol = 1.0 if kind.endswith("u8") else 1e-5
    assert np.abs(a - b).max() <= tol
    if kind.endswith("u8"):
        assert np.mean(a != b) < 1e-3


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_api_crops(name):
    img = _img("rgb_u8", 36, 30)
    kw = dict(kernel=K, steps=3, weights=P, backend=name, return_info=True, adapt_on="crops", crop_size=12, n_crops=2)
    a, ia = adapt_and_upscale(img, **kw)
    b, ib = adapt_and_upscale(img, **kw)
    assert np.array_equal(a, b) and ia["losses"] == ib["losses"]
    assert ia["tiling"]["adapt_mode"] == "crops" and ia["tiling"]["adapt_tile"] == [12, 12] or \
        tuple(ia["tiling"]["adapt_tile"]) == (12, 12)
    c = adapt_and_upscale(img, **{**kw, "crop_seed": 5, "return_info": False})
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kwargs,match", [
    ({"adapt_on": "tiles"}, "adapt_on must be one of"),
    ({"crop_size": 0}, "crop_size must be an int >= 1"),
    ({"n_crops": 1.5}, "n_crops must be an int >= 1"),
    ({"crop_seed": "x"}, "crop_seed must be an int"),
    ({"max_memory": "4 parsecs"}, "unknown unit"),
    ({"max_memory": "lots"}, "not a number with an optional unit"),
    ({"max_memory": 0}, "must be > 0"),
    ({"max_memory": "1KiB"}, "too small for a 40x34 image"),
])
def test_api_option_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        adapt_and_upscale(_img("rgb_u8"), kernel=K, steps=1, weights=P, backend="reference", **kwargs)


def test_api_max_memory_type_error():
    with pytest.raises(TypeError, match="max_memory must be None, an int"):
        adapt_and_upscale(_img("rgb_u8"), kernel=K, steps=1, weights=P, backend="reference", max_memory=4.0)


# ----------------------------------------------------------------------------- memory
@pytest.mark.parametrize("text,n", [("4GiB", 4 * 2**30), ("4 gib", 4 * 2**30), ("512MB", 512 * 10**6),
                                    ("1.5GiB", int(1.5 * 2**30)), ("100", 100), ("2kB", 2000), (12345, 12345),
                                    ("  3 MiB ", 3 * 2**20), ("1TiB", 2**40)])
def test_parse_memory(text, n):
    assert options.parse_memory(text) == n


@pytest.mark.parametrize("bad,exc,match", [("4GiBs", ValueError, "unknown unit"), ("-1GiB", ValueError, "not a number"),
                                           ("", ValueError, "not a number"), (-5, ValueError, "> 0"),
                                           ("0MB", ValueError, "> 0"), (True, TypeError, "max_memory must be"),
                                           (2.0**30, TypeError, "max_memory must be"), ([1], TypeError, "max_memory")])
def test_parse_memory_errors(bad, exc, match):
    with pytest.raises(exc, match=match):
        options.parse_memory(bad)


def test_default_budget_cpu():
    n, src = options.default_budget(torch.device("cpu"))
    assert n > 0 and "MemAvailable" in src


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_plan(name):
    be = backends.get(name, "cpu")
    big = planner.plan(be, 48, 40, 2, 1, 2**40)
    assert big.adapt_mode == "whole" and big.upscale_tile is None and big.upscale_tiles == 1
    assert max(big.adapt_bytes, big.upscale_bytes, big.convert_bytes) <= 2**40
    # a large image under a small budget: tiles, every phase estimated within the budget
    budget = 2**30
    p = planner.plan(be, 2000, 1500, 2, 1, budget)
    assert p.adapt_mode == "tiled" and p.upscale_tile is not None
    assert max(p.adapt_bytes, p.upscale_bytes, p.convert_bytes) <= budget
    # a larger budget gives larger (or equal) tiles
    q = planner.plan(be, 2000, 1500, 2, 1, 2 * budget)
    assert q.adapt_tile[0] >= p.adapt_tile[0] and q.upscale_tile[0] >= p.upscale_tile[0]
    # steps=0: no adaptation planned
    assert planner.plan(be, 2000, 1500, 2, 0, budget).adapt_mode == "none"
    # a thin strip image gets full-height strips rather than square tiles
    s = planner.plan(be, 20, 100000, 2, 1, budget)
    assert s.upscale_tile[0] == 40 and s.adapt_tile[0] == 20
    with pytest.raises(ValueError, match="too small for a 2000x1500 image at scale 2"):
        planner.plan(be, 2000, 1500, 2, 1, 100 * 2**20)


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_memory_per_pixel(name):
    be = backends.get(name, "cpu")
    for kind in ("forward", "adapt", "region_grads", "const"):
        assert planner.memory_per_pixel(be, kind) > 0
    with pytest.raises(ValueError, match="unknown memory kind"):
        planner.memory_per_pixel(be, "bogus")


# ----------------------------------------------------------------------------- GPU backends
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["reference", "triton", "cuda"])
@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_gpu_tiled_equals_untiled(name, precision):
    ok, why = backends.available("cuda")[name]
    if not ok:
        pytest.fail(f"{name} unavailable on the GPU: {why}")
    tol = 2e-6 if precision == "fp32" else 5e-3
    x, t = (v.cuda() for v in _pair(45, 38, seed=9))
    whole, tiled = _be(name, "cuda", precision), _be(name, "cuda", precision)
    whole.adapt(x, t, SCHED)
    run.adapt_tiled(tiled, x, t, SCHED, (16, 20))
    # the tiled update vs the whole-image update, relative to the update's size (tiles use
    # the reference ops: another summation order, and TF32 rounding in tf32)
    p0 = {k: v.cuda() for k, v in P.items()}
    moved = _maxdiff(whole.params(), p0)
    assert moved > 1e-4
    assert _maxdiff(whole.params(), tiled.params()) < (1e-3 if precision == "fp32" else 5e-2) * moved
    torch.testing.assert_close(run.tiled_forward(tiled, x, 12), tiled.forward(x), atol=tol, rtol=0)
    lr = x[..., :20, :17].contiguous()
    torch.testing.assert_close(run.upscale(tiled, lr, 2, tile=14), run.upscale(tiled, lr, 2), atol=tol, rtol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["reference", "triton", "cuda"])
def test_gpu_memory_estimate_bounds_measured(name):
    """memory_per_pixel is an upper bound of the measured device peak (allocator bytes)."""
    ok, why = backends.available("cuda")[name]
    if not ok:
        pytest.fail(f"{name} unavailable on the GPU: {why}")
    be = _be(name, "cuda")
    s = 512
    x, t = (v.cuda() for v in _pair(s, s, seed=10))
    runs = {"forward": lambda: be.upscale(x), "adapt": lambda: be.adapt(x, t, [1e-4]),
            "region_grads": lambda: be.region_grads(x, t, (8, s - 8, 8, s - 8), t.numel())}
    for kind, fn in runs.items():
        fn()  # warm-up (graphs, autotune, workspaces)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        used = torch.cuda.max_memory_allocated() - base
        est = planner.memory_per_pixel(be, kind) * s * s + planner.memory_per_pixel(be, "const")
        assert used <= est, f"{name} {kind}: measured {used / 2**20:.1f} MiB > estimate {est / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_batched_regions_equal_one_by_one(name):
    """Regions through region_grads in a batch (per-element boxes) == one at a time."""
    x, t = _pair(26, 23, seed=11)
    regions = tiles.tiles(26, 23, 6)
    a, b = _be(name), _be(name)
    la = run._tiled_step(a, x, t, regions, t.numel(), 0.02, batch=1)
    lb = run._tiled_step(b, x, t, regions, t.numel(), 0.02, batch=4)
    assert abs(float(la) - float(lb)) < ATOL
    assert _maxdiff(a.params(), b.params()) < ATOL
    with pytest.raises(ValueError, match="one such box per batch element"):
        b.region_grads(x[..., :10, :10].expand(2, 3, 10, 10), t[..., :10, :10].expand(2, 3, 10, 10),
                       [(0, 5, 0, 5)], t.numel())


def test_plan_crops_batch():
    be = backends.get(CPU_BACKENDS[-1], "cpu")
    p = planner.plan(be, 1000, 1000, 2, 1, 2**30, adapt_on="crops", crop_size=64, n_crops=16)
    assert p.adapt_mode == "crops" and tuple(p.adapt_tile) == (64, 64) and p.adapt_batch == 16
    # a budget that fits 3.5 crops' working memory: batches of 3 crops
    fixed = (planner.IMAGE_BYTES["lr"] + planner.IMAGE_BYTES["son_up"]) * 300 * 300 + planner.memory_per_pixel(be, "const")
    per = planner.memory_per_pixel(be, "region_grads") * (64 + 2 * tiles.HALO) ** 2
    q = planner.plan(be, 300, 300, 2, 1, int(fixed + 3.5 * per), adapt_on="crops", crop_size=64, n_crops=16)
    assert q.adapt_batch == 3 and q.adapt_bytes <= q.budget
    with pytest.raises(ValueError, match="adaptation on crops needs at least"):
        planner.plan(be, 300, 300, 2, 1, int(fixed + 0.5 * per), adapt_on="crops", crop_size=64, n_crops=16)


def test_cpu_release_workspace_frees_the_arena():
    if "cpu" not in CPU_BACKENDS:
        pytest.skip("cpu backend not built")
    ops = torch.ops.mzsr_fast
    b = _be("cpu")
    x, _ = _pair(40, 40, seed=12)
    b.forward(x)
    n0 = int(ops.cpu_arena_allocs())
    b.forward(x)
    assert int(ops.cpu_arena_allocs()) == n0  # kept between calls
    b.release_workspace()
    b.forward(x)
    assert int(ops.cpu_arena_allocs()) == n0 + 1  # freed, so allocated again


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_api_releases_workspace_only_when_tiled(name, monkeypatch):
    calls = []
    cls = type(backends.get(name, "cpu"))
    monkeypatch.setattr(cls, "release_workspace", lambda self: calls.append(1))
    img = _img("rgb_u8")
    adapt_and_upscale(img, kernel=K, steps=1, weights=P, backend=name)
    assert calls == []
    adapt_and_upscale(img, kernel=K, steps=1, weights=P, backend=name, max_memory=_forcing_budget(name, 40, 34))
    assert calls == [1]
