"""A stacked RNN's whole time loop as one Triton kernel, forward and backward.

Why: training thousands of small recurrent members on a GPU is bound by memory traffic. The
plain path runs a batched matmul and the gate arithmetic per time step, each reading and
writing ``[G, B, gH]`` activations, and its backward keeps every step's gates. Here each
program holds one member's ``W_hh`` and a block of its batch's state on chip for all T steps:
the forward writes the states once; the backward recomputes the gates from the stored states
instead of saving them.

Two entry points. ``fused_rnn`` takes the inputs ``x`` and projects them inside the kernels
(``x_t W_ih + b_ih`` in registers, ``dW_ih`` and ``db_ih`` accumulated there too), so the
projections ``u [G, T, B, gH]`` and their gradient never exist in memory: at G=4096, B=64,
T=64, H=32 (GRU) each is 6.4 GB, written and read several times a training step.
``fused_recurrence`` takes ``u`` precomputed (``x W_ih + b_ih``), as the stacks did before.

Layouts are the stacked architecture's: ``x [T, B, I]`` (shared by all members) or
``[G, T, B, I]`` (time-major), ``weight_ih [G, I, gH]`` and ``weight_hh [G, H, gH]``
(input-major, ``h @ W``), ``bias_ih``/``bias_hh [G, gH]``, ``u [G, T, B, gH]``, and the
states ``hidden [G, B, T, H]``, from a zero initial state. Cells: ``gru`` (gates r, z, n in
torch's order), ``tanh`` and ``relu``. float32 only, with IEEE-precision dots (no TF32).

Without CUDA the kernels run only under Triton's interpreter (``TRITON_INTERPRET=1`` set
before this module is imported), which is how the tests check them on a CPU.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

try:
    import triton
    import triton.language as tl
except Exception as err:  # ImportError, or a Triton build that cannot load here
    triton = None
    _MISSING = f"Triton cannot be imported ({type(err).__name__}: {err})"
else:
    _MISSING = None

CELLS = {"gru": 0, "tanh": 1, "relu": 2}
"""Fused cells and their kernel switch (``CELL``)."""
GATES = {"gru": 3, "tanh": 1, "relu": 1}
MAX_HIDDEN = 64
"""Widest H the kernels take: a program keeps ``gates`` blocks of ``[H, H]`` weights (and,
backward, as many gradient accumulators) in registers; wider members run the plain path."""
MAX_INPUT = 32
"""Widest I that ``fused_rnn`` takes: it keeps ``gates`` blocks of ``[I, H]`` input weights
(and, backward, their gradients) in registers too; wider inputs run ``fused_recurrence``.
A guess, not a measurement: the stacks' tasks have I ≤ 8."""
PROJECT_INSIDE = True
"""Whether fused stacks run ``fused_rnn`` (False: ``_project`` + ``fused_recurrence``, to time
the old path side by side)."""
FASTER_UP_TO = {"gru": 32, "tanh": 64, "relu": 64}
"""Widest H at which the trainer fuses each cell. On an H200 at H=64 (1,024 members, B=64,
T=64) the fused GRU trained at 21.2 steps/s against 24.8 with its cell compiled (its
backward spills registers), the fused tanh RNN at 72.9 against 65.4."""
MAX_BLOCK_B = 64
"""Most batch rows per program; a larger batch is split over programs whose weight
gradients are summed with atomic adds."""
TILE = 2048
"""Most state values (rows × padded H) one program holds."""


class FusedKernelError(RuntimeError):
    """A fused recurrence kernel failed to compile or launch (a RuntimeError, so that the
    trainer's fallback to the plain path catches it like any failed capture)."""


def available() -> bool:
    """Whether Triton can be imported (the kernels exist)."""
    return triton is not None


def unavailable_reason() -> str | None:
    """Why the kernels are missing, or None when they are available."""
    return _MISSING


def interpreting() -> bool:
    """Whether the kernels run under Triton's interpreter (on CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def applies(x: Tensor, *params: Tensor, hidden_size: int) -> bool:
    """Whether the fused path can run a forward on ``x`` with ``params``: Triton present,
    float32 tensors on a CUDA device (any device under the interpreter), no autocast (it
    would make the projections half precision), H at most ``MAX_HIDDEN``, and no
    ``torch.func`` transform or ``torch.compile`` trace active (those see the plain path,
    which they can transform)."""
    tensors = (x, *params)
    return (available() and hidden_size <= MAX_HIDDEN
            and all(t.dtype == torch.float32 and t.device == x.device for t in tensors)
            and (x.device.type == "cuda" or interpreting())
            and not torch.is_autocast_enabled(x.device.type)
            and not _transformed() and not torch.compiler.is_compiling())


def fused_rnn(x: Tensor, weight_ih: Tensor, bias_ih: Tensor, weight_hh: Tensor,
              bias_hh: Tensor, cell: str) -> Tensor:
    """States ``hidden [G, B, T, H]`` of ``cell`` run over inputs ``x`` from zero, with the
    input projections ``x_t W_ih + b_ih`` made inside the kernels.

    ``x`` is ``[T, B, I]`` (one batch for all members) or ``[G, T, B, I]`` (one per member),
    time-major in both. Differentiable in every tensor (once: no double backward); the
    gradient of the projections is written to memory only when ``x`` needs its gradient.

    Raises:
        RuntimeError: Triton is missing (with the reason).
        ValueError: an unknown cell, or shapes that do not fit together (named).
        TypeError: a tensor that is not float32.
    """
    if triton is None:
        raise RuntimeError(f"fused_rnn: {_MISSING}")
    _check_rnn(x, weight_ih, bias_ih, weight_hh, bias_hh, cell)
    return _FusedRNN.apply(x.contiguous(), weight_ih.contiguous(), bias_ih.contiguous(),
                           weight_hh.contiguous(), bias_hh.contiguous(), cell)


def fused_recurrence(u: Tensor, weight_hh: Tensor, bias_hh: Tensor, cell: str) -> Tensor:
    """States ``hidden [G, B, T, H]`` of ``cell`` run over ``u [G, T, B, gH]`` from zero.

    Differentiable in ``u``, ``weight_hh`` and ``bias_hh`` (once: no double backward).

    Raises:
        RuntimeError: Triton is missing (with the reason).
        ValueError: an unknown cell, or shapes that do not fit together (named).
        TypeError: a tensor that is not float32.
    """
    if triton is None:
        raise RuntimeError(f"fused_recurrence: {_MISSING}")
    _check(u, weight_hh, bias_hh, cell)
    return _FusedRecurrence.apply(u.contiguous(), weight_hh.contiguous(), bias_hh.contiguous(),
                                  cell)


def _transformed() -> bool:
    """Whether a ``torch.func`` transform (vmap, grad, jacrev, ...) is active."""
    peek = getattr(torch._C._functorch, "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def _check_cell_and_dtypes(where: str, cell: str, tensors: dict[str, Tensor]) -> None:
    if cell not in CELLS:
        raise ValueError(f"{where}: unknown cell {cell!r}, expected one of {sorted(CELLS)}")
    for name, t in tensors.items():
        if t.dtype != torch.float32:
            raise TypeError(f"{where}: {name} is {t.dtype}, only float32 is fused")


def _check_sizes_and_devices(where: str, size: int, per_member: int,
                             tensors: dict[str, Tensor]) -> None:
    """H within ``MAX_HIDDEN``, ``per_member`` (the most elements one member's tensor has)
    within 32-bit offsets, and one device."""
    if size > MAX_HIDDEN:
        raise ValueError(f"{where}: hidden size {size} is above MAX_HIDDEN ({MAX_HIDDEN})")
    if per_member >= 2**31:  # in-kernel offsets within one member are 32-bit
        raise ValueError(f"{where}: one member's u has {per_member} elements, more than "
                         "32-bit offsets reach")
    devices = {t.device for t in tensors.values()}
    if len(devices) > 1:
        named = ", ".join(f"{name} on {t.device}" for name, t in tensors.items())
        raise ValueError(f"{where}: tensors on different devices: {named}")


def _check(u: Tensor, weight_hh: Tensor, bias_hh: Tensor, cell: str) -> None:
    where = "fused_recurrence"
    tensors = {"u": u, "weight_hh": weight_hh, "bias_hh": bias_hh}
    _check_cell_and_dtypes(where, cell, tensors)
    if u.dim() != 4 or weight_hh.dim() != 3 or bias_hh.dim() != 2:
        raise ValueError(f"{where}: expected u [G,T,B,gH], weight_hh [G,H,gH], "
                         f"bias_hh [G,gH], got {tuple(u.shape)}, {tuple(weight_hh.shape)}, "
                         f"{tuple(bias_hh.shape)}")
    members, size = weight_hh.shape[0], weight_hh.shape[1]
    gh = GATES[cell] * size
    if (tuple(weight_hh.shape) != (members, size, gh) or tuple(bias_hh.shape) != (members, gh)
            or u.shape[0] != members or u.shape[3] != gh):
        raise ValueError(f"{where}: {cell} with G={members}, H={size} needs "
                         f"weight_hh [{members},{size},{gh}], bias_hh [{members},{gh}] and "
                         f"u [{members},T,B,{gh}], got {tuple(weight_hh.shape)}, "
                         f"{tuple(bias_hh.shape)}, {tuple(u.shape)}")
    _check_sizes_and_devices(where, size, u[0].numel(), tensors)


def _check_rnn(x: Tensor, weight_ih: Tensor, bias_ih: Tensor, weight_hh: Tensor,
               bias_hh: Tensor, cell: str) -> None:
    where = "fused_rnn"
    tensors = {"x": x, "weight_ih": weight_ih, "bias_ih": bias_ih, "weight_hh": weight_hh,
               "bias_hh": bias_hh}
    _check_cell_and_dtypes(where, cell, tensors)
    got = ", ".join(f"{name} {tuple(t.shape)}" for name, t in tensors.items())
    if (x.dim() not in (3, 4) or weight_ih.dim() != 3 or bias_ih.dim() != 2
            or weight_hh.dim() != 3 or bias_hh.dim() != 2):
        raise ValueError(f"{where}: expected x [T,B,I] (shared) or [G,T,B,I], "
                         f"weight_ih [G,I,gH], bias_ih [G,gH], weight_hh [G,H,gH], "
                         f"bias_hh [G,gH], got {got}")
    members, size, inputs = weight_hh.shape[0], weight_hh.shape[1], weight_ih.shape[1]
    gh = GATES[cell] * size
    if (tuple(weight_hh.shape) != (members, size, gh) or tuple(bias_hh.shape) != (members, gh)
            or tuple(weight_ih.shape) != (members, inputs, gh)
            or tuple(bias_ih.shape) != (members, gh) or x.shape[-1] != inputs
            or (x.dim() == 4 and x.shape[0] != members)):
        raise ValueError(f"{where}: {cell} with G={members}, H={size}, I={inputs} needs "
                         f"x [T,B,{inputs}] or [{members},T,B,{inputs}], "
                         f"weight_ih [{members},{inputs},{gh}], bias_ih [{members},{gh}], "
                         f"weight_hh [{members},{size},{gh}], bias_hh [{members},{gh}], "
                         f"got {got}")
    if inputs > MAX_INPUT:
        raise ValueError(f"{where}: input size {inputs} is above MAX_INPUT ({MAX_INPUT})")
    # The largest per-member tensor is u's gradient (written when x needs its own).
    _check_sizes_and_devices(where, size, x.shape[-3] * x.shape[-2] * gh, tensors)


def _launch_config(batch: int, size: int, inputs: int = 1) -> dict[str, int]:
    """Block sizes and warps (tl.dot needs every dimension ≥ 16). A state tile of 2048
    values takes 8 warps: at G=4096, B=64, H=32 on an H200, 4 warps spilled registers and
    made the GRU backward 12 times slower (337 ms against 27); 16 warps, or 32 rows a
    program, were slower too. Wider members get fewer rows so that the tile stays that size.
    ``BLOCK_I`` pads the input size of ``fused_rnn``'s projections (masked zeros).
    """
    block_h = max(16, triton.next_power_of_2(size))
    rows = min(MAX_BLOCK_B, TILE // block_h)
    block_b = min(rows, max(16, triton.next_power_of_2(batch)))
    return {"BLOCK_B": block_b, "BLOCK_H": block_h,
            "BLOCK_I": max(16, triton.next_power_of_2(inputs)),
            "num_warps": 8 if block_b * block_h >= TILE else 4}


def _gradient_buffers(blocks: int, *like: Tensor) -> list[Tensor]:
    """Weight gradients: one program per member stores its own; several add theirs into
    zeros (atomics)."""
    make = torch.zeros if blocks > 1 else torch.empty
    return [make(t.shape, dtype=torch.float32, device=t.device) for t in like]


class _FusedRecurrence(torch.autograd.Function):
    """``fused_recurrence``: the kernels without ``PROJECT``, reading ``u`` and writing its
    gradient. The projection pointers are placeholders the kernels never touch."""

    @staticmethod
    def forward(ctx: FunctionCtx, u: Tensor, weight_hh: Tensor, bias_hh: Tensor,
                cell: str) -> Tensor:
        members, steps, batch, _ = u.shape
        size = weight_hh.shape[1]
        hidden = u.new_empty(members, batch, steps, size)
        config = _launch_config(batch, size)
        grid = (members, triton.cdiv(batch, config["BLOCK_B"]))
        _launch(cell, "forward", _forward_kernel, grid, u, u, u, u, weight_hh, bias_hh,
                hidden, steps, batch, size, 1, 0, CELL=CELLS[cell], GATES=GATES[cell],
                PROJECT=False, **config)
        ctx.save_for_backward(u, weight_hh, bias_hh, hidden)
        ctx.cell = cell
        return hidden

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dhidden: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        u, weight_hh, bias_hh, hidden = ctx.saved_tensors
        cell = ctx.cell
        members, steps, batch, _ = u.shape
        size = weight_hh.shape[1]
        config = _launch_config(batch, size)
        blocks = triton.cdiv(batch, config["BLOCK_B"])
        du = torch.empty_like(u)
        dweight, dbias = _gradient_buffers(blocks, weight_hh, bias_hh)
        _launch(cell, "backward", _backward_kernel, (members, blocks), u, u, u, u, weight_hh,
                bias_hh, hidden, dhidden.contiguous(), du, du, du, dweight, dbias, steps,
                batch, size, 1, 0, CELL=CELLS[cell], GATES=GATES[cell], PROJECT=False,
                STORE_DU=True, ACCUMULATE=blocks > 1, **config)
        return du, dweight, dbias, None


class _FusedRNN(torch.autograd.Function):
    """``fused_rnn``: the kernels with ``PROJECT``. Saves ``x`` (not ``u``); the backward
    writes ``u``'s gradient (``STORE_DU``) only to make ``x``'s, when it is needed."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, weight_ih: Tensor, bias_ih: Tensor,
                weight_hh: Tensor, bias_hh: Tensor, cell: str) -> Tensor:
        steps, batch, inputs = x.shape[-3:]
        members, size = weight_hh.shape[0], weight_hh.shape[1]
        hidden = x.new_empty(members, batch, steps, size)
        config = _launch_config(batch, size, inputs)
        grid = (members, triton.cdiv(batch, config["BLOCK_B"]))
        _launch(cell, "forward", _forward_kernel, grid, x, x, weight_ih, bias_ih, weight_hh,
                bias_hh, hidden, steps, batch, size, inputs, _member_stride(x),
                CELL=CELLS[cell], GATES=GATES[cell], PROJECT=True, **config)
        ctx.save_for_backward(x, weight_ih, bias_ih, weight_hh, bias_hh, hidden)
        ctx.cell = cell
        return hidden

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dhidden: Tensor) -> tuple[Tensor | None, Tensor, Tensor, Tensor,
                                                     Tensor, None]:
        x, weight_ih, bias_ih, weight_hh, bias_hh, hidden = ctx.saved_tensors
        cell = ctx.cell
        steps, batch, inputs = x.shape[-3:]
        members, size, gh = weight_hh.shape
        config = _launch_config(batch, size, inputs)
        blocks = triton.cdiv(batch, config["BLOCK_B"])
        store_du = ctx.needs_input_grad[0]
        # Without x's gradient, du_ptr is a placeholder the kernel never writes.
        du = x.new_empty(members, steps, batch, gh) if store_du else hidden
        grads = _gradient_buffers(blocks, weight_ih, bias_ih, weight_hh, bias_hh)
        _launch(cell, "backward", _backward_kernel, (members, blocks), x, x, weight_ih,
                bias_ih, weight_hh, bias_hh, hidden, dhidden.contiguous(), du, *grads, steps,
                batch, size, inputs, _member_stride(x), CELL=CELLS[cell], GATES=GATES[cell],
                PROJECT=True, STORE_DU=store_du, ACCUMULATE=blocks > 1, **config)
        dx = None
        if store_du:  # dx = du W_ih^T per member, summed over members for a shared x
            dx = torch.bmm(du.view(members, steps * batch, gh), weight_ih.transpose(1, 2))
            dx = dx.view(members, steps, batch, inputs)
            if x.dim() == 3:
                dx = dx.sum(0)
        return dx, *grads, None


def _member_stride(x: Tensor) -> int:
    """Elements between members' inputs: 0 when all members read one shared batch."""
    return 0 if x.dim() == 3 else x[0].numel()


def _launch(cell: str, what: str, kernel: Any, grid: tuple[int, int], *args: Any,
            **meta: Any) -> None:
    """Launch on the tensors' device; a Triton error becomes a FusedKernelError."""
    device = args[0].device
    try:
        if device.type == "cuda":
            with torch.cuda.device(device):
                kernel[grid](*args, **meta)
        else:
            kernel[grid](*args, **meta)
    except RuntimeError:
        raise
    except Exception as err:  # CompilationError, OutOfResources: not RuntimeErrors
        raise FusedKernelError(f"fused {cell} recurrence {what} kernel failed: "
                               f"{type(err).__name__}: {err}") from err


if triton is not None:
    if "input_precision" in inspect.signature(tl.dot).parameters:
        @triton.jit
        def _mm(a, b):
            return tl.dot(a, b, input_precision="ieee")
    else:  # older Triton
        @triton.jit
        def _mm(a, b):
            return tl.dot(a, b, allow_tf32=False)

    @triton.jit
    def _sigmoid(x):
        return 1.0 / (1.0 + tl.exp(-x))  # exp overflow gives 1/inf = 0, never NaN

    @triton.jit
    def _tanh(x):
        e = tl.exp(-2.0 * tl.abs(x))  # in (0, 1]: no overflow
        t = (1.0 - e) / (1.0 + e)
        return tl.where(x < 0, -t, t)

    @triton.jit
    def _put(ptrs, value, mask, ACCUMULATE: tl.constexpr):
        """Write a gradient, or add it to other batch blocks' (atomics) when split."""
        if ACCUMULATE:
            tl.atomic_add(ptrs, value, mask=mask)
        else:
            tl.store(ptrs, value, mask=mask)

    # The kernels read inputs one of two ways, by the constexpr PROJECT:
    #   False: u = x W_ih + b_ih precomputed, one [B, gH] block a step (fused_recurrence);
    #   True: x [B, I] a step (member stride x_stride, 0 when shared), projected here by
    #         W_ih's gate blocks held in registers (fused_rnn): u never exists in memory.
    # Arguments of the unused way are placeholders, never dereferenced.
    @triton.jit
    def _forward_kernel(u_ptr, x_ptr, wi_ptr, bi_ptr, w_ptr, b_ptr, hid_ptr, T, B, H, IN,
                        x_stride, CELL: tl.constexpr, GATES: tl.constexpr,
                        PROJECT: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                        BLOCK_I: tl.constexpr):
        member = tl.program_id(0).to(tl.int64)
        rows = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_H)
        gh = GATES * H
        col_ok = cols < H
        io_mask = (rows < B)[:, None] & col_ok[None, :]
        w_mask = col_ok[:, None] & col_ok[None, :]
        w_ptr += member * H * gh
        b_ptr += member * gh
        hid_ptr += member * B * T * H
        w_offs = cols[:, None] * gh + cols[None, :]  # W[i, k*H + j] at w_offs + k*H
        hid_offs = rows[:, None] * (T * H) + cols[None, :]
        # Padded rows and columns of W and b are zero, so padded state columns stay zero.
        w0 = tl.load(w_ptr + w_offs, mask=w_mask, other=0.0)
        b0 = tl.load(b_ptr + cols, mask=col_ok, other=0.0)[None, :]
        if GATES == 3:
            w1 = tl.load(w_ptr + H + w_offs, mask=w_mask, other=0.0)
            w2 = tl.load(w_ptr + 2 * H + w_offs, mask=w_mask, other=0.0)
            b1 = tl.load(b_ptr + H + cols, mask=col_ok, other=0.0)[None, :]
            b2 = tl.load(b_ptr + 2 * H + cols, mask=col_ok, other=0.0)[None, :]
        if PROJECT:
            # W_ih's gate blocks [BLOCK_I, BLOCK_H], zero past IN inputs (tl.dot: K >= 16).
            x_ptr += member * x_stride
            wi_ptr += member * IN * gh
            bi_ptr += member * gh
            icols = tl.arange(0, BLOCK_I)
            x_offs = rows[:, None] * IN + icols[None, :]
            x_mask = (rows < B)[:, None] & (icols < IN)[None, :]
            wi_offs = icols[:, None] * gh + cols[None, :]
            wi_mask = (icols < IN)[:, None] & col_ok[None, :]
            wi0 = tl.load(wi_ptr + wi_offs, mask=wi_mask, other=0.0)
            # A gate that adds both biases gets their sum once: one bias block fewer.
            b0 += tl.load(bi_ptr + cols, mask=col_ok, other=0.0)[None, :]
            if GATES == 3:
                wi1 = tl.load(wi_ptr + H + wi_offs, mask=wi_mask, other=0.0)
                wi2 = tl.load(wi_ptr + 2 * H + wi_offs, mask=wi_mask, other=0.0)
                b1 += tl.load(bi_ptr + H + cols, mask=col_ok, other=0.0)[None, :]
                # n's input bias stays apart: r scales only h W_n + b_hh_n.
                bi2 = tl.load(bi_ptr + 2 * H + cols, mask=col_ok, other=0.0)[None, :]
        else:
            u_ptr += member * T * B * gh
            u_offs = rows[:, None] * gh + cols[None, :]
        h = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
        for t in range(T):
            # ui: gate i's input term (without the biases folded into b0, b1 above).
            if PROJECT:
                x_t = tl.load(x_ptr + t * B * IN + x_offs, mask=x_mask, other=0.0)
                u0 = _mm(x_t, wi0)
                if GATES == 3:
                    u1 = _mm(x_t, wi1)
                    u2 = _mm(x_t, wi2) + bi2
            else:
                step_u = u_ptr + t * B * gh + u_offs
                u0 = tl.load(step_u, mask=io_mask, other=0.0)
                if GATES == 3:
                    u1 = tl.load(step_u + H, mask=io_mask, other=0.0)
                    u2 = tl.load(step_u + 2 * H, mask=io_mask, other=0.0)
            a0 = u0 + _mm(h, w0) + b0
            if CELL == 0:  # GRU: r, z, n
                a1 = u1 + _mm(h, w1) + b1
                hn = _mm(h, w2) + b2
                r = _sigmoid(a0)
                z = _sigmoid(a1)
                n = _tanh(u2 + r * hn)
                h = n + z * (h - n)
            elif CELL == 1:
                h = _tanh(a0)
            else:
                h = tl.maximum(a0, 0.0)
            tl.store(hid_ptr + hid_offs + t * H, h, mask=io_mask)

    @triton.jit
    def _backward_kernel(u_ptr, x_ptr, wi_ptr, bi_ptr, w_ptr, b_ptr, hid_ptr, dhid_ptr,
                         du_ptr, dwi_ptr, dbi_ptr, dw_ptr, db_ptr, T, B, H, IN, x_stride,
                         CELL: tl.constexpr, GATES: tl.constexpr, PROJECT: tl.constexpr,
                         STORE_DU: tl.constexpr, ACCUMULATE: tl.constexpr,
                         BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                         BLOCK_I: tl.constexpr):
        # STORE_DU writes u's gradient du [G, T, B, gH]; with PROJECT, the kernel sums
        # dW_ih = Σ_t x_t^T du_t and db_ih itself, and du is needed only for x's gradient.
        member = tl.program_id(0).to(tl.int64)
        rows = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_H)
        gh = GATES * H
        col_ok = cols < H
        io_mask = (rows < B)[:, None] & col_ok[None, :]
        w_mask = col_ok[:, None] & col_ok[None, :]
        w_ptr += member * H * gh
        dw_ptr += member * H * gh
        b_ptr += member * gh
        db_ptr += member * gh
        u_ptr += member * T * B * gh
        du_ptr += member * T * B * gh
        hid_ptr += member * B * T * H
        dhid_ptr += member * B * T * H
        w_offs = cols[:, None] * gh + cols[None, :]
        wt_offs = cols[None, :] * gh + cols[:, None]  # W_k transposed: [j_out, i_in]
        u_offs = rows[:, None] * gh + cols[None, :]
        hid_offs = rows[:, None] * (T * H) + cols[None, :]
        wt0 = tl.load(w_ptr + wt_offs, mask=w_mask, other=0.0)
        dw0 = tl.zeros((BLOCK_H, BLOCK_H), dtype=tl.float32)
        db0 = tl.zeros((BLOCK_H,), dtype=tl.float32)
        if GATES == 3:  # the gates are recomputed, so the GRU needs W and b too
            w0 = tl.load(w_ptr + w_offs, mask=w_mask, other=0.0)
            w1 = tl.load(w_ptr + H + w_offs, mask=w_mask, other=0.0)
            w2 = tl.load(w_ptr + 2 * H + w_offs, mask=w_mask, other=0.0)
            wt1 = tl.load(w_ptr + H + wt_offs, mask=w_mask, other=0.0)
            wt2 = tl.load(w_ptr + 2 * H + wt_offs, mask=w_mask, other=0.0)
            b0 = tl.load(b_ptr + cols, mask=col_ok, other=0.0)[None, :]
            b1 = tl.load(b_ptr + H + cols, mask=col_ok, other=0.0)[None, :]
            b2 = tl.load(b_ptr + 2 * H + cols, mask=col_ok, other=0.0)[None, :]
            dw1 = tl.zeros((BLOCK_H, BLOCK_H), dtype=tl.float32)
            dw2 = tl.zeros((BLOCK_H, BLOCK_H), dtype=tl.float32)
            db1 = tl.zeros((BLOCK_H,), dtype=tl.float32)
            db2 = tl.zeros((BLOCK_H,), dtype=tl.float32)
        if PROJECT:
            x_ptr += member * x_stride
            wi_ptr += member * IN * gh
            bi_ptr += member * gh
            dwi_ptr += member * IN * gh
            dbi_ptr += member * gh
            icols = tl.arange(0, BLOCK_I)
            x_offs = rows[:, None] * IN + icols[None, :]
            x_mask = (rows < B)[:, None] & (icols < IN)[None, :]
            wi_offs = icols[:, None] * gh + cols[None, :]
            wi_mask = (icols < IN)[:, None] & col_ok[None, :]
            dwi0 = tl.zeros((BLOCK_I, BLOCK_H), dtype=tl.float32)
            if GATES == 3:
                # The GRU recomputes its gates' input terms as the forward does (tanh and
                # relu take their derivative from h_t: they need no W_ih here).
                wi0 = tl.load(wi_ptr + wi_offs, mask=wi_mask, other=0.0)
                wi1 = tl.load(wi_ptr + H + wi_offs, mask=wi_mask, other=0.0)
                wi2 = tl.load(wi_ptr + 2 * H + wi_offs, mask=wi_mask, other=0.0)
                b0 += tl.load(bi_ptr + cols, mask=col_ok, other=0.0)[None, :]
                b1 += tl.load(bi_ptr + H + cols, mask=col_ok, other=0.0)[None, :]
                bi2 = tl.load(bi_ptr + 2 * H + cols, mask=col_ok, other=0.0)[None, :]
                dwi1 = tl.zeros((BLOCK_I, BLOCK_H), dtype=tl.float32)
                dwi2 = tl.zeros((BLOCK_I, BLOCK_H), dtype=tl.float32)
                # db_ih equals db_hh for r and z; for n it sums dn, db_hh_n sums dn * r.
                dbi2 = tl.zeros((BLOCK_H,), dtype=tl.float32)
        dh = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)  # dL/dh_t, carried backwards
        for i in range(T):
            t = T - 1 - i
            step_hid = hid_offs + t * H
            dh += tl.load(dhid_ptr + step_hid, mask=io_mask, other=0.0)
            # h_{t-1}, zero at t = 0 (and in padded rows, so they add nothing to dW).
            prev = tl.load(hid_ptr + hid_offs + tl.maximum(t - 1, 0) * H, mask=io_mask,
                           other=0.0)
            h_prev = tl.where(t > 0, prev, 0.0)
            h_prev_t = tl.trans(h_prev)
            step_du = du_ptr + t * B * gh + u_offs
            if PROJECT:  # zero in padded rows and columns: they add nothing to dW_ih
                x_t = tl.load(x_ptr + t * B * IN + x_offs, mask=x_mask, other=0.0)
                x_t_t = tl.trans(x_t)
            if CELL == 0:
                if PROJECT:
                    u0 = _mm(x_t, wi0)
                    u1 = _mm(x_t, wi1)
                    u2 = _mm(x_t, wi2) + bi2
                else:
                    step_u = u_ptr + t * B * gh + u_offs
                    u0 = tl.load(step_u, mask=io_mask, other=0.0)
                    u1 = tl.load(step_u + H, mask=io_mask, other=0.0)
                    u2 = tl.load(step_u + 2 * H, mask=io_mask, other=0.0)
                a0 = u0 + _mm(h_prev, w0) + b0
                a1 = u1 + _mm(h_prev, w1) + b1
                hn = _mm(h_prev, w2) + b2
                r = _sigmoid(a0)
                z = _sigmoid(a1)
                n = _tanh(u2 + r * hn)
                dn = dh * (1.0 - z) * (1.0 - n * n)  # dL/d(pre-tanh of n)
                dz = dh * (h_prev - n) * z * (1.0 - z)
                dr = dn * hn * r * (1.0 - r)
                dhn = dn * r  # dL/d(h W_n + b_n)
                if STORE_DU:
                    tl.store(step_du, dr, mask=io_mask)
                    tl.store(step_du + H, dz, mask=io_mask)
                    tl.store(step_du + 2 * H, dn, mask=io_mask)
                if PROJECT:
                    dwi0 += _mm(x_t_t, dr)
                    dwi1 += _mm(x_t_t, dz)
                    dwi2 += _mm(x_t_t, dn)
                    dbi2 += tl.sum(dn, axis=0)
                dw0 += _mm(h_prev_t, dr)
                dw1 += _mm(h_prev_t, dz)
                dw2 += _mm(h_prev_t, dhn)
                db0 += tl.sum(dr, axis=0)
                db1 += tl.sum(dz, axis=0)
                db2 += tl.sum(dhn, axis=0)
                dh = dh * z + _mm(dr, wt0) + _mm(dz, wt1) + _mm(dhn, wt2)
            else:  # tanh, relu: the derivative from the stored output h_t
                h_t = tl.load(hid_ptr + step_hid, mask=io_mask, other=0.0)
                if CELL == 1:  # noqa: SIM108 (a static branch, kept as in the forward)
                    da = dh * (1.0 - h_t * h_t)
                else:
                    da = tl.where(h_t > 0.0, dh, 0.0)
                if STORE_DU:
                    tl.store(step_du, da, mask=io_mask)
                if PROJECT:
                    dwi0 += _mm(x_t_t, da)
                dw0 += _mm(h_prev_t, da)
                db0 += tl.sum(da, axis=0)
                dh = _mm(da, wt0)
        _put(dw_ptr + w_offs, dw0, w_mask, ACCUMULATE)
        _put(db_ptr + cols, db0, col_ok, ACCUMULATE)
        if GATES == 3:
            _put(dw_ptr + H + w_offs, dw1, w_mask, ACCUMULATE)
            _put(dw_ptr + 2 * H + w_offs, dw2, w_mask, ACCUMULATE)
            _put(db_ptr + H + cols, db1, col_ok, ACCUMULATE)
            _put(db_ptr + 2 * H + cols, db2, col_ok, ACCUMULATE)
        if PROJECT:
            _put(dwi_ptr + wi_offs, dwi0, wi_mask, ACCUMULATE)
            _put(dbi_ptr + cols, db0, col_ok, ACCUMULATE)  # r's (or the one gate's): db_hh's
            if GATES == 3:
                _put(dwi_ptr + H + wi_offs, dwi1, wi_mask, ACCUMULATE)
                _put(dwi_ptr + 2 * H + wi_offs, dwi2, wi_mask, ACCUMULATE)
                _put(dbi_ptr + H + cols, db1, col_ok, ACCUMULATE)
                _put(dbi_ptr + 2 * H + cols, dbi2, col_ok, ACCUMULATE)
