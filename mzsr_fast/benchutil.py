"""Machine facts and small timing helpers shared by benchmarks, reports and ``eval``."""
from __future__ import annotations

import datetime
import os
import platform
import time


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU model and cores, memory, torch/triton versions, GPU name, UTC date."""
    import torch

    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    try:
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_sms=p.multi_processor_count, cuda=torch.version.cuda,
                    gpu_mem_gib=round(p.total_memory / 2**30, 1))
    return info


def sgemm_gflops(n: int = 2048, device: str = "cpu", repeat: int = 5) -> float:
    """Measured fp32 matmul rate (GFLOP/s) of an n x n x n product, best of ``repeat``."""
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeat + 1):
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def default_data_dir() -> str:
    """``$MZSR_FAST_DATA``, else ``../shared/data`` beside the repository."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.environ.get("MZSR_FAST_DATA", os.path.join(root, "..", "shared", "data"))


def set5_g20(data_dir: str | None = None):
    """The official Set5 g^d_2.0 LR images with their HR: ``(kernel (21, 21) float64,
    {name: (lr (h, w, 3) uint8, hr (2h, 2w, 3) uint8)})`` from ``set5_g20/`` and ``set5/``."""
    import numpy as np
    import scipy.io
    from PIL import Image

    d = data_dir or default_data_dir()
    k = scipy.io.loadmat(os.path.join(d, "set5_g20", "kernel.mat"))["kernel"]
    names = sorted(n for n in os.listdir(os.path.join(d, "set5_g20")) if n.endswith(".png"))
    imgs = {n: tuple(np.asarray(Image.open(os.path.join(d, sub, n)).convert("RGB")) for sub in ("set5_g20", "set5"))
            for n in names}
    return k, imgs


def gpu_adapt_case(size: int, steps: int, seed: int = 0):
    """The synthetic GPU timing case of the profiling tools: ``(device, params, x, target,
    up, schedule)`` with random ``x`` / ``target`` ``(1, 3, size, size)`` and ``up``
    ``(1, 3, 2 size, 2 size)`` float32 on CUDA, seed-0 initial params and the default
    ``steps``-step schedule; ``None`` (after printing "needs CUDA") without a GPU.  Turns
    ``cudnn.benchmark`` on for the reference."""
    import torch

    from . import model
    from .api import default_lr_schedule

    if not torch.cuda.is_available():
        print("needs CUDA")
        return None
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, size, size, generator=g).to(dev)
    t = torch.rand(1, 3, size, size, generator=g).to(dev)
    up = torch.rand(1, 3, 2 * size, 2 * size, generator=g).to(dev)
    return dev, model.init_params(0, device=dev), x, t, up, default_lr_schedule(steps)
