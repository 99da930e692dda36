"""mzsr_fast: latency-optimized Meta-Transfer Zero-Shot Super-Resolution."""
__version__ = "0.1.0"

from .api import adapt_and_upscale, default_lr_schedule  # noqa: E402
from .batch import upscale_files  # noqa: E402
from .degradation import degrade, gaussian_kernel, imresize  # noqa: E402


def zssr_upscale(*args, **kwargs):
    """Vanilla ZSSR baseline; see :func:`mzsr_fast.zssr.zssr_upscale`."""
    from .zssr import zssr_upscale as _z

    return _z(*args, **kwargs)


__all__ = ["__version__", "adapt_and_upscale", "default_lr_schedule", "degrade", "gaussian_kernel", "imresize",
           "upscale_files", "zssr_upscale"]
