"""Triton kernels of the MZSR adaptation: NHWC implicit-GEMM 3x3 convolutions with fused
epilogues, a deterministic weight-gradient reduction fused with the SGD update, and the
L1 loss.

Layouts (shared with :mod:`mzsr_fast.reference`):

* activations ``(N, H, W, C)`` contiguous (NHWC); float32, or bfloat16 in the bf16 path;
* weights are *packed* for the GEMMs: ``wf = w.permute(2, 3, 1, 0)`` i.e. ``(3, 3, Cin, Cout)``
  flattened, row ``k = tap * Cin + ci`` (``tap = dy * 3 + dx``) of a ``(9 Cin, Cout)`` matrix.
  The forward reads it as the GEMM's B; the input-gradient kernel reads the same buffer
  transposed and tap-flipped, so one fp32 master copy serves both (no re-layout per step);
* one layer's parameters live in one flat fp32 buffer ``[wf (9 Cin Cout) | b (Cout)]`` so the
  wgrad partial buffer, its reduction and the SGD update are plain 1-D passes over it.

The GEMM view of a conv (forward): ``M = N*H*W`` pixels, ``N = Cout``, ``K = 9*Cin``.
For ``Cin % BLOCK_K == 0`` (64 channels) one K block lies inside one tap, so its A tile is a
contiguous-channel load shifted by ``(dy-1)*W + (dx-1)`` pixels with a per-row border mask.
Otherwise (the 3-channel layers) K is flattened over (tap, channel) and padded to BLOCK_K
(27 -> 32) by masking: one ``tl.dot`` per tile instead of nine tiny ones.

Precision ``mode``: 0 = fp32 ``input_precision="ieee"``; 1 = TF32 tensor cores;
2 = bf16 operands (activations stored bf16, fp32 master weights cast at load), fp32
accumulation everywhere.

Kernel names are the jitted functions' names (``mzsr_conv3x3_fwd_relu_nhwc``...), which
is what Nsight shows.
"""
from __future__ import annotations

import functools
import math
import os
from typing import Sequence

import torch
import triton
import triton.language as tl

__all__ = [
    "MODES",
    "interpreting",
    "pack_weight",
    "pack_weight_fwd",
    "refresh_fwd_weight",
    "unpack_weight",
    "act_dtype",
    "conv3x3_fwd",
    "conv3x3_fwd_l1",
    "conv3x3_dgrad",
    "conv3x3_wgrad",
    "l1_loss_reduce",
    "sgd_update_",
    "launch_fwd",
    "launch_dgrad",
    "launch_wgrad",
    "launch_reduce",
    "launch_sgd",
    "wgrad_splits",
    "l1_loss_parts",
    "INTERP",
]

#: precision name -> kernel mode
MODES = {"fp32": 0, "tf32": 1, "bf16": 2}


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def act_dtype(precision: str) -> torch.dtype:
    """Storage dtype of activations and activation gradients for a precision."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def pack_weight(w: torch.Tensor) -> torch.Tensor:
    """OIHW ``(Cout, Cin, 3, 3)`` -> packed ``(9 * Cin * Cout,)`` float32, row-major
    ``[tap][ci][co]``."""
    return w.detach().permute(2, 3, 1, 0).reshape(-1).float().contiguous()


def pack_weight_fwd(w: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """OIHW -> the forward kernel's copy ``(9 * Cout * Cin,)``, row-major ``[tap][co][ci]``:
    K-major for the forward GEMM's B operand (TF32 wgmma needs K-major operands; with the
    ``[tap][ci][co]`` layout the compiled sm_90 kernel used 4-byte cp.async for B, checked
    in the PTX).  Stored in the activation dtype (bf16 in the bf16 path)."""
    return w.detach().permute(2, 3, 0, 1).reshape(-1).to(dtype).contiguous()


def refresh_fwd_weight(wf: torch.Tensor, wt: torch.Tensor, cin: int, cout: int) -> None:
    """wt (forward copy, ``[tap][co][ci]``) <- wf (master, ``[tap][ci][co]``), in place."""
    wt.view(3, 3, cout, cin).copy_(wf.view(3, 3, cin, cout).transpose(2, 3))



def unpack_weight(wf: torch.Tensor, cin: int, cout: int) -> torch.Tensor:
    """Inverse of :func:`pack_weight`: ``(9 * Cin * Cout,)`` -> ``(Cout, Cin, 3, 3)``."""
    return wf.reshape(3, 3, cin, cout).permute(3, 2, 0, 1).contiguous()


# ============================================================================ device code
@triton.jit
def _mma(a, b, acc, MODE: tl.constexpr):
    """acc += a @ b in the requested precision (fp32 accumulation)."""
    if MODE == 2:
        acc = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), acc)
    elif MODE == 1:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="tf32")
    else:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return acc


@triton.jit
def _conv_tile(X, Wt, pid_m, pid_n, M, H, W,
               C_IN: tl.constexpr, C_OUT: tl.constexpr,
               W_S_TAP: tl.constexpr, W_S_K: tl.constexpr, W_S_N: tl.constexpr, FLIP: tl.constexpr,
               MODE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """One (BLOCK_M pixels) x (BLOCK_N channels) tile of a 3x3 SAME conv, fp32 accumulator.

    X: (M, C_IN) NHWC rows; weight element (tap, k, n) at ``Wt + tap' * W_S_TAP + k * W_S_K
    + n * W_S_N`` with ``tap' = 8 - tap`` when FLIP (the input-gradient conv).
    """
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = offs_m < M
    n_ok = offs_n < C_OUT
    hw = offs_m % (H * W)
    h = hw // W
    w = hw % W
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if C_IN % BLOCK_K == 0:
        # one tap per K block: contiguous channel loads, per-row border mask
        for kk in range(0, 9 * C_IN, BLOCK_K):
            tap = kk // C_IN
            # c0 is a multiple of BLOCK_K (C_IN % BLOCK_K == 0): the hint lets the compiler
            # emit 16-byte vector loads of the channel run
            c0 = tl.multiple_of(kk % C_IN, BLOCK_K)
            dy = tap // 3 - 1
            dx = tap % 3 - 1
            hh = h + dy
            ww = w + dx
            ok = m_ok & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
            src = offs_m + (dy * W + dx)
            offs_k = c0 + tl.arange(0, BLOCK_K)
            a = tl.load(X + src[:, None] * C_IN + offs_k[None, :], mask=ok[:, None], other=0.0)
            if FLIP:
                wtap = 8 - tap
            else:
                wtap = tap
            b_ptr = Wt + wtap * W_S_TAP + offs_k[:, None] * W_S_K + offs_n[None, :] * W_S_N
            if C_OUT % BLOCK_N == 0:
                b = tl.load(b_ptr)  # no mask: a mask varying along N would stop 16-byte copies
            else:
                b = tl.load(b_ptr, mask=n_ok[None, :], other=0.0)
            acc = _mma(a, b, acc, MODE)
    else:
        # few channels: K flattened over (tap, channel), padded to BLOCK_K by the mask
        for kk in range(0, 9 * C_IN, BLOCK_K):
            offs_k = kk + tl.arange(0, BLOCK_K)
            k_ok = offs_k < 9 * C_IN
            tap = offs_k // C_IN
            c = offs_k % C_IN
            dy = tap // 3 - 1
            dx = tap % 3 - 1
            hh = h[:, None] + dy[None, :]
            ww = w[:, None] + dx[None, :]
            ok = (m_ok[:, None] & k_ok[None, :]) & ((hh >= 0) & (hh < H) & (ww >= 0) & (ww < W))
            src = offs_m[:, None] + (dy * W + dx)[None, :]
            a = tl.load(X + src * C_IN + c[None, :], mask=ok, other=0.0)
            if FLIP:
                wtap = 8 - tap
            else:
                wtap = tap
            b = tl.load(Wt + wtap[:, None] * W_S_TAP + c[:, None] * W_S_K + offs_n[None, :] * W_S_N,
                        mask=k_ok[:, None] & n_ok[None, :], other=0.0)
            acc = _mma(a, b, acc, MODE)
    return acc, offs_m, offs_n, m_ok, n_ok


@triton.jit
def _fwd_body(X, Wt, B, RES, TGT, Y, LOSS_PART, M, H, W, inv_numel,
              C_IN: tl.constexpr, C_OUT: tl.constexpr, RELU: tl.constexpr, HAS_RES: tl.constexpr,
              L1: tl.constexpr, MODE: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    acc, offs_m, offs_n, m_ok, n_ok = _conv_tile(
        X, Wt, pid_m, pid_n, M, H, W, C_IN, C_OUT, C_IN * C_OUT, 1, C_IN, False,
        MODE, BLOCK_M, BLOCK_N, BLOCK_K)
    bias = tl.load(B + offs_n, mask=n_ok, other=0.0)
    y = acc + bias[None, :]
    if RELU:
        y = tl.maximum(y, 0.0)
    out_off = offs_m[:, None] * C_OUT + offs_n[None, :]
    mask2 = m_ok[:, None] & n_ok[None, :]
    if HAS_RES:
        y = y + tl.load(RES + out_off, mask=mask2, other=0.0).to(tl.float32)
    if L1:
        # d loss / d pred of mean|pred - target| = sign(pred - target) / numel (sign(0) = 0)
        t = tl.load(TGT + out_off, mask=mask2, other=0.0).to(tl.float32)
        d = tl.where(mask2, y - t, 0.0)
        g = tl.where(d > 0, inv_numel, tl.where(d < 0, -inv_numel, 0.0))
        tl.store(Y + out_off, g.to(Y.dtype.element_ty), mask=mask2)
        part = tl.sum(tl.sum(tl.abs(d), axis=1), axis=0)
        tl.store(LOSS_PART + pid_m * tl.num_programs(1) + pid_n, part)
    else:
        tl.store(Y + out_off, y.to(Y.dtype.element_ty), mask=mask2)


# Thin named entry points: Triton names a kernel after its jitted function, so each fused
# variant gets a descriptive name in Nsight.
# Image sizes are not specialised on (divisible-by-16 / equal-to-1): they only enter the
# row masks and the row shift, never the channel-contiguous vector loads (C_IN/C_OUT are
# constexpr), so one compiled kernel serves every image size instead of one per size class.
_NO_SPEC = ["M", "H", "W", "M_BUCKET"]
_NO_SPEC_WGRAD = _NO_SPEC + ["CHUNK"]
@triton.jit(do_not_specialize=_NO_SPEC)
def mzsr_conv3x3_fwd_relu_nhwc(X, Wt, B, RES, TGT, Y, LOSS_PART, M, H, W, inv_numel,
                               C_IN: tl.constexpr, C_OUT: tl.constexpr, RELU: tl.constexpr,
                               HAS_RES: tl.constexpr, L1: tl.constexpr, MODE: tl.constexpr, M_BUCKET,
                               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    _fwd_body(X, Wt, B, RES, TGT, Y, LOSS_PART, M, H, W, inv_numel, C_IN, C_OUT, RELU, HAS_RES, L1,
              MODE, BLOCK_M, BLOCK_N, BLOCK_K)


@triton.jit(do_not_specialize=_NO_SPEC)
def mzsr_conv3x3_fwd_residual_nhwc(X, Wt, B, RES, TGT, Y, LOSS_PART, M, H, W, inv_numel,
                                   C_IN: tl.constexpr, C_OUT: tl.constexpr, RELU: tl.constexpr,
                                   HAS_RES: tl.constexpr, L1: tl.constexpr, MODE: tl.constexpr, M_BUCKET,
                                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    _fwd_body(X, Wt, B, RES, TGT, Y, LOSS_PART, M, H, W, inv_numel, C_IN, C_OUT, RELU, HAS_RES, L1,
              MODE, BLOCK_M, BLOCK_N, BLOCK_K)


@triton.jit(do_not_specialize=_NO_SPEC)
def mzsr_conv3x3_fwd_residual_l1grad_nhwc(X, Wt, B, RES, TGT, Y, LOSS_PART, M, H, W, inv_numel,
                                          C_IN: tl.constexpr, C_OUT: tl.constexpr, RELU: tl.constexpr,
                                          HAS_RES: tl.constexpr, L1: tl.constexpr, MODE: tl.constexpr, M_BUCKET,
                                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    _fwd_body(X, Wt, B, RES, TGT, Y, LOSS_PART, M, H, W, inv_numel, C_IN, C_OUT, RELU, HAS_RES, L1,
              MODE, BLOCK_M, BLOCK_N, BLOCK_K)


@triton.jit(do_not_specialize=_NO_SPEC)
def mzsr_conv3x3_dgrad_relumask_nhwc(GY, Wt, MASK_SRC, GX, M, H, W,
                                     C_IN: tl.constexpr, C_OUT: tl.constexpr, HAS_MASK: tl.constexpr,
                                     MODE: tl.constexpr, M_BUCKET,
                                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """gx = conv3x3(gy, flip(w)^T) [* (mask_src > 0)].

    Here C_IN is the *layer's* Cout (channels of gy) and C_OUT the layer's Cin (channels of
    gx); Wt is the layer's packed weight (9, Cin_layer=C_OUT, Cout_layer=C_IN), read
    transposed: element (tap, k=co, n=ci) at (8 - tap) * C_IN * C_OUT + ci * C_IN + co.
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    acc, offs_m, offs_n, m_ok, n_ok = _conv_tile(
        GY, Wt, pid_m, pid_n, M, H, W, C_IN, C_OUT, C_IN * C_OUT, 1, C_IN, True,
        MODE, BLOCK_M, BLOCK_N, BLOCK_K)
    out_off = offs_m[:, None] * C_OUT + offs_n[None, :]
    mask2 = m_ok[:, None] & n_ok[None, :]
    if HAS_MASK:
        src = tl.load(MASK_SRC + out_off, mask=mask2, other=0.0)
        acc = tl.where(src > 0, acc, 0.0)
    tl.store(GX + out_off, acc.to(GX.dtype.element_ty), mask=mask2)


@triton.jit(do_not_specialize=_NO_SPEC_WGRAD)
def mzsr_conv3x3_wgrad_partial_nhwc(X, GY, WS, M, H, W, CHUNK, P_STRIDE,
                                    C_IN: tl.constexpr, C_OUT: tl.constexpr, MODE: tl.constexpr, M_BUCKET,
                                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Partial weight/bias gradients over pixels [pid_s * CHUNK, (pid_s + 1) * CHUNK), for
    inputs whose channel count is not a multiple of 64 (the 3-channel first layer; the
    64-channel layers use :func:`mzsr_conv3x3_wgrad_row3_partial_nhwc`).

    Program (pid_k, pid_s) computes rows [pid_k * BLOCK_K, +BLOCK_K) of the packed (9 C_IN,
    C_OUT) gradient, K flattened over (tap, channel) and padded by masking:
    ``sum_m im2col(x)[m, k] * gy[m, n]``, and writes them, plus (pid_k == 0) the bias
    partial ``sum_m gy[m, n]``, to ``WS[pid_s, :]`` (layout of the flat layer buffer).  Each
    element has exactly one writer: the reduction over pid_s is done in a fixed order by
    :func:`mzsr_wgrad_reduce_sgd`, so the result is deterministic.  BLOCK_N >= C_OUT (one
    N tile).
    """
    pid_k = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_n = tl.arange(0, BLOCK_N)
    n_ok = offs_n < C_OUT
    acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    gb = tl.zeros((BLOCK_N,), dtype=tl.float32)
    base = pid_s * CHUNK
    rows = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    k_ok = rows < 9 * C_IN
    tap = rows // C_IN
    c = rows % C_IN
    dy = tap // 3 - 1
    dx = tap % 3 - 1
    for m0 in range(0, CHUNK, BLOCK_M):
        offs_r = m0 + tl.arange(0, BLOCK_M)
        offs_m = base + offs_r
        m_ok = (offs_m < M) & (offs_r < CHUNK)
        hw = offs_m % (H * W)
        h = hw // W
        w = hw % W
        hh = h[None, :] + dy[:, None]
        ww = w[None, :] + dx[:, None]
        ok = (k_ok[:, None] & m_ok[None, :]) & ((hh >= 0) & (hh < H) & (ww >= 0) & (ww < W))
        src = offs_m[None, :] + (dy * W + dx)[:, None]
        at = tl.load(X + src * C_IN + c[:, None], mask=ok, other=0.0)
        g = tl.load(GY + offs_m[:, None] * C_OUT + offs_n[None, :],
                    mask=m_ok[:, None] & n_ok[None, :], other=0.0)
        acc = _mma(at, g, acc, MODE)
        gb += tl.sum(g.to(tl.float32), axis=0)
    rows_ok = rows < 9 * C_IN
    ws_row = WS + pid_s * P_STRIDE
    tl.store(ws_row + rows[:, None] * C_OUT + offs_n[None, :], acc, mask=rows_ok[:, None] & n_ok[None, :])
    if pid_k == 0:
        tl.store(ws_row + 9 * C_IN * C_OUT + offs_n, gb, mask=n_ok)


@triton.jit(do_not_specialize=_NO_SPEC_WGRAD)
def mzsr_conv3x3_wgrad_row3_partial_nhwc(X, GY, WS, M, H, W, CHUNK, P_STRIDE,
                                         C_IN: tl.constexpr, C_OUT: tl.constexpr, MODE: tl.constexpr, M_BUCKET,
                                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """The weight gradient of the 64-channel-input layers (C_IN % BLOCK_K == 0), partials as
    :func:`mzsr_conv3x3_wgrad_partial_nhwc`; one program computes a whole kernel row: the
    three taps dx = -1, 0, 1 of row
    ``dy = pid_k // (C_IN // BLOCK_K) - 1`` for channels block ``pid_k % (C_IN // BLOCK_K)``.
    Each gy tile is loaded once for three dots instead of once per tap (a third of the gy
    traffic), and the three x tiles, one pixel apart, overlap (L1 hits when loaded
    through registers).  Three fp32 accumulators (BLOCK_K, BLOCK_N).
    """
    pid_k = tl.program_id(0)
    pid_s = tl.program_id(1)
    dy = pid_k // (C_IN // BLOCK_K) - 1
    c0 = tl.multiple_of((pid_k % (C_IN // BLOCK_K)) * BLOCK_K, BLOCK_K)
    offs_c = c0 + tl.arange(0, BLOCK_K)
    offs_n = tl.arange(0, BLOCK_N)
    n_ok = offs_n < C_OUT
    acc_l = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    acc_c = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    acc_r = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    gb = tl.zeros((BLOCK_N,), dtype=tl.float32)
    base = pid_s * CHUNK
    for m0 in range(0, CHUNK, BLOCK_M):
        offs_r = m0 + tl.arange(0, BLOCK_M)
        offs_m = base + offs_r
        m_ok = (offs_m < M) & (offs_r < CHUNK)
        hw = offs_m % (H * W)
        h = hw // W
        w = hw % W
        hh = h + dy
        row_ok = m_ok & (hh >= 0) & (hh < H)
        src = offs_m + dy * W
        g = tl.load(GY + offs_m[:, None] * C_OUT + offs_n[None, :],
                    mask=m_ok[:, None] & n_ok[None, :], other=0.0)
        gb += tl.sum(g.to(tl.float32), axis=0)
        ok_l = row_ok & (w >= 1)
        at = tl.load(X + (src - 1)[None, :] * C_IN + offs_c[:, None], mask=ok_l[None, :], other=0.0)
        acc_l = _mma(at, g, acc_l, MODE)
        at = tl.load(X + src[None, :] * C_IN + offs_c[:, None], mask=row_ok[None, :], other=0.0)
        acc_c = _mma(at, g, acc_c, MODE)
        ok_r = row_ok & (w + 1 < W)
        at = tl.load(X + (src + 1)[None, :] * C_IN + offs_c[:, None], mask=ok_r[None, :], other=0.0)
        acc_r = _mma(at, g, acc_r, MODE)
    ws_row = WS + pid_s * P_STRIDE
    tap0 = (dy + 1) * 3
    wmask = n_ok[None, :]
    tl.store(ws_row + ((tap0 * C_IN + offs_c)[:, None] * C_OUT + offs_n[None, :]), acc_l, mask=wmask)
    tl.store(ws_row + (((tap0 + 1) * C_IN + offs_c)[:, None] * C_OUT + offs_n[None, :]), acc_c, mask=wmask)
    tl.store(ws_row + (((tap0 + 2) * C_IN + offs_c)[:, None] * C_OUT + offs_n[None, :]), acc_r, mask=wmask)
    if pid_k == 0:
        tl.store(ws_row + 9 * C_IN * C_OUT + offs_n, gb, mask=n_ok)


@triton.jit(do_not_specialize=["lr_idx"])
def mzsr_wgrad_reduce_sgd(WS, S, P, P_STRIDE, G, PARAM, PARAM_T, PARAM_D, CIN, COUT, LR, lr_idx,
                          STORE_G: tl.constexpr, APPLY: tl.constexpr, HAS_T: tl.constexpr, BLOCK: tl.constexpr):
    """g = sum_{s < S} WS[s, :P] (fixed order); [G = g]; [PARAM -= LR[lr_idx] * g, and the
    updated weights also into the forward copy PARAM_T ([tap][co][ci]) and the
    input-gradient copy PARAM_D ([tap][ci][co]), both in their own dtype].

    PARAM is one layer's flat [wf (9 CIN COUT, [tap][ci][co]) | b (COUT)] buffer."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < P
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for s in range(0, S):
        acc += tl.load(WS + s * P_STRIDE + offs, mask=ok, other=0.0)
    if STORE_G:
        tl.store(G + offs, acc, mask=ok)
    if APPLY:
        lr = tl.load(LR + lr_idx)
        p = tl.load(PARAM + offs, mask=ok, other=0.0)
        newp = p - lr * acc
        tl.store(PARAM + offs, newp, mask=ok)
        if HAS_T:
            nw = 9 * CIN * COUT
            tap = offs // (CIN * COUT)
            r = offs % (CIN * COUT)
            ci = r // COUT
            co = r % COUT
            tl.store(PARAM_T + tap * (CIN * COUT) + co * CIN + ci, newp.to(PARAM_T.dtype.element_ty),
                     mask=ok & (offs < nw))
            tl.store(PARAM_D + offs, newp.to(PARAM_D.dtype.element_ty), mask=ok & (offs < nw))


@triton.jit(do_not_specialize=["lr_idx"])
def mzsr_sgd_update(PARAM, G, LR, lr_idx, P, BLOCK: tl.constexpr):
    """PARAM -= LR[lr_idx] * G over P elements."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < P
    lr = tl.load(LR + lr_idx)
    p = tl.load(PARAM + offs, mask=ok, other=0.0)
    g = tl.load(G + offs, mask=ok, other=0.0)
    tl.store(PARAM + offs, p - lr * g, mask=ok)


@triton.jit(do_not_specialize=["out_idx"])
def mzsr_l1_loss_reduce(PART, n, OUT, out_idx, inv_numel, BLOCK: tl.constexpr):
    """OUT[out_idx] = sum(PART[:n]) * inv_numel, summed in a fixed order (one program)."""
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(0, n, BLOCK):
        offs = i + tl.arange(0, BLOCK)
        acc += tl.load(PART + offs, mask=offs < n, other=0.0)
    tl.store(OUT + out_idx, tl.sum(acc, axis=0) * inv_numel)


# ============================================================================ configs
# Configs are (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages); the first of each list is
# the default when autotuning is off (MZSR_TRITON_AUTOTUNE=0).  Only the hot 64->64
# layers in tf32/bf16 are autotuned, with a handful of Hopper candidates (the GPU check
# has minutes, not hours); every other variant has one fixed config.  The fixed configs
# are chosen so every tl.dot dimension is >= 16 (the 3-channel layers pad K 27 -> 32 and
# N 3 -> 16 by masking).  The candidates follow the usual Hopper GEMM shapes for K=576, N=64;
# their measured step and whole call: rows ops/step and e2e/adapt_and_upscale_steps10,
# provider triton_bf16, of benchmarks/results/h100.csv; which candidate wins per size class
# is not recorded yet.  Every candidate is checked alone on the GPU
# (tests/test_triton_conv3x3.py::test_gpu_every_tune_config).

#: Tile sizes under the interpreter (CPU tests).  Bigger tiles are nearly free there (numpy
#: ops) while every program and loop iteration costs Python time: BK 1024 puts the whole
#: flattened K (9 x 64 = 576) in one block (faster: rows ops/step_triton_interpreter of
#: benchmarks/results/cpu-amd-epyc-2c.csv).  The kernel tests
#: shrink them (BM 16, BK 32, CHUNK 32) to exercise several tiles, K blocks inside a tap,
#: and partial tails.
INTERP = {"BM": 64, "BK": 1024, "CHUNK": 128}

_TUNE = {
    # num_stages=1 candidates load through registers (L1-cached ld.global): the three taps
    # of a kernel row read x tiles one pixel apart, which cp.async.cg (L2 only) re-fetches
    # Three candidates per list: every candidate is one more compile (~1 s) and benchmark
    # in the GPU check's few minutes.
    ("fwd", 1): [(128, 64, 32, 4, 3), (128, 64, 64, 4, 3), (128, 64, 64, 8, 1)],
    ("fwd", 2): [(128, 64, 64, 4, 3), (256, 64, 64, 8, 3), (128, 64, 64, 4, 1)],
}
# The weight gradient of the 64-channel layers is the row-of-three-taps kernel (the kernel
# every committed triton row ran; the one-tap-per-program alternative for these layers was
# never measured against it and is gone).  It keeps three (BK, BN) accumulators: 8 warps
# keep them at 48 registers per thread for 64x64.  TF32: both operands are MN-major in
# NHWC (the reduction runs over pixels), so a pipelined (cp.async) load copies 4 bytes at a
# time; num_stages=1 loads through registers with 16-byte vectors instead (sm_90 PTX), and
# lets the three one-pixel-apart x tiles hit in L1 (cp.async.cg bypasses L1).
# BLOCK_K stays 64: the accumulator's M is BLOCK_K, and wgmma needs M >= 64 (BK 32 fell
# back to mma.sync and spilled, sm_90 PTX via kernels/aot_check.py).
_TUNE[("wgrad3", 1)] = [(128, 64, 64, 8, 1), (64, 64, 64, 4, 1), (64, 64, 64, 4, 2)]
# bf16: (64, 64, 64, 4, 3) is NOT a candidate: on an H100 that config gave wrong weight
# gradients (errors in benchmarks/results/gpu_20261126_h100_fix/README.md), and the
# autotuner picked it at the 64^2 size class.  Each candidate is
# checked on its own by tests/test_triton_conv3x3.py::test_gpu_every_tune_config.
_TUNE[("wgrad3", 2)] = [(128, 64, 64, 8, 3), (128, 64, 64, 8, 1)]
_TUNE[("dgrad", 1)] = _TUNE[("fwd", 1)]
_TUNE[("dgrad", 2)] = _TUNE[("fwd", 2)]


def _fixed_config(kind: str, c_in: int, c_out: int, mode: int) -> tuple[int, int, int, int, int]:
    """(BM, BN, BK, warps, stages) of a non-tuned variant; c_in/c_out are the GEMM's
    (input, output) channels (for dgrad: the layer's Cout, Cin).

    BK: one tap per K block when c_in is a multiple of 32, else K flattened over
    (tap, channel) and padded to a multiple of 32 (27 -> 32 for 3 channels)."""
    bn = 16 if c_out <= 16 else 64
    tap_mode = c_in % 32 == 0
    if interpreting():
        # small tiles so the tiny test images have several tiles and partial tails
        if kind == "wgrad3":  # one tap's channel block per K block: BK must divide c_in
            return INTERP["BM"], bn, min(INTERP["BK"], c_in), 1, 1
        return INTERP["BM"], bn, INTERP["BK"], 1, 1
    if mode == 0:  # exact fp32 FMA dot: keep tiles register-friendly
        # (the three accumulators of wgrad3 spilled with 4 warps)
        return 64, bn, 32, 8 if kind == "wgrad3" else 4, 2
    bk = min(64, c_in) if tap_mode else 32
    if kind == "wgrad3":
        return 128, bn, bk, 8, 1 if mode == 1 else 3
    if kind == "wgrad":
        # flattened-K wgrad (3 input channels): its (32, BM) index tensors spilled with 4
        # warps (255 regs, 164 B spill stores); 8 warps: 206 regs, no spill (sm_90 PTX)
        return 128, bn, bk, 8, 2
    return 128, bn, bk, 4, 3 if tap_mode else 2


def _autotune_enabled() -> bool:
    """``MZSR_TRITON_AUTOTUNE=0`` uses the first candidate of each list (no tuning runs)."""
    return os.environ.get("MZSR_TRITON_AUTOTUNE", "1") != "0"


def _tunable(kind: str, c_in: int, c_out: int, mode: int) -> bool:
    return (not interpreting()) and mode in (1, 2) and c_in == 64 and c_out == 64 and (kind, mode) in _TUNE


def _quick_bench(kernel_call, quantiles):
    # the kernels run 10-100 us: 5 ms warm-up + 20 ms of repetitions rank the candidates
    # (Triton's default, 25 + 100 ms, would spend seconds per image-size class)
    from triton.testing import do_bench

    return do_bench(kernel_call, warmup=5, rep=20, quantiles=quantiles)


@functools.lru_cache(maxsize=None)
def _tuned(kind: str, mode: int, fn_name: str):
    import inspect

    fn = globals()[fn_name]
    configs = [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=nw, num_stages=ns)
        for bm, bn, bk, nw, ns in _TUNE[(kind, mode)]
    ]
    kw = {}
    if "do_bench" in inspect.signature(triton.autotune).parameters:
        kw["do_bench"] = _quick_bench
    return triton.autotune(configs=configs, key=["C_IN", "C_OUT", "MODE", "M_BUCKET"], **kw)(fn)


def _m_bucket(m: int) -> int:
    """Autotune key of a pixel count: the next power of four (>= 4096), so one image size
    class (64^2, 128^2, 256^2, ...) is tuned once."""
    b = 4096
    while b < m:
        b *= 4
    return b


def _launch(kind: str, fn, grid_fn, c_in: int, c_out: int, mode: int, *args, **kw):
    if _tunable(kind, c_in, c_out, mode) and _autotune_enabled():
        _tuned(kind, mode, fn.__name__)[grid_fn](*args, **kw)
    else:
        if _tunable(kind, c_in, c_out, mode):
            bm, bn, bk, nw, ns = _TUNE[(kind, mode)][0]
        else:
            bm, bn, bk, nw, ns = _fixed_config(kind, c_in, c_out, mode)
        meta = {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}
        fn[grid_fn(meta)](*args, **kw, **meta, num_warps=nw, num_stages=ns)


@functools.lru_cache(maxsize=None)
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def wgrad_splits(m: int, c_in: int, device: torch.device, chunk: int | None = None) -> tuple[int, int]:
    """(S, CHUNK): the pixel range is cut into S chunks of CHUNK pixels, one partial each.

    Aim at about 2 programs per SM over all K tiles (9 tiles for 64->64 at BLOCK_K=64);
    CHUNK is a multiple of 256 so every BLOCK_M in the configs tiles it exactly (the kernel
    masks anyway)."""
    if chunk is None:
        if device.type == "cuda" and not interpreting():
            k_tiles = max(1, ((3 if _row3(c_in) else 9) * c_in) // 64)
            s_target = max(1, (2 * _num_sms(device.index or 0)) // k_tiles)
            chunk = max(256, triton.cdiv(triton.cdiv(m, s_target), 256) * 256)
        else:
            chunk = INTERP["CHUNK"]
    s = triton.cdiv(m, chunk)
    return s, chunk


# ============================================================================ launchers
def _mode(precision: str) -> int:
    if precision not in MODES:
        raise ValueError(f"precision must be one of {tuple(MODES)}, got {precision!r}")
    return MODES[precision]


def launch_fwd(x, wt, b, c_in, c_out, y, *, relu, residual=None, target=None, loss_part=None,
               precision="fp32"):
    """y = [relu](conv3x3(x) + b) [+ residual]; or, with ``target``, y = d mean|pred - target|
    / d pred and ``loss_part[i]`` = partial sums of |pred - target| (one per tile).

    x: (N, H, W, c_in) f32/bf16; wt: forward copy (9 c_out c_in,) (:func:`pack_weight_fwd`,
    act dtype); b: (c_out,) f32;
    residual/target: (N, H, W, c_out) f32; y: preallocated (N, H, W, c_out).
    """
    n, h, w, _ = x.shape
    m = n * h * w
    mode = _mode(precision)
    l1 = target is not None
    if l1 and residual is None:
        raise ValueError("the fused L1 gradient is only for the last (residual) layer")
    if l1:
        fn = mzsr_conv3x3_fwd_residual_l1grad_nhwc
    elif residual is not None:
        fn = mzsr_conv3x3_fwd_residual_nhwc
    else:
        fn = mzsr_conv3x3_fwd_relu_nhwc
    res = residual if residual is not None else y
    tgt = target if l1 else y
    lp = loss_part if l1 else y
    grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(c_out, meta["BLOCK_N"]))  # noqa: E731
    _launch("fwd", fn, grid, c_in, c_out, mode,
            x, wt, b, res, tgt, y, lp, m, h, w, 1.0 / float(m * c_out),
            C_IN=c_in, C_OUT=c_out, RELU=bool(relu), HAS_RES=residual is not None, L1=l1, MODE=mode,
            M_BUCKET=_m_bucket(m))
    return y


def l1_loss_parts(m: int, c_in: int, c_out: int, precision: str) -> int:
    """Length of the loss-partial buffer the fused L1 forward writes (fixed config: the
    L1 variant is never autotuned, so this count is known before the launch)."""
    bm, bn = _fixed_config("fwd", c_in, c_out, _mode(precision))[:2]
    return triton.cdiv(m, bm) * triton.cdiv(c_out, bn)


def launch_dgrad(gy, wf, c_in_layer, c_out_layer, gx, *, mask_src=None, precision="fp32"):
    """gx = d/dx of a 3x3 SAME conv [* (mask_src > 0)].

    gy: (N, H, W, Cout) f32/bf16; wf: the layer's packed weight (:func:`pack_weight` layout,
    act dtype: bf16 in the bf16 path); mask_src: (N, H, W, Cin) or
    None; gx: preallocated (N, H, W, Cin)."""
    n, h, w, _ = gy.shape
    m = n * h * w
    mode = _mode(precision)
    grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(c_in_layer, meta["BLOCK_N"]))  # noqa: E731
    _launch("dgrad", mzsr_conv3x3_dgrad_relumask_nhwc, grid, c_out_layer, c_in_layer, mode,
            gy, wf, mask_src if mask_src is not None else gx, gx, m, h, w,
            C_IN=c_out_layer, C_OUT=c_in_layer, HAS_MASK=mask_src is not None, MODE=mode,
            M_BUCKET=_m_bucket(m))
    return gx


def _row3(c_in: int) -> bool:
    """The weight gradient of a layer with ``c_in`` inputs uses the row-of-three-taps kernel
    (64-channel inputs), else the flattened-K one (the 3-channel first layer)."""
    return c_in % 64 == 0


def launch_wgrad(x, gy, c_in, c_out, ws, s, chunk, *, precision="fp32"):
    """Partial packed gradients of one layer into ``ws[:s, :9 c_in c_out + c_out]`` (row
    stride ``ws.stride(0)``); reduce them with :func:`launch_reduce`."""
    n, h, w, _ = x.shape
    m = n * h * w
    mode = _mode(precision)
    p_stride = ws.stride(0)
    if p_stride < 9 * c_in * c_out + c_out or ws.shape[0] < s:
        raise ValueError("wgrad partial buffer too small")
    if _row3(c_in):
        grid = lambda meta: (3 * (c_in // meta["BLOCK_K"]), s)  # noqa: E731
        kind, fn = "wgrad3", mzsr_conv3x3_wgrad_row3_partial_nhwc
    else:
        grid = lambda meta: (triton.cdiv(9 * c_in, meta["BLOCK_K"]), s)  # noqa: E731
        kind, fn = "wgrad", mzsr_conv3x3_wgrad_partial_nhwc
    _launch(kind, fn, grid, c_in, c_out, mode,
            x, gy, ws, m, h, w, chunk, p_stride,
            C_IN=c_in, C_OUT=c_out, MODE=mode, M_BUCKET=_m_bucket(m))


def _rblock() -> int:
    # 1024 elements per program on a GPU; the interpreter pays per program, so few big ones
    return 1 << 16 if interpreting() else 1024


def launch_reduce(ws, s, p, g=None, param=None, lr=None, lr_idx=0, param_t=None, param_d=None, cin=1, cout=1):
    """Fixed-order sum of ``s`` partial rows of length ``p``; store into ``g`` and/or apply
    ``param -= lr[lr_idx] * g`` (lr a device tensor: CUDA graphs replay any schedule) and
    write the updated weights into the forward copy ``param_t`` and the input-gradient
    copy ``param_d`` (layer ``cin -> cout``; both or neither)."""
    store_g = g is not None
    apply = param is not None
    has_t = apply and param_t is not None
    if has_t != (apply and param_d is not None):
        raise ValueError("launch_reduce: give both param_t and param_d, or neither")
    dummy = ws
    blk = _rblock()
    mzsr_wgrad_reduce_sgd[(triton.cdiv(p, blk),)](
        ws, s, p, ws.stride(0), g if store_g else dummy, param if apply else dummy,
        param_t if has_t else dummy, param_d if has_t else dummy, int(cin), int(cout),
        lr if apply else dummy, int(lr_idx), STORE_G=store_g, APPLY=apply, HAS_T=has_t, BLOCK=blk,
        num_warps=4)


def launch_sgd(param, g, lr, lr_idx=0):
    """param -= lr[lr_idx] * g, flat fp32 buffers of the same size."""
    p = param.numel()
    blk = _rblock()
    mzsr_sgd_update[(triton.cdiv(p, blk),)](param, g, lr, int(lr_idx), p, BLOCK=blk, num_warps=4)


def l1_loss_reduce(parts, n, out, out_idx, inv_numel):
    mzsr_l1_loss_reduce[(1,)](parts, n, out, int(out_idx), float(inv_numel), BLOCK=1024, num_warps=4)


# ============================================================================ reference-named ops
# Same names and signatures as mzsr_fast.reference (OIHW weights, NHWC activations);
# they allocate and pack on every call (for tests and one-off use; the backend keeps
# packed weights and preallocated buffers instead).
def conv3x3_fwd(x, w, b, relu, residual=None, *, precision="fp32"):
    """y = [relu](conv3x3(x, w) + b) [+ residual]; x (N, H, W, Cin), w (Cout, Cin, 3, 3)."""
    cout, cin = w.shape[:2]
    n, h, wd, _ = x.shape
    y_dtype = torch.float32 if residual is not None else act_dtype(precision)
    y = torch.empty(n, h, wd, cout, device=x.device, dtype=y_dtype)
    bias = b.float().contiguous() if b is not None else torch.zeros(cout, device=x.device)
    xin = x.to(act_dtype(precision)).contiguous()
    res = residual.float().contiguous() if residual is not None else None
    return launch_fwd(xin, pack_weight_fwd(w, act_dtype(precision)), bias, cin, cout, y, relu=relu, residual=res,
                      precision=precision)


def conv3x3_fwd_l1(x, w, b, residual, target, *, precision="fp32"):
    """The last layer fused with the L1 loss: pred = conv3x3(x, w) + b + residual;
    returns (mean|pred - target| 0-d, sign(pred - target) / numel (N, H, W, Cout))."""
    cout, cin = w.shape[:2]
    n, h, wd, _ = x.shape
    m = n * h * wd
    g = torch.empty(n, h, wd, cout, device=x.device, dtype=act_dtype(precision))
    nparts = l1_loss_parts(m, cin, cout, precision)
    parts = torch.zeros(nparts, device=x.device, dtype=torch.float32)
    bias = b.float().contiguous() if b is not None else torch.zeros(cout, device=x.device)
    launch_fwd(x.to(act_dtype(precision)).contiguous(), pack_weight_fwd(w, act_dtype(precision)), bias, cin, cout,
               g, relu=False,
               residual=residual.float().contiguous(), target=target.float().contiguous(), loss_part=parts,
               precision=precision)
    out = torch.zeros(1, device=x.device, dtype=torch.float32)
    l1_loss_reduce(parts, nparts, out, 0, 1.0 / (m * cout))
    return out[0], g


def conv3x3_dgrad(gy, w, mask_src=None, *, precision="fp32"):
    """gx (N, H, W, Cin) = input gradient [* (mask_src > 0)]; gy (N, H, W, Cout)."""
    cout, cin = w.shape[:2]
    n, h, wd, _ = gy.shape
    gx = torch.empty(n, h, wd, cin, device=gy.device, dtype=act_dtype(precision))
    ms = mask_src.to(act_dtype(precision)).contiguous() if mask_src is not None else None
    return launch_dgrad(gy.to(act_dtype(precision)).contiguous(), pack_weight(w).to(act_dtype(precision)), cin, cout, gx,
                        mask_src=ms, precision=precision)


def conv3x3_wgrad(x, gy, *, precision="fp32", chunk: int | None = None):
    """(gw (Cout, Cin, 3, 3), gb (Cout,)) summed over the batch, deterministic."""
    cin, cout = x.shape[-1], gy.shape[-1]
    n, h, wd, _ = x.shape
    m = n * h * wd
    s, chunk = wgrad_splits(m, cin, x.device, chunk)
    p = 9 * cin * cout + cout
    ws = torch.empty(s, p, device=x.device, dtype=torch.float32)
    launch_wgrad(x.to(act_dtype(precision)).contiguous(), gy.to(act_dtype(precision)).contiguous(),
                 cin, cout, ws, s, chunk, precision=precision)
    g = torch.empty(p, device=x.device, dtype=torch.float32)
    launch_reduce(ws, s, p, g=g)
    return unpack_weight(g[: 9 * cin * cout], cin, cout), g[9 * cin * cout:].clone()


def sgd_update_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], lr: torch.Tensor) -> None:
    """In place ``p -= lr * g`` for contiguous fp32 tensors; lr a 0-d/1-element device tensor."""
    if len(params) != len(grads):
        raise ValueError(f"sgd_update_: {len(params)} params but {len(grads)} grads")
    lr1 = lr.reshape(1).float()
    for p, g in zip(params, grads):
        if not p.is_contiguous() or p.dtype != torch.float32:
            raise ValueError("sgd_update_ needs contiguous float32 params")
        launch_sgd(p.view(-1), g.float().contiguous().view(-1), lr1, 0)
