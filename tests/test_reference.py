"""The reference ops (mzsr_fast.reference) against autograd of the nn.Module view: the
hand-written backward that every fused kernel copies must itself be right."""
import pytest
import torch

from mzsr_fast import model, reference as R

SHAPES = [(1, 1, 1), (1, 5, 7), (2, 9, 4), (1, 16, 16)]  # (N, H, W)


def _nhwc(x):
    return x.permute(0, 2, 3, 1).contiguous()


@pytest.mark.parametrize("n,h,w", SHAPES)
@pytest.mark.parametrize("dtype,atol,rtol", [(torch.float64, 1e-10, 1e-10), (torch.float32, 2e-5, 1e-4)])
def test_manual_backward_equals_autograd(n, h, w, dtype, atol, rtol):
    torch.manual_seed(0)
    p = {k: v.to(dtype) + 0.01 * torch.randn_like(v.to(dtype)) for k, v in model.init_params(1).items()}
    x = torch.rand(n, 3, h, w, dtype=dtype)
    tgt = torch.rand(n, 3, h, w, dtype=dtype)
    leaves = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    loss = (model.forward(leaves, x) - tgt).abs().mean()
    g_auto = torch.autograd.grad(loss, list(leaves.values()))

    plist = [p[k] for k in model.param_names()]
    acts = R.net_forward(plist, _nhwc(x))
    torch.testing.assert_close(acts[-1], _nhwc(model.forward(p, x)), atol=atol, rtol=rtol)
    l2, gout = R.l1_loss_grad(acts[-1], _nhwc(tgt))
    torch.testing.assert_close(l2, loss.detach(), atol=atol, rtol=rtol)
    g_man = R.net_backward(plist, acts, gout)
    for name, a, b in zip(model.param_names(), g_auto, g_man):
        torch.testing.assert_close(b, a, atol=atol, rtol=rtol, msg=lambda m: f"{name} ({dtype}, atol={atol}, rtol={rtol}): {m}")


def test_adapt_step_updates_in_place_and_matches_sgd():
    torch.manual_seed(1)
    p = model.init_params(2)
    x, tgt = torch.rand(1, 3, 6, 5), torch.rand(1, 3, 6, 5)
    net = model.MZSRNet.from_params(p)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss_ref = (net(x) - tgt).abs().mean()
    loss_ref.backward()
    opt.step()
    plist = [p[k].clone() for k in model.param_names()]
    loss = R.adapt_step(plist, _nhwc(x), _nhwc(tgt), torch.tensor(0.01))
    torch.testing.assert_close(loss, loss_ref.detach())
    for name, a in zip(model.param_names(), plist):
        torch.testing.assert_close(a, dict(net.named_parameters())[name].detach(), atol=1e-6, rtol=1e-5)


def test_dgrad_mask_and_sgd_errors():
    gy = torch.randn(1, 4, 4, 8)
    w = torch.randn(8, 5, 3, 3)
    act = torch.randn(1, 4, 4, 5)
    g = R.conv3x3_dgrad(gy, w, act)
    assert torch.all(g[act <= 0] == 0)
    with pytest.raises(ValueError):
        R.sgd_update_([torch.zeros(1)], [], torch.tensor(1.0))
