"""Sources and flags of the ``mzsr_fast._C`` extension, shared by setup.py (AOT build) and
``mzsr_fast/_ext.py`` (JIT build through ninja), so that both build the same thing."""
from __future__ import annotations

import glob
import os

#: csrc/ of the source checkout this package sits in (absent in a wheel install)
CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")


def cuda_archs() -> list[str]:
    return [a.strip() for a in os.environ.get("MZSR_FAST_CUDA_ARCHS", "80;90").split(";") if a.strip()]


def ext_sources_and_flags(with_cuda: bool, debug: bool = False):
    """-> (sources, cxx flags, nvcc flags, link flags).  Empty sources if csrc is missing."""
    if not os.path.isdir(CSRC):
        return [], [], [], []
    sources = sorted(glob.glob(os.path.join(CSRC, "*.cpp")) + glob.glob(os.path.join(CSRC, "cpu", "*.cpp")))
    opt = ["-O0", "-g"] if debug else ["-O3"]
    cflags = opt + ["-std=c++17", "-fopenmp", f"-I{CSRC}"]
    ldflags = ["-fopenmp"]
    nvflags: list[str] = []
    if with_cuda:
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")) + glob.glob(os.path.join(CSRC, "cuda", "*.cpp")))
        cflags.append("-DMZSR_FAST_WITH_CUDA")
        nvflags = (["-O0", "-g", "-G"] if debug else ["-O3"]) + [
            "-std=c++17",
            "-lineinfo",
            f"-I{CSRC}",
            "-DMZSR_FAST_WITH_CUDA",
        ]
        for a in cuda_archs():
            nvflags.append(f"-gencode=arch=compute_{a},code=sm_{a}")
    return sources, cflags, nvflags, ldflags
