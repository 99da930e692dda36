import sys, time, numpy as np, torch, torch.nn.functional as F
torch.set_num_threads(1)
from mzsr_fast.train import kernel_net as T
from mzsr_fast import kernel_net as kn
from mzsr_fast.train.data import load_folder
ims = load_folder('../shared/data/train')
held = ims[::10]; tr = [im for i, im in enumerate(ims) if i % 10]
P = 32
vx, vt = T.make_batch(held, np.random.default_rng(1), 128, P, 2, 'direct', 0.12, 6)
variant = sys.argv[1]
def lcn(x, r=4):
    k = 2 * r + 1
    m = F.avg_pool2d(F.pad(x, (r,)*4, mode='replicate'), k, 1)
    d = x - m
    s = F.avg_pool2d(F.pad(d * d, (r,)*4, mode='replicate'), k, 1).sqrt()
    return d / (s + 0.02)
class Net(kn.KernelNet):
    def maps(self, x):
        y = lcn(x) if 'lcn' in variant else x - 0.5
        for conv in self.body:
            y = F.relu(conv(y))
        out = self.head(y)
        return out[:, :3], out[:, 3:]
    def forward(self, x, margin=4):
        if 'mean' not in variant: return super().forward(x, margin)
        L, _ = self.maps(x); return L[..., margin:-margin, margin:-margin].mean((2, 3))
torch.manual_seed(0)
net = Net(32, 7)
opt = torch.optim.Adam(net.parameters(), lr=float(sys.argv[3]) if len(sys.argv) > 3 else 1e-3)
t0 = time.time(); rl = None
for step in range(1, int(sys.argv[2]) + 1):
    x, t = T.make_batch(tr, np.random.default_rng([0, step]), 32, P, 2, 'direct', 0.12, 6)
    loss = T.loss_fn(net(x), t); opt.zero_grad(); loss.backward(); opt.step()
    rl = float(loss.detach()) if rl is None else .95 * rl + .05 * float(loss.detach())
    if step % 50 == 0:
        with torch.no_grad(): pv = net(vx)
        print(variant, step, round(time.time() - t0), round(rl, 3), round(float(T.loss_fn(pv, vt)), 3), flush=True)
