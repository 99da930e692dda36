"""Reproducer: a CUDA op given a weight whose Cin does not match the input must raise a
RuntimeError (seen on an H100, 2026-11-26: the process died with SIGSEGV instead, in
tests/test_cuda_backend.py::test_argument_checks).  Run it alone, or under cuda-gdb for a
backtrace:  cuda-gdb -q -batch -ex run -ex bt --args python3 scripts/cuda_argcheck_repro.py"""
import sys

import torch

import mzsr_fast._C  # noqa: F401  (registers torch.ops.mzsr_fast)

x = torch.rand(1, 5, 6, 3, device="cuda")
cases = {
    "Cin mismatch": lambda: torch.ops.mzsr_fast.conv3x3_fwd(x, torch.rand(64, 64, 3, 3, device="cuda"), None, False, None),
    "float64": lambda: torch.ops.mzsr_fast.conv3x3_fwd(x.double(), torch.rand(64, 3, 3, 3, device="cuda").double(), None, False, None),
    "bad precision": lambda: torch.ops.mzsr_fast.cuda_conv3x3_fwd(x, torch.rand(64, 3, 3, 3, device="cuda"), None, False, None, "fp16"),
}
bad = 0
for name, fn in cases.items():
    print(f"case {name} ...", flush=True)
    try:
        fn()
        print("  no error raised", flush=True)
        bad += 1
    except RuntimeError as e:
        print("  raised:", str(e).splitlines()[0][:200], flush=True)
sys.exit(1 if bad else 0)
