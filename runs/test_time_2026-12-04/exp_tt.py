"""Test-time options prototype on TRAINING images (not Set5): ensemble, back-projection, steps, augmented adaptation."""
import sys, time, json, math
import numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path
from PIL import Image
from mzsr_fast import model, metrics
from mzsr_fast.degradation import degrade, gaussian_kernel, imresize
from mzsr_fast.train.meta import functional_forward
from mzsr_fast.zssr import self_ensemble, back_projection, _frame, _unframe
from mzsr_fast.api import default_lr_schedule

W = sys.argv[1] if len(sys.argv) > 1 else "mzsr_fast/weights/mzsr_x2_direct.safetensors"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 6
params, meta = model.load_weights(W)
sched_meta = model.schedule_from_metadata(meta)
k = gaussian_kernel(21, 2.0, 2.0, 0.0)
files = sorted(Path("/work/shared/data/train/bsd200").glob("*.png"))[::23][:N]

def adapt(lr, steps, sched, aug=False, seed=0):
    son_up = imresize(degrade(lr, k, 2, "direct"), output_shape=tuple(lr.shape[-2:]))
    fast = {n: v.clone().requires_grad_(True) for n, v in params.items()}
    rng = np.random.default_rng(seed)
    for i in range(steps):
        x, y = son_up, lr
        if aug:
            f = int(rng.integers(8))
            lf = _frame(lr, f)
            x, y = imresize(degrade(lf, k, 2, "direct"), output_shape=tuple(lf.shape[-2:])), lf
        loss = (functional_forward(fast, x) - y).abs().mean()
        g = torch.autograd.grad(loss, list(fast.values()))
        fast = {n: (v - sched[i] * gi).detach().requires_grad_(True) for (n, v), gi in zip(fast.items(), g)}
    return {n: v.detach() for n, v in fast.items()}

def predict_with(p):
    def pr(lrf):
        with torch.no_grad():
            return functional_forward(p, imresize(lrf, output_shape=(2 * lrf.shape[-2], 2 * lrf.shape[-1]))).clamp(0, 1)
    return pr

res = {}
def rec(name, img, sr, hr, t):
    v = metrics.psnr_y((sr[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8), hr, 2)
    res.setdefault(name, []).append((v, t))

for f in files:
    hr = np.asarray(Image.open(f).convert("RGB"))
    h, w = hr.shape[:2]; c = 120
    hr = np.ascontiguousarray(hr[h//2-c:h//2+c, w//2-c:w//2+c])
    lr8 = degrade(hr, k, 2, "direct")
    lr = torch.from_numpy(lr8).permute(2, 0, 1)[None].float() / 255
    for steps in (10, 25):
        sched = (sched_meta or default_lr_schedule(steps))
        sched = (list(sched) + [sched[-1]] * steps)[:steps]
        for aug in (False, True):
            t0 = time.perf_counter(); p = adapt(lr, steps, sched, aug); ta = time.perf_counter() - t0
            pr = predict_with(p)
            t0 = time.perf_counter(); sr = pr(lr); tu = time.perf_counter() - t0
            tag = f"s{steps}{'_aug' if aug else ''}"
            rec(tag, f, sr, hr, ta + tu)
            t0 = time.perf_counter(); y = sr
            for _ in range(10): y = back_projection(y, lr, k, 2, "direct")
            rec(tag + "_bp10", f, y, hr, ta + tu + time.perf_counter() - t0)
            t0 = time.perf_counter(); y = self_ensemble(pr, lr, 2, k, "direct", flips=True, bp_iters=0)
            te = time.perf_counter() - t0
            rec(tag + "_ens", f, y, hr, ta + te)
            t0 = time.perf_counter(); y2 = y
            for _ in range(10): y2 = back_projection(y2, lr, k, 2, "direct")
            rec(tag + "_ens_bp10", f, y2, hr, ta + te + time.perf_counter() - t0)
            t0 = time.perf_counter(); y = self_ensemble(pr, lr, 2, k, "direct", flips=True, bp_iters=10)
            rec(tag + "_zssrfinal", f, y, hr, ta + time.perf_counter() - t0)
    print(f.name, {n: round(v[-1][0], 2) for n, v in res.items()}, flush=True)
print(json.dumps({n: [round(float(np.mean([a for a, _ in v])), 3), round(float(np.mean([b for _, b in v])), 2)] for n, v in res.items()}, indent=0))
