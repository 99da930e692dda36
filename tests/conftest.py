"""Shared test set-up.

TRITON_INTERPRET must be set before any Triton kernel is defined, so it is set here, at
collection time, whenever no CUDA device is present (CI and development machines).
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
DATA = os.path.normpath(os.environ.get("MZSR_FAST_DATA", DATA))

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="session")
def data_dir():
    if not os.path.isdir(DATA):
        pytest.fail(f"shared data not found at {DATA} (set MZSR_FAST_DATA)")
    return DATA


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (runs in benchmarks/gpu_check.sh)")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)
