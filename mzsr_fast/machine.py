"""Facts about this machine for ``mzsr-fast eval --json`` / ``mzsr-fast info`` (cli.py) and
the benchmark harness (benchmarks/harness.py): CPU model, cores, memory, versions, GPU."""
from __future__ import annotations

import datetime
import os
import platform

__all__ = ["cpu_model", "machine_info"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU model and cores, memory (GiB), torch threads, python/torch/triton versions, the
    GPU's name, SMs and memory (when CUDA is available), and the UTC date (``%Y-%m-%d %H:%M``)."""
    import torch

    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "host": platform.node(),
        "cpu": cpu_model(),
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
