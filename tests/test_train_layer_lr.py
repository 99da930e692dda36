"""Per-layer inner rates folded into the weights (mzsr_fast.train.layer_lr): the fold keeps the
network's function, one SGD step of the folded file equals per-layer rates alpha / a_l^2 on the
original (and alpha / P_l^2 on the biases), and gradients reach the log-scales."""
import pytest
import torch

from mzsr_fast import model
from mzsr_fast.train.layer_lr import effective_rates, fold, unrolled_losses
from mzsr_fast.train.meta import functional_forward


def _params():
    return {k: v.double() for k, v in model.init_params(3).items()}


def test_fold_keeps_the_function():
    p = _params()
    la = torch.randn(8, dtype=torch.float64) * 0.5
    x = torch.rand(2, 3, 11, 9, dtype=torch.float64)
    a, b = functional_forward(p, x), functional_forward(fold(p, la), x)
    assert (a - b).abs().max() < 1e-12, float((a - b).abs().max())
    with pytest.raises(ValueError, match="shape"):
        fold(p, torch.zeros(7))


def test_folded_sgd_step_is_per_layer_rates():
    p = _params()
    la = torch.randn(8, dtype=torch.float64) * 0.4
    x, y = torch.rand(1, 3, 10, 12, dtype=torch.float64), torch.rand(1, 3, 10, 12, dtype=torch.float64)
    alpha = 0.01

    def step(params, rates):
        q = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        g = torch.autograd.grad((functional_forward(q, x) - y).abs().mean(), list(q.values()))
        return {k: (v - rates[k] * gi).detach() for (k, v), gi in zip(q.items(), g)}

    folded = step(fold(p, la), {k: alpha for k in p})
    er = effective_rates(la)
    per_layer = {k: alpha * er["weight" if k.endswith(".weight") else "bias"][int(k.split(".")[1])] for k in p}
    direct = step(p, {k: torch.tensor(v, dtype=torch.float64) for k, v in per_layer.items()})
    x2 = torch.rand(1, 3, 13, 7, dtype=torch.float64)
    # effective_rates rounds to 4 decimals: compare the functions after the step
    d = (functional_forward(folded, x2) - functional_forward(direct, x2)).abs().max()
    assert d < 1e-5, float(d)


def test_gradients_reach_the_scales():
    from types import SimpleNamespace

    p = _params()
    la = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    lg = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    t = SimpleNamespace(x_tr=torch.rand(1, 3, 8, 8, dtype=torch.float64), y_tr=torch.rand(1, 3, 8, 8, dtype=torch.float64),
                        x_te=torch.rand(1, 3, 16, 16, dtype=torch.float64), y_te=torch.rand(1, 3, 16, 16, dtype=torch.float64))
    ls = unrolled_losses(p, la, lg, t, [0.02, 0.01], (0, 1, 2))
    ga, gg = torch.autograd.grad(ls[2], [la, lg], retain_graph=True)
    assert ga.abs().sum() > 0 and gg.abs().sum() > 0
    assert abs(float(ga.sum())) < 1e-9  # the mean is removed: a common shift of all scales is no change
    g0 = torch.autograd.grad(ls[0], [la], allow_unused=True)[0]
    assert g0 is None or g0.abs().max() < 1e-9  # the unadapted output does not depend on the scales
