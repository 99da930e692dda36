"""Benchmark set-up: machine facts go into every pytest-benchmark JSON."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_benchmark_update_json(config, benchmarks, output_json):
    from mzsr_fast.benchutil import machine_info

    output_json["mzsr_machine"] = machine_info()
