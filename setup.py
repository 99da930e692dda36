"""Build of mzsr_fast: the Python package plus one optional compiled extension
``mzsr_fast._C`` made of everything under ``csrc/``.

* ``csrc/ops.cpp`` (op schemas, always) and ``csrc/cpu/*.cpp`` (CPU kernels, OpenMP);
* ``csrc/cuda/*.cu`` + ``csrc/cuda/*.cpp`` only where a CUDA toolkit (nvcc) *and* a CUDA
  build of torch are both present.

Environment flags (see docs/backends.md, "Build flags"):

| flag | effect |
|---|---|
| MZSR_FAST_NO_EXT=1 | build no extension at all (pure Python; reference/triton backends only) |
| MZSR_FAST_NO_CUDA=1 | build the CPU part only, even where CUDA is present |
| MZSR_FAST_FORCE_CUDA=1 | build the CUDA part even when torch is CPU-only (fails without CUDA headers) |
| MZSR_FAST_CUDA_ARCHS | semicolon list of SM targets, default "80;90" |
| MZSR_FAST_DEBUG=1 | -O0 -g (and -G for device code) |
"""
import os

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _extensions():
    if _flag("MZSR_FAST_NO_EXT"):
        print("mzsr_fast: MZSR_FAST_NO_EXT set, building no extension")
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        print("mzsr_fast: torch is not importable at build time; building no extension "
              "(install torch first, then reinstall with --no-build-isolation)")
        return [], {}
    import importlib.util

    # load the helper by path: importing the package itself at build time is not needed
    spec = importlib.util.spec_from_file_location("_mzsr_build", os.path.join(ROOT, "mzsr_fast", "_build.py"))
    _build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(_build)
    ext_sources_and_flags = _build.ext_sources_and_flags

    want_cuda = not _flag("MZSR_FAST_NO_CUDA") and CUDA_HOME is not None and (
        torch.version.cuda is not None or _flag("MZSR_FAST_FORCE_CUDA")
    )
    sources, cflags, nvflags, ldflags = ext_sources_and_flags(want_cuda, debug=_flag("MZSR_FAST_DEBUG"))
    if not sources:
        return [], {}
    print(f"mzsr_fast: building _C with CUDA={want_cuda} from {len(sources)} sources")
    kind = CUDAExtension if want_cuda else CppExtension
    kw = dict(extra_compile_args={"cxx": cflags, "nvcc": nvflags} if want_cuda else {"cxx": cflags},
              extra_link_args=ldflags)
    ext = kind("mzsr_fast._C", [os.path.relpath(s, ROOT) for s in sources], **kw)
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()

setup(
    packages=["mzsr_fast", "mzsr_fast.backends", "mzsr_fast.train", "mzsr_fast.kernels"],
    package_dir={"mzsr_fast.kernels": "kernels"},
    package_data={"mzsr_fast": ["weights/*.safetensors", "weights/*.md", "weights/SHA256SUMS", "data/*"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
