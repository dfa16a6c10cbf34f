"""Triton kernel for the synthetic-gradient regression at a truncation boundary (linear head).

For the head's prediction P = X·Wᵀ + b of the start states X (B × S, computed in the forward pass) and the
bootstrapped target Y, one kernel produces everything the head's update needs:

    R    = P − Y                                   (never written to memory)
    loss = w · Σ R² / (B·S)
    dW   = 2w/(B·S) · Rᵀ X                          (S × S)
    db   = 2w/(B·S) · Σ_batch R                     (S)

Each program owns a (BLOCK_M × BLOCK_N) tile of dW and walks the batch in BLOCK_K chunks, forming R on the fly from
P and Y; the programs of the first column of tiles also reduce R² and R for the loss and db from the same loads.
Eager PyTorch needs a subtraction, a square, a mean, a matrix product and a sum (plus autograd's bookkeeping).
Inputs may be fp32 or bf16 (accumulation in fp32), or float64 (for gradient checks).

Importing this module imports Triton; `lmdni.boundary` imports it only when the fused path is selected.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _regression_kernel(p_ptr, y_ptr, x_ptr, dw_ptr, db_ptr, loss_ptr, batch, state, in_size, coef,
                       stride_pb, stride_yb, stride_xb, stride_dw,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                       PRECISION: tl.constexpr, ACC: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # output units of the head (rows of W)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # input units (columns of W)
    ks = tl.arange(0, BLOCK_K)
    row_ok = rows < state
    col_ok = cols < in_size
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC)
    bias_acc = tl.zeros((BLOCK_M,), dtype=ACC)
    square_acc = tl.zeros((BLOCK_M,), dtype=ACC)
    for k0 in range(0, batch, BLOCK_K):
        k = k0 + ks
        k_ok = k < batch
        mask_r = k_ok[:, None] & row_ok[None, :]
        p = tl.load(p_ptr + k[:, None] * stride_pb + rows[None, :], mask=mask_r, other=0.0).to(ACC)
        y = tl.load(y_ptr + k[:, None] * stride_yb + rows[None, :], mask=mask_r, other=0.0).to(ACC)
        residual = p - y  # (BLOCK_K, BLOCK_M); zero where masked
        x = tl.load(x_ptr + k[:, None] * stride_xb + cols[None, :], mask=k_ok[:, None] & col_ok[None, :],
                    other=0.0).to(ACC)
        acc += tl.dot(tl.trans(residual), x, input_precision=PRECISION)
        if pid_n == 0:
            bias_acc += tl.sum(residual, axis=0)
            square_acc += tl.sum(residual * residual, axis=0)
    tl.store(dw_ptr + rows[:, None] * stride_dw + cols[None, :], acc * (2.0 * coef),
             mask=row_ok[:, None] & col_ok[None, :])
    if pid_n == 0:
        tl.store(db_ptr + rows, bias_acc * (2.0 * coef), mask=row_ok)
        tl.store(loss_ptr + pid_m, tl.sum(square_acc, axis=0) * coef)


def _blocks(state: int, interpreted: bool) -> tuple[int, int, int, int]:
    if interpreted:  # the interpreter costs per program: few, large programs
        return 64, 64, 64, 4
    # On a GPU: enough tiles to fill the machine at state 512..4096, batch chunks sized for tl.dot.
    block_m = 64 if state >= 512 else 32
    return block_m, 64, 32, 4


def regression_launch(pred: torch.Tensor, target: torch.Tensor, start: torch.Tensor, loss_weight: float = 1.0,
                      tf32: bool = False):
    """(loss, dW, db) for loss = loss_weight · mean((pred − target)²) with pred = start·Wᵀ + b."""
    batch, state = pred.shape
    in_size = start.shape[1]
    pred, target, start = pred.contiguous(), target.contiguous(), start.contiguous()
    interpreted = not pred.is_cuda
    block_m, block_n, block_k, warps = _blocks(state, interpreted)
    grid = (triton.cdiv(state, block_m), triton.cdiv(in_size, block_n))
    # fp32 accumulation for fp32/bf16/fp16 inputs; float64 inputs (gradient checks) stay float64 throughout
    acc_dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
    dw = torch.empty(state, in_size, device=pred.device, dtype=acc_dtype)
    db = torch.empty(state, device=pred.device, dtype=acc_dtype)
    partial = torch.empty(grid[0], device=pred.device, dtype=acc_dtype)
    coef = float(loss_weight) / (batch * state)
    _regression_kernel[grid](pred, target, start, dw, db, partial, batch, state, in_size, coef,
                             pred.stride(0), target.stride(0), start.stride(0), dw.stride(0),
                             BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
                             PRECISION="tf32" if tf32 and acc_dtype == torch.float32 else "ieee",
                             ACC=tl.float64 if acc_dtype == torch.float64 else tl.float32, num_warps=warps)
    return partial.sum(), dw, db


class _FusedRegression(torch.autograd.Function):
    """The kernel computes the loss and its parameter gradients in one pass; backward only scales them."""

    @staticmethod
    def forward(ctx, pred, target, start, weight, bias, loss_weight):
        # TF32 exactly when torch's own fp32 matmuls may use it (trainer.tf32 turns that on)
        loss, dw, db = regression_launch(pred, target, start, loss_weight,
                                         tf32=torch.backends.cuda.matmul.allow_tf32 and pred.is_cuda)
        ctx.save_for_backward(dw, db)
        ctx.dtypes = (weight.dtype, bias.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad):
        dw, db = ctx.saved_tensors
        return None, None, None, (dw * grad).to(ctx.dtypes[0]), (db * grad).to(ctx.dtypes[1]), None


def fused_regression_loss(pred, target, start, weight, bias, loss_weight: float = 1.0) -> torch.Tensor:
    return _FusedRegression.apply(pred, target, start, weight, bias, loss_weight)
