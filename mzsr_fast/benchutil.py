"""Machine facts for ``mzsr-fast eval --json`` / ``mzsr-fast info`` (cli.py) and the synthetic
case of the Triton profiler (backends/triton_profile.py): what the installed package still
imports.  The benchmarks do not use this module: their harness (machine facts, data
loaders, timing helpers) is ``benchmarks/harness.py``."""
from __future__ import annotations

import datetime
import os
import platform


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
