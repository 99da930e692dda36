"""MAML meta-gradients: second order against central finite differences (float64, the real
8-layer net on tiny patches), the first-order option against its closed form, the
multi-step loss weights, and the functional forward against the module."""
import pytest
import torch

from mzsr_fast import model
from mzsr_fast.train.data import Task
from mzsr_fast.train.meta import adapt, functional_forward, meta_gradients, msl_weights, task_meta_loss


def _tasks(n, size, dtype, seed=0, n_patch=2):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        y = torch.rand(2 * n_patch, 3, size[0], size[1], generator=g, dtype=dtype)
        x = (y + 0.1 * torch.randn(y.shape, generator=g, dtype=dtype)).clamp(0, 1)
        out.append(Task(x[:n_patch], y[:n_patch], x[n_patch:], y[n_patch:], None))
    return out


def _params(dtype, seed=0):
    return {k: v.to(dtype).requires_grad_(True) for k, v in model.init_params(seed).items()}


def _objective(params, tasks, **kw):
    total = 0.0
    for t in tasks:
        total = total + task_meta_loss(params, t, **kw) / len(tasks)
    return total


@pytest.mark.parametrize(
    "size,inner_steps,weights",
    [((4, 5), 1, [1.0]), ((5, 3), 2, [0.3, 0.7])],
)
def test_second_order_matches_finite_differences(size, inner_steps, weights):
    dtype = torch.float64
    params = _params(dtype)
    tasks = _tasks(2, size, dtype, n_patch=1)
    kw = dict(inner_steps=inner_steps, alpha=0.2, weights=weights)
    grads, _ = meta_gradients(params, tasks, meta_batch=len(tasks), first_order=False, **kw)
    fo, _ = meta_gradients(params, tasks, meta_batch=len(tasks), first_order=True, **kw)
    g = torch.Generator().manual_seed(1)
    for trial in range(1):
        # a unit-norm direction and a small step: the objective is piecewise smooth (ReLU and
        # |.| kinks make the inner gradient jump), so the probe must not cross a kink
        d = {k: torch.randn(v.shape, generator=g, dtype=dtype) for k, v in params.items()}
        norm = float(sum((v * v).sum() for v in d.values())) ** 0.5
        d = {k: v / norm for k, v in d.items()}
        eps = 1e-6
        with torch.no_grad():
            plus = {k: (v + eps * d[k]).requires_grad_(True) for k, v in params.items()}
            minus = {k: (v - eps * d[k]).requires_grad_(True) for k, v in params.items()}
        fd = (float(_objective(plus, tasks, **kw).detach()) - float(_objective(minus, tasks, **kw).detach())) / (2 * eps)
        so = float(sum((gi * d[k]).sum() for k, gi in zip(params, grads)))
        fo_dir = float(sum((gi * d[k]).sum() for k, gi in zip(params, fo)))
        tol = 1e-4 * abs(fd) + 1e-9
        assert abs(so - fd) <= tol, f"trial {trial}: 2nd-order {so!r} vs finite diff {fd!r} (tol {tol:.2e})"
        # the check can fail: first order must be measurably off the finite difference
        assert abs(fo_dir - fd) > 20 * tol, f"first order {fo_dir!r} indistinguishable from FD {fd!r} (tol {tol:.2e})"


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_first_order_closed_form(dtype, atol):
    params = _params(dtype, seed=3)
    (task,) = _tasks(1, (5, 6), dtype, seed=3)
    alpha = 0.05
    grads, _ = meta_gradients(params, [task], meta_batch=1, inner_steps=1, alpha=alpha, weights=[1.0], first_order=True)
    # FOMAML: grad = dL_te/dtheta' evaluated at theta' = theta - alpha dL_tr/dtheta
    p0 = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    ltr = (model.forward(p0, task.x_tr) - task.y_tr).abs().mean()
    gtr = torch.autograd.grad(ltr, list(p0.values()))
    p1 = {k: (v.detach() - alpha * gi).requires_grad_(True) for (k, v), gi in zip(p0.items(), gtr)}
    lte = (model.forward(p1, task.x_te) - task.y_te).abs().mean()
    want = torch.autograd.grad(lte, list(p1.values()))
    for k, a, b in zip(params, grads, want):
        err = float((a - b).abs().max())
        assert err <= atol * max(1.0, float(b.abs().max())), f"{k}: max err {err:.3e} > atol {atol}"


def test_meta_batch_split_sums_to_full():
    """Sum of per-shard meta-gradients (what all_reduce adds) equals the full meta-batch one."""
    dtype = torch.float64
    params = _params(dtype)
    tasks = _tasks(3, (4, 5), dtype, n_patch=1)
    kw = dict(meta_batch=3, inner_steps=2, alpha=0.05, weights=[0.5, 0.5])
    full, lf = meta_gradients(params, tasks, **kw)
    a, la = meta_gradients(params, tasks[0::2], **kw)
    b, lb = meta_gradients(params, tasks[1::2], **kw)
    for k, f, x, y in zip(params, full, a, b):
        assert torch.allclose(f, x + y, rtol=1e-10, atol=1e-14), k
    assert abs(lf - (la + lb)) < 1e-12


def test_adapt_steps_decrease_inner_loss():
    params = _params(torch.float32)
    (task,) = _tasks(1, (8, 8), torch.float32)
    fasts = adapt(params, task.x_tr, task.y_tr, 3, 0.05)
    losses = [float((functional_forward(f, task.x_tr) - task.y_tr).abs().mean().detach()) for f in [params] + fasts]
    assert losses[-1] < losses[0], f"inner SGD did not reduce the loss: {losses}"


def test_per_step_alpha_schedule():
    """adapt(alpha=(a0, a1)): step i uses a_i and the last rate repeats, the same weights as
    chaining one-step adaptations at those rates; --alpha parses both forms."""
    import argparse

    from mzsr_fast.train.meta import parse_alpha

    params = _params(torch.float64)
    (task,) = _tasks(1, (6, 7), torch.float64)
    fasts = adapt(params, task.x_tr, task.y_tr, 3, (0.03, 0.01))
    chain, ref = params, []
    for a in (0.03, 0.01, 0.01):
        chain = adapt(chain, task.x_tr, task.y_tr, 1, a)[0]
        ref.append(chain)
    for got, want in zip(fasts, ref):
        for k in want:
            torch.testing.assert_close(got[k], want[k], atol=1e-12, rtol=0)
    other = adapt(params, task.x_tr, task.y_tr, 2, 0.01)
    assert not torch.allclose(other[1]["layers.0.weight"], fasts[1]["layers.0.weight"])
    assert parse_alpha("0.02") == 0.02 and parse_alpha("0.02,0.01") == (0.02, 0.01)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_alpha("0.02,-1")
    from mzsr_fast.train import gpu  # the GPU recipe checks it before any stage runs

    with pytest.raises(SystemExit):
        gpu.main(["recipe", "--out", "unused", "--alpha", "0.02,-1"])


def test_functional_forward_matches_module():
    params = model.init_params(0)
    x = torch.rand(2, 3, 7, 9)
    net = model.MZSRNet.from_params(params)
    torch.testing.assert_close(functional_forward(params, x), net(x), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(functional_forward(params, x), model.forward(params, x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_msl_weights(k):
    w0 = msl_weights(k, 0, 100)
    assert abs(sum(w0) - 1) < 1e-12 and all(abs(v - 1 / k) < 1e-12 for v in w0), w0
    wend = msl_weights(k, 10_000, 100)
    assert abs(sum(wend) - 1) < 1e-12
    if k > 1:
        assert all(abs(v - 0.03 / k) < 1e-12 for v in wend[:-1]), wend
        wmid = msl_weights(k, 50, 100)
        assert w0[0] > wmid[0] > wend[0] and w0[-1] < wmid[-1] < wend[-1], wmid
    assert msl_weights(k, 0, 100, multi_step=False) == [0.0] * (k - 1) + [1.0]


def _backend_names():
    from mzsr_fast import backends

    return [n for n, (ok, _why) in backends.available("cpu").items() if ok and n in ("reference", "cpu")]


@pytest.mark.parametrize("name", _backend_names())
def test_fo_backend_gradients_match_autograd(name):
    weights = [0.4, 0.6]  # both steps weighted: covers the multi-step path and the last step
    from mzsr_fast import backends
    from mzsr_fast.train.meta import fo_backend_gradients

    params = _params(torch.float32, seed=2)
    tasks = _tasks(2, (9, 7), torch.float32, seed=2, n_patch=2)
    kw = dict(meta_batch=2, inner_steps=2, alpha=0.05, weights=weights)
    want, lw = meta_gradients(params, tasks, first_order=True, **kw)
    be = backends.get(name, "cpu", "fp32")
    got, lg = fo_backend_gradients(params, tasks, be, **kw)
    for k, a, b in zip(params, got, want):
        err = float((a - b).abs().max())
        tol = 1e-4 * max(1e-3, float(b.abs().max()))
        assert err <= tol, f"{name} {k}: max err {err:.3e} > {tol:.3e}"
    assert abs(lg - lw) <= 1e-5 * abs(lw), (lg, lw)


def test_ema_is_the_average_of_the_iterates_and_survives_resume(tmp_path):
    """``--ema d``: ema.safetensors after n steps equals d^n p0 + sum (1-d) d^(n-i) p_i over
    the iterates p_i, rebuilt here from a run resumed after every single step (its
    last.safetensors per step); the run in one go gives the same average, so the average is
    checkpointed and resumed too, and the raw weights are untouched by it."""
    import argparse

    from trainproc import png_folder
    from mzsr_fast.train import meta

    data = png_folder(tmp_path / "hr", [(24, 24 + 2 * i) for i in range(3)])
    d, n = 0.7, 3

    def args(out, steps, *extra):
        p = meta.add_args(argparse.ArgumentParser())
        return p.parse_args(["--data", str(data), "--out", str(out), "--patch", "16", "--meta-batch", "1",
                             "--inner-steps", "1", "--n-train", "2", "--n-test", "2", "--steps", str(steps),
                             "--val-every", "0", "--no-bar", "--threads", "1", "--beta", "1e-2", "--seed", "3",
                             *extra])

    whole = meta.run(args(tmp_path / "whole", n, "--ema", str(d)))
    plain = meta.run(args(tmp_path / "plain", n))
    for k in plain["params"]:  # the average does not touch the trained weights
        assert torch.equal(whole["params"][k], plain["params"][k]), k
    iterates = [model.init_params(3)]
    for s in range(1, n + 1):
        meta.run(args(tmp_path / "steps", s, "--ema", str(d), "--resume"))
        iterates.append(model.load_weights(tmp_path / "steps" / "last.safetensors")[0])
    expect = {k: d ** n * iterates[0][k] + sum((1 - d) * d ** (n - i) * iterates[i][k] for i in range(1, n + 1))
              for k in iterates[0]}
    for folder in ("whole", "steps"):
        got, md = model.load_weights(tmp_path / folder / "ema.safetensors")
        assert float(md["ema"]) == d
        for k in expect:
            err = float((got[k] - expect[k]).abs().max())
            assert err < 1e-6, f"{folder} {k}: EMA differs by {err:.3e}"
    moved = max(float((iterates[n][k] - iterates[0][k]).abs().max()) for k in expect)
    assert moved > 1e-4, "the weights did not move: the test would not see a wrong average"


def test_bf16_autocast_meta_gradient_tracks_fp32():
    """``--amp bf16`` (2.0x faster second-order meta-iterations on the AMD EPYC VM,
    runs/amp_2026-12-05/): the bf16-autocast meta-gradient of the real net on son-split tasks
    points where the fp32 one does.  Measured on the campaign's real tasks: cosine 0.982-0.999,
    relative norm error 0.04-0.29; bf16 cannot do much better, so the bar is the direction."""
    import types

    from mzsr_fast.train.common import autocast
    from mzsr_fast.train.data import PatchSampler, sample_task, step_rng

    g = torch.Generator().manual_seed(0)
    # smooth random images (blurred noise), so the patches carry structure a net can fit
    imgs = [torch.nn.functional.avg_pool2d(torch.rand(1, 3, 72, 72, generator=g), 5, 1, 2)[0] for _ in range(3)]
    sampler = PatchSampler([(im * 255).round().to(torch.uint8) for im in imgs], flat_threshold=0.0)
    tasks = [sample_task(sampler, step_rng(5, 0, i), patch=32, n_train=2, n_test=2, scale=2, subsampling="direct",
                         inner="son", one_image=True) for i in range(2)]
    params = {k: v.requires_grad_(True) for k, v in model.init_params(0).items()}
    amp = lambda: autocast(types.SimpleNamespace(amp="bf16"), torch.device("cpu"))  # noqa: E731  (as meta.run)
    kw = dict(meta_batch=2, inner_steps=1, alpha=0.02, weights=[1.0])
    g32, l32 = meta_gradients(params, tasks, **kw)
    g16, l16 = meta_gradients(params, tasks, amp=amp, **kw)
    a, b = torch.cat([x.flatten() for x in g32]), torch.cat([x.flatten() for x in g16])
    cos = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    rel = float((a - b).norm() / a.norm())
    assert cos > 0.97, f"bf16 meta-gradient cosine {cos:.4f} (relative error {rel:.3f}) against fp32"
    assert abs(l16 - l32) < 0.02 * abs(l32) + 1e-4, f"meta loss fp32 {l32:.6f} bf16 {l16:.6f}"
    for x in g16:
        assert x.dtype == torch.float32  # the gradients land on the fp32 weights
