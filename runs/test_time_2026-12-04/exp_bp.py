import sys, time, json
import numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path
from PIL import Image
from mzsr_fast import model, metrics
from mzsr_fast.degradation import degrade, gaussian_kernel, imresize
from mzsr_fast.train.meta import functional_forward
from mzsr_fast.zssr import self_ensemble, back_projection
from mzsr_fast.api import default_lr_schedule
params, meta = model.load_weights("mzsr_fast/weights/mzsr_x2_direct.safetensors")
SET = {"g20": (21, 2.0, 2.0, 0.0), "g02": (21, 0.2, 0.2, 0.0), "gani": (15, 4.0, 1.0, -0.5)}
files = sorted(Path("/work/shared/data/train/bsd200").glob("*.png"))[5::29][:6]
res = {}
def ps(sr, hr):
    return metrics.psnr_y((sr[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8), hr, 2)
for sname, ka in SET.items():
    k = gaussian_kernel(*ka)
    for f in files:
        hr = np.asarray(Image.open(f).convert("RGB")); h, w = hr.shape[:2]; c = 100
        hr = np.ascontiguousarray(hr[h//2-c:h//2+c, w//2-c:w//2+c])
        lr = torch.from_numpy(degrade(hr, k, 2, "direct")).permute(2, 0, 1)[None].float() / 255
        son_up = imresize(degrade(lr, k, 2, "direct"), output_shape=tuple(lr.shape[-2:]))
        for steps in (1, 10):
            sched = default_lr_schedule(steps)
            fast = {n: v.clone().requires_grad_(True) for n, v in params.items()}
            for i in range(steps):
                loss = (functional_forward(fast, son_up) - lr).abs().mean()
                g = torch.autograd.grad(loss, list(fast.values()))
                fast = {n: (v - sched[i] * gi).detach().requires_grad_(True) for (n, v), gi in zip(fast.items(), g)}
            pr = lambda x: functional_forward(fast, imresize(x, output_shape=(2*x.shape[-2], 2*x.shape[-1]))).detach().clamp(0, 1)
            sr = pr(lr)
            d = res.setdefault(f"{sname}_s{steps}", {})
            d.setdefault("plain", []).append(ps(sr, hr))
            y = sr
            for r in range(1, 41):
                y = back_projection(y, lr, k, 2, "direct")
                if r in (5, 10, 20, 40):
                    d.setdefault(f"bp{r}", []).append(ps(y, hr))
            e = self_ensemble(pr, lr, 2, k, "direct", flips=True, bp_iters=0)
            d.setdefault("ens", []).append(ps(e, hr))
            for r in range(1, 21):
                e = back_projection(e, lr, k, 2, "direct")
                if r in (10, 20):
                    d.setdefault(f"ens_bp{r}", []).append(ps(e, hr))
    print(sname, {kk: {m: round(float(np.mean(v)), 3) for m, v in d2.items()} for kk, d2 in res.items() if kk.startswith(sname)}, flush=True)
