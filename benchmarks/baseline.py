"""Plain-PyTorch baselines timed beside the backends in the same run:

* ``module_sgd``: the ``nn.Module`` view + ``torch.optim.SGD`` (what a user would write),
  NCHW or channels_last;
* ``compile``: the reference forward under ``torch.compile`` with autograd.

Both make the son exactly as ``adapt_and_upscale`` does, so whole-call timings compare.
"""
from __future__ import annotations

import torch

from mzsr_fast import default_lr_schedule, degrade, imresize, model


class ModuleSGD:
    """adapt + upscale with nn.Module + torch.optim.SGD. x tensors NCHW float32."""

    def __init__(self, params, device, channels_last=False, compile=False):
        self.params0 = params
        self.device = torch.device(device)
        self.cl = channels_last
        self.compile = compile
        self.net = None

    def _fmt(self, t):
        return t.contiguous(memory_format=torch.channels_last) if self.cl else t

    def reset(self):
        """Fresh copy of the starting weights (the module, and its compiled graph, are kept
        across calls, as the backends keep their buffers and graphs)."""
        p = {k: v.to(self.device) for k, v in self.params0.items()}
        if self.net is None:
            net = model.MZSRNet.from_params(p)
            self.net = net.to(memory_format=torch.channels_last) if self.cl else net
            self.fwd = torch.compile(self.net) if self.compile else self.net
        else:
            with torch.no_grad():
                for name, t in self.net.named_parameters():
                    t.copy_(p[name])
        self.opt = torch.optim.SGD(self.net.parameters(), lr=1e-2)

    def adapt(self, son_up, lr_img, schedule):
        son_up, lr_img = self._fmt(son_up), self._fmt(lr_img)
        for lr in schedule:
            for g in self.opt.param_groups:
                g["lr"] = lr
            self.opt.zero_grad(set_to_none=True)
            loss = (self.fwd(son_up) - lr_img).abs().mean()
            loss.backward()
            self.opt.step()

    @torch.no_grad()
    def upscale(self, x):
        return self.fwd(self._fmt(x))

    def adapt_and_upscale(self, lr_img, kernel, steps, scale=2, subsampling="direct"):
        """lr_img: (1, 3, H, W) float32 on the device -> (1, 3, sH, sW)."""
        h, w = lr_img.shape[-2:]
        son = degrade(lr_img, kernel, scale, subsampling if kernel is not None else "bicubic")
        son_up = imresize(son, output_shape=(h, w))
        lr_up = imresize(lr_img, output_shape=(h * scale, w * scale))
        self.reset()
        self.adapt(son_up, lr_img, default_lr_schedule(steps))
        return self.upscale(lr_up).clamp(0, 1)
