"""Triton kernels of mzsr_fast (installed as ``mzsr_fast.kernels``)."""
