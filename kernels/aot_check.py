"""Ahead-of-time compile of the Triton kernels for a GPU architecture, without a GPU.

The interpreter tests check the kernels' arithmetic but not that they compile for a real
target (layouts, shared memory, wgmma lowering).  This compiles every kernel variant and
autotune config (or a quick subset) for sm_90 with Triton's own compiler and ptxas, and
reports shared memory, registers, spills and whether wgmma / 16-byte copies were used::

    env -u TRITON_INTERPRET python -m mzsr_fast.kernels.aot_check [--quick] [--arch 90]

Must run in a process where ``TRITON_INTERPRET`` is not set (jit functions are created
interpreted otherwise).  Exit status 1 if any variant fails to compile.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time


def _variants(K, quick: bool):
    """(label, fn, types, constexprs, aligned args, num_warps, num_stages)."""
    out = []
    dt = {0: "*fp32", 1: "*fp32", 2: "*bf16"}
    # pointers are 16-byte aligned at run time; image sizes are not specialised on
    ptrs_fwd = ["X", "Wt", "B", "RES", "TGT", "Y", "LOSS_PART"]
    for mode in (0, 1, 2):
        adt = dt[mode]
        for cin, cout, kind in [(3, 64, "relu"), (64, 64, "relu"), (64, 3, "res"), (64, 3, "l1")]:
            fn = {"relu": K.mzsr_conv3x3_fwd_relu_nhwc, "res": K.mzsr_conv3x3_fwd_residual_nhwc,
                  "l1": K.mzsr_conv3x3_fwd_residual_l1grad_nhwc}[kind]
            types = dict(X=adt, Wt=adt, B="*fp32", RES="*fp32", TGT="*fp32", Y=adt if kind != "res" else "*fp32",
                         LOSS_PART="*fp32", M="i32", H="i32", W="i32", inv_numel="fp32", M_BUCKET="i32")
            cfgs = K._TUNE[("fwd", mode)] if K._tunable("fwd", cin, cout, mode) else [K._fixed_config("fwd", cin, cout, mode)]
            for bm, bn, bk, nw, ns in cfgs:
                cx = dict(C_IN=cin, C_OUT=cout, RELU=kind == "relu", HAS_RES=kind != "relu", L1=kind == "l1",
                          MODE=mode, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
                out.append((f"fwd-{kind} {cin}->{cout} mode{mode} {bm}x{bn}x{bk} w{nw} s{ns}", fn, types, cx,
                            ptrs_fwd, nw, ns))
        for c_in, c_out in [(64, 64), (3, 64), (64, 3)]:
            types = dict(GY=adt, Wt=adt, MASK_SRC=adt, GX=adt, M="i32", H="i32", W="i32", M_BUCKET="i32")
            cfgs = K._TUNE[("dgrad", mode)] if K._tunable("dgrad", c_in, c_out, mode) else [K._fixed_config("dgrad", c_in, c_out, mode)]
            for bm, bn, bk, nw, ns in cfgs:
                cx = dict(C_IN=c_in, C_OUT=c_out, HAS_MASK=True, MODE=mode, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
                out.append((f"dgrad {c_in}->{c_out} mode{mode} {bm}x{bn}x{bk} w{nw} s{ns}",
                            K.mzsr_conv3x3_dgrad_relumask_nhwc, types, cx, ["GY", "Wt", "MASK_SRC", "GX"],
                            nw, ns))
        for cin, cout in [(3, 64)]:  # the 64-channel layers: wgrad3 below
            types = dict(X=adt, GY=adt, WS="*fp32", M="i32", H="i32", W="i32", CHUNK="i32", P_STRIDE="i32", M_BUCKET="i32")
            cfgs = [K._fixed_config("wgrad", cin, cout, mode)]
            for bm, bn, bk, nw, ns in cfgs:
                cx = dict(C_IN=cin, C_OUT=cout, MODE=mode, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
                out.append((f"wgrad {cin}->{cout} mode{mode} {bm}x{bn}x{bk} w{nw} s{ns}",
                            K.mzsr_conv3x3_wgrad_partial_nhwc, types, cx, ["X", "GY", "WS"], nw, ns))
        for cin, cout in [(64, 64), (64, 3)]:
            types = dict(X=adt, GY=adt, WS="*fp32", M="i32", H="i32", W="i32", CHUNK="i32", P_STRIDE="i32", M_BUCKET="i32")
            cfgs = K._TUNE[("wgrad3", mode)] if K._tunable("wgrad3", cin, cout, mode) else [K._fixed_config("wgrad3", cin, cout, mode)]
            for bm, bn, bk, nw, ns in cfgs:
                cx = dict(C_IN=cin, C_OUT=cout, MODE=mode, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
                out.append((f"wgrad3 {cin}->{cout} mode{mode} {bm}x{bn}x{bk} w{nw} s{ns}",
                            K.mzsr_conv3x3_wgrad_row3_partial_nhwc, types, cx, ["X", "GY", "WS"], nw, ns))
    rtypes = dict(WS="*fp32", S="i32", P="i32", P_STRIDE="i32", G="*fp32", PARAM="*fp32", PARAM_T="*fp32", PARAM_D="*fp32",
                  CIN="i32", COUT="i32", LR="*fp32", lr_idx="i32")
    for tdt in ("*fp32", "*bf16"):
        out.append((f"reduce+sgd T={tdt}", K.mzsr_wgrad_reduce_sgd, dict(rtypes, PARAM_T=tdt, PARAM_D=tdt),
                    dict(STORE_G=False, APPLY=True, HAS_T=True, BLOCK=1024), ["WS", "G", "PARAM", "LR"], 4, 3))
    out.append(("reduce store", K.mzsr_wgrad_reduce_sgd, rtypes, dict(STORE_G=True, APPLY=False, HAS_T=False, BLOCK=1024),
                ["WS", "G", "PARAM", "LR"], 4, 3))
    out.append(("sgd", K.mzsr_sgd_update, dict(PARAM="*fp32", G="*fp32", LR="*fp32", lr_idx="i32", P="i32"),
                dict(BLOCK=1024), ["PARAM", "G", "LR"], 4, 3))
    out.append(("l1 reduce", K.mzsr_l1_loss_reduce, dict(PART="*fp32", n="i32", OUT="*fp32", out_idx="i32", inv_numel="fp32"),
                dict(BLOCK=1024), ["PART", "OUT"], 4, 3))
    if quick:
        keep = ("fwd-relu 64->64 mode1 128x64x32", "fwd-relu 64->64 mode2 128x64x64 w4", "fwd-l1 64->3 mode1",
                "dgrad 64->64 mode1 128x64x64 w4", "wgrad3 64->64 mode1 128x64x64 w8 s1", "wgrad3 64->64 mode2 128x64x64 w8 s3", "wgrad 3->64 mode1",
                "reduce+sgd T=*bf16")
        out = [v for v in out if any(v[0].startswith(k) for k in keep)]
    return out


def _ptxas_info(ptx: str, arch: int) -> str:
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        pt = get_ptxas(arch)
        path = pt.path if hasattr(pt, "path") else pt[0]
        with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
            f.write(ptx)
        r = subprocess.run([path, "-v", f"--gpu-name=sm_{arch}a", f.name, "-o", os.devnull],
                           capture_output=True, text=True, timeout=120)
        os.unlink(f.name)
        regs = re.findall(r"Used (\d+) registers", r.stderr)
        spills = re.findall(r"(\d+) bytes spill stores", r.stderr)
        return f"regs={','.join(regs)} spill_stores={','.join(spills)}"
    except Exception as e:  # informative only
        return f"(ptxas info unavailable: {type(e).__name__})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the hot variants")
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--only", default="", help="substring filter on the variant label")
    a = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("aot_check: unset TRITON_INTERPRET (the kernels would be interpreted)", file=sys.stderr)
        return 2
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from . import conv3x3 as K

    target = GPUTarget("cuda", a.arch, 32)
    failed = 0
    for label, fn, types, cx, aligned, nw, ns in _variants(K, a.quick):
        if a.only and a.only not in label:
            continue
        t0 = time.time()
        sig = {n: ("constexpr" if n in cx else types[n]) for n in fn.arg_names}
        src = ASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index(k),): v for k, v in cx.items()},
                        attrs={(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned})
        try:
            k = triton.compile(src, target=target, options={"num_warps": nw, "num_stages": ns})
        except Exception as e:
            failed += 1
            print(f"FAIL {label}: {type(e).__name__}: {str(e)[:2000]}", flush=True)
            continue
        ptx = k.asm["ptx"]
        ops = " ".join(f"{w}={ptx.count(w)}" for w in ("wgmma.mma_async", "mma.sync", "cp.async.cg", "cp.async.ca", "ld.global.v4"))
        print(f"OK   {label:50s} smem={k.metadata.shared:6d} {_ptxas_info(ptx, a.arch)} {ops} ({time.time() - t0:.1f}s)",
              flush=True)
    print(f"aot_check: {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
