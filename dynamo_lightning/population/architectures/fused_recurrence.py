"""A stacked RNN's whole time loop as one Triton kernel, forward and backward.

Why: training thousands of small recurrent members on a GPU is bound by memory traffic. The
plain path runs a batched matmul and the gate arithmetic per time step, each reading and
writing ``[G, B, gH]`` activations, and its backward keeps every step's gates. Here each
program holds one member's ``W_hh`` and a block of its batch's state on chip for all T steps:
the forward reads the projected inputs ``u`` once and writes the states once; the backward
recomputes the gates from the stored states instead of saving them.

Layouts: ``u [G, B, T, gH]`` (``x W_ih + b_ih``, batch-major: the rows of ``x [B, T, I]``
in their own order), ``weight_hh [G, H, gH]`` (input-major, ``h @ W``), ``bias_hh [G, gH]``,
and the states ``hidden [G, B, T, S]``, from a zero initial state: ``u`` and ``hidden`` share
their row order (b, t). Cells: ``gru`` (gates r, z, n in torch's order), ``tanh``, ``relu``
(S = H), ``lstm`` (gates i, f, g, o in torch's order; the state is ``[h, c]``, S = 2H, and
the recurrent input reads h only), and the leaky cells of the ``ctrnn`` architecture, with
``α`` a runtime scalar and ``f`` relu, tanh or softplus: ``ctrnn_rate``
(``h' = (1-α) h + α f(u + h W + b)``) and ``ctrnn_current`` (``v' = (1-α) v + α (u + f(v) W
+ b)``); Dale's law and autapses shape ``W`` before the kernel. float32 only, with
IEEE-precision dots unless PyTorch's float32 matmul precision allows TF32
(:func:`uses_tf32`).

The backward kernel carries dL/dh (and the LSTM's dL/dc) back through time and writes the
gates' gradients; the gradient of ``weight_hh``, a sum over every (b, t) row, is then one
batched matmul per gate group over all B·T rows (:data:`DW_OUTSIDE`), which keeps it out of
the kernel's registers.

Without CUDA the kernels run only under Triton's interpreter (``TRITON_INTERPRET=1`` set
before this module is imported), which is how the tests check them on a CPU.
"""

from __future__ import annotations

import inspect
import math
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

CELLS = {"gru": 0, "tanh": 1, "relu": 2, "lstm": 3, "ctrnn_rate": 4, "ctrnn_current": 5}
"""Fused cells and their kernel switch (``CELL``)."""
GATES = {"gru": 3, "tanh": 1, "relu": 1, "lstm": 4, "ctrnn_rate": 1, "ctrnn_current": 1}
STATES = {"gru": 1, "tanh": 1, "relu": 1, "lstm": 2, "ctrnn_rate": 1, "ctrnn_current": 1}
"""State width in units of H: the LSTM's state is ``[h, c]``."""
LEAKY = ("ctrnn_rate", "ctrnn_current")
"""The cells that take ``alpha`` and ``activation``."""
ACTIVATIONS = {"relu": 0, "tanh": 1, "softplus": 2}
"""The leaky cells' ``f`` and its kernel switch (``ACT``)."""
MAX_HIDDEN = 64
"""Widest H the kernels take: a program keeps ``gates`` blocks of ``[H, H]`` weights (and,
backward, their transposes and, with ``DW_OUTSIDE`` off, as many gradient accumulators) in
registers; wider members run the plain path. The same for every cell (``applies`` sees H,
not the cell): at H=64 the GRU's and the LSTM's backward spill registers (ptxas, IEEE dots:
1,336 and 1,348 bytes of spill stores; ``benchmarks/kernel_registers.py``) but stay correct;
:data:`FASTER_UP_TO` keeps them off."""
FASTER_UP_TO = {"gru": 32, "tanh": 64, "relu": 64, "lstm": 32}
"""Widest H at which the trainer fuses each cell; a cell absent is never fused by it. On an
H200 at H=64 (1,024 members, B=64, T=64) the fused GRU trained at 21.2 steps/s against 24.8
with its cell compiled (its backward spills registers), the fused tanh RNN at 72.9 against
65.4. The fused LSTM at H=32 (the 256-member grid, one CUDA graph a step) trained at 134.6
steps/s against 127.8 with its cell compiled (1.05×, ``benchmarks/population_training.py``'s
``graphed+fused-lstm`` against ``graphed+fused``); wider LSTMs are untimed and stay
compiled. The leaky cells (``ctrnn_rate``, ``ctrnn_current``) are absent: no GPU has timed
them yet (``benchmarks/population_training.py``'s ``ctrnn`` case, path ``graphed+fused+ctrnn``,
does)."""
MAX_BLOCK_B = 64
"""Most batch rows per program; a larger batch is split over programs whose bias (and, with
``DW_OUTSIDE`` off, weight) gradients are summed with atomic adds."""
DW_OUTSIDE = True
"""Compute ``dW_hh`` with batched matmuls after the backward kernel, freeing its registers
(the GRU's kept three ``[H, H]`` accumulators, a transposed state and three more dots a
step); False keeps the in-kernel accumulation, so that a benchmark can time both."""
TILE = 2048
"""Most state values (rows × padded H × ``STATES``) one program holds."""


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


def uses_tf32(device: torch.device) -> bool:
    """Whether the kernels' dots run in TF32 on ``device``: on CUDA, when PyTorch's float32
    matmul precision is not ``"highest"`` (``torch.set_float32_matmul_precision("high")``,
    or ``torch.backends.cuda.matmul.allow_tf32 = True``), as torch's own matmuls then do.
    TF32 keeps 10 bits of each operand's mantissa; the sums stay float32."""
    return device.type == "cuda" and torch.get_float32_matmul_precision() != "highest"


def fused_recurrence(u: Tensor, weight_hh: Tensor, bias_hh: Tensor, cell: str,
                     alpha: float = 1.0, activation: str = "relu") -> Tensor:
    """States ``hidden [G, B, T, S]`` of ``cell`` run over ``u [G, B, T, gH]`` from zero
    (``u[:, b, t]`` is step t's projected input of batch row b; S = H, or 2H for the
    LSTM's ``[h, c]``). ``alpha`` (in (0, 1]) and ``activation`` (``ACTIVATIONS``) are the
    leaky cells' (``LEAKY``); the other cells ignore them.

    Differentiable in ``u``, ``weight_hh`` and ``bias_hh`` (once: no double backward).

    Raises:
        RuntimeError: Triton is missing (with the reason).
        ValueError: an unknown cell or activation, an alpha out of range, or shapes that
            do not fit together (named).
        TypeError: a tensor that is not float32.
    """
    if triton is None:
        raise RuntimeError(f"fused_recurrence: {_MISSING}")
    _check(u, weight_hh, bias_hh, cell)
    if cell in LEAKY:
        _check_leaky(alpha, activation)
    return _FusedRecurrence.apply(u.contiguous(), weight_hh.contiguous(), bias_hh.contiguous(),
                                  cell, float(alpha), activation)


def _transformed() -> bool:
    """Whether a ``torch.func`` transform (vmap, grad, jacrev, ...) is active."""
    peek = getattr(torch._C._functorch, "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def _check_leaky(alpha: object, activation: object) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"fused_recurrence: unknown activation {activation!r}, expected one "
                         f"of {sorted(ACTIVATIONS)}")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha <= 1:
        raise ValueError(f"fused_recurrence: alpha must be a number in (0, 1], got {alpha!r}")


def _check(u: Tensor, weight_hh: Tensor, bias_hh: Tensor, cell: str) -> None:
    if cell not in CELLS:
        raise ValueError(f"fused_recurrence: unknown cell {cell!r}, expected one of "
                         f"{sorted(CELLS)}")
    for name, t in (("u", u), ("weight_hh", weight_hh), ("bias_hh", bias_hh)):
        if t.dtype != torch.float32:
            raise TypeError(f"fused_recurrence: {name} is {t.dtype}, only float32 is fused")
    if u.dim() != 4 or weight_hh.dim() != 3 or bias_hh.dim() != 2:
        raise ValueError(f"fused_recurrence: expected u [G,B,T,gH], weight_hh [G,H,gH], "
                         f"bias_hh [G,gH], got {tuple(u.shape)}, {tuple(weight_hh.shape)}, "
                         f"{tuple(bias_hh.shape)}")
    members, size = weight_hh.shape[0], weight_hh.shape[1]
    gh = GATES[cell] * size
    if (tuple(weight_hh.shape) != (members, size, gh) or tuple(bias_hh.shape) != (members, gh)
            or u.shape[0] != members or u.shape[3] != gh):
        raise ValueError(f"fused_recurrence: {cell} with G={members}, H={size} needs "
                         f"weight_hh [{members},{size},{gh}], bias_hh [{members},{gh}] and "
                         f"u [{members},B,T,{gh}], got {tuple(weight_hh.shape)}, "
                         f"{tuple(bias_hh.shape)}, {tuple(u.shape)}")
    if size > MAX_HIDDEN:
        raise ValueError(f"fused_recurrence: hidden size {size} is above MAX_HIDDEN "
                         f"({MAX_HIDDEN})")
    if u[0].numel() >= 2**31:  # in-kernel offsets within one member are 32-bit
        raise ValueError(f"fused_recurrence: one member's u has {u[0].numel()} elements, "
                         "more than 32-bit offsets reach")
    if not (u.device == weight_hh.device == bias_hh.device):
        raise ValueError(f"fused_recurrence: tensors on different devices: u on {u.device}, "
                         f"weight_hh on {weight_hh.device}, bias_hh on {bias_hh.device}")


def _launch_config(batch: int, size: int, states: int = 1) -> dict[str, int]:
    """Block sizes and warps (tl.dot needs every dimension ≥ 16) for H = ``size`` and a
    state ``states`` H wide. A state tile of 2048 values takes 8 warps: at G=4096, B=64,
    H=32 on an H200, 4 warps spilled registers and made the GRU backward 12 times slower
    (337 ms against 27); 16 warps, or 32 rows a program, were slower too. Wider members get
    fewer rows so that the tile stays that size.

    The LSTM's tile is its whole state, h and c, so it gets half the rows: at H=32, 32 rows
    and 8 warps, ptxas (Triton 3.9, sm_90a, IEEE dots; ``benchmarks/kernel_registers.py``)
    gives its backward 68 bytes of spill stores, the GRU's at 64 rows 76, and its forward
    none.
    """
    block_h = max(16, triton.next_power_of_2(size))
    rows = min(MAX_BLOCK_B, TILE // (states * block_h))
    block_b = min(rows, max(16, triton.next_power_of_2(batch)))
    return {"BLOCK_B": block_b, "BLOCK_H": block_h,
            "num_warps": 8 if states * block_b * block_h >= TILE else 4}


class _FusedRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, u: Tensor, weight_hh: Tensor, bias_hh: Tensor,
                cell: str, alpha: float, activation: str) -> Tensor:
        members, batch, steps, _ = u.shape
        size = weight_hh.shape[1]
        hidden = u.new_empty(members, batch, steps, STATES[cell] * size)
        config = _launch_config(batch, size, STATES[cell])
        grid = (members, triton.cdiv(batch, config["BLOCK_B"]))
        tf32 = uses_tf32(u.device)
        _launch(cell, "forward", _forward_kernel, grid, u, weight_hh, bias_hh, hidden,
                steps, batch, size, alpha, CELL=CELLS[cell], GATES=GATES[cell],
                ACT=ACTIVATIONS[activation], TF32=tf32, **config)
        ctx.save_for_backward(u, weight_hh, bias_hh, hidden)
        ctx.cell, ctx.tf32 = cell, tf32  # the backward recomputes the gates as they were
        ctx.alpha, ctx.activation = alpha, activation
        return hidden

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dhidden: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor, None, None, None]:
        u, weight_hh, bias_hh, hidden = ctx.saved_tensors
        cell = ctx.cell
        members, batch, steps, _ = u.shape
        size = weight_hh.shape[1]
        config = _launch_config(batch, size, STATES[cell])
        blocks = triton.cdiv(batch, config["BLOCK_B"])
        outside = DW_OUTSIDE
        # One program per member stores its gradients; several add theirs into zeros.
        make = torch.zeros if blocks > 1 else torch.empty
        du = torch.empty_like(u)
        dbias = make(bias_hh.shape, dtype=torch.float32, device=u.device)
        # dW_hh outside: the kernel also writes the GRU's n-gate hidden-side gradient dn·r
        # (du holds dn, u's); r's and z's are du's own, as are all four of the LSTM's.
        # Unused pointers get du.
        dweight = None if outside else make(weight_hh.shape, dtype=torch.float32,
                                            device=u.device)
        dhn = u.new_empty(hidden.shape) if outside and cell == "gru" else du
        _launch(cell, "backward", _backward_kernel, (members, blocks), u, weight_hh, bias_hh,
                hidden, dhidden.contiguous(), du, dhn, du if dweight is None else dweight,
                dbias, steps, batch, size, ctx.alpha, CELL=CELLS[cell], GATES=GATES[cell],
                ACT=ACTIVATIONS[ctx.activation], TF32=ctx.tf32, ACCUMULATE=blocks > 1,
                DW_OUTSIDE=outside, **config)
        if dweight is None:
            if cell == "gru":
                dweight = torch.cat([_state_products(hidden, du[..., : 2 * size], size),
                                     _state_products(hidden, dhn, size)], dim=2)
            elif cell == "ctrnn_current":  # the recurrent input reads the rates f(v)
                dweight = _state_products(_TORCH_ACTIVATIONS[ctx.activation](hidden), du)
                if ctx.activation == "softplus":  # f(v_{-1}) = f(0) = log 2, not 0
                    dweight = dweight + math.log(2.0) * du[:, :, 0].sum(1).unsqueeze(1)
            else:
                dweight = _state_products(hidden, du, size)
        return du, dweight, dbias, None, None, None


_TORCH_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh,
                      "softplus": torch.nn.functional.softplus}


def _state_products(hidden: Tensor, grad: Tensor, size: int | None = None) -> Tensor:
    """``Σ_{b,t} h_{t-1}[b]ᵀ grad_t[b]`` per member (``[G, H, n]``) for the states
    ``hidden [G, B, T, S]`` whose first ``size`` (H, default S) columns are h, and a gradient
    ``grad [G, B, T, n]`` in the same (b, t) row order, from ``h_{-1} = 0``.

    Flattened to ``[G, B·T, ·]`` rows, row r+1 is step t+1 of row r's batch row: one batched
    matmul of ``hidden``'s rows 0..BT-2 with ``grad``'s rows 1..BT-1 (strided views, no copy)
    pairs every ``h_{t-1}`` with its ``grad_t``, plus B-1 spurious pairs (b, T-1)·(b+1, 0)
    across batch rows, which a second, [G, H, B-1]-sized one subtracts. ``grad`` may be a
    column slice (``du[..., :2H]``), and h one of a wider state (the LSTM's ``[h, c]``), so
    long as (b, t) flatten to one stride: a matrix whose unit stride is one dimension and
    whose other stride is at least its extent, which cuBLAS takes as its leading dimension
    (torch copies only operands that are not so).

    Bytes at G=4,096, B=64, T=64, H=32 (each ``[G, B, T, H]`` float32 buffer is 2.1 GB): the
    GRU's kernel writes ``dn·r`` (2.1 GB, 8 KB a step per program) and the matmuls read
    ``hidden`` twice, ``du``'s r and z and ``dn·r`` (10.7 GB); the tanh and ReLU cells read
    ``hidden`` and ``du`` once (4.3 GB) and write nothing extra.
    """
    if size is not None and size != hidden.shape[-1]:
        hidden = hidden[..., :size]  # h of [h, c]: a view, rows 2H apart
    members, batch, steps, size = hidden.shape
    if steps == 1:  # every pair would be spurious: h_{-1} = 0
        return hidden.new_zeros(members, size, grad.shape[-1])
    rows, grads = hidden.flatten(1, 2), grad.flatten(1, 2)
    out = torch.bmm(rows[:, :-1].transpose(1, 2), grads[:, 1:])
    if batch > 1:
        out.baddbmm_(hidden[:, :-1, -1].transpose(1, 2), grad[:, 1:, 0], alpha=-1.0)
    return out


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
        def _mm(a, b, TF32: tl.constexpr):
            if TF32:
                return tl.dot(a, b, input_precision="tf32")
            return tl.dot(a, b, input_precision="ieee")
    else:  # older Triton
        @triton.jit
        def _mm(a, b, TF32: tl.constexpr):
            return tl.dot(a, b, allow_tf32=TF32)

    @triton.jit
    def _sigmoid(x):
        return 1.0 / (1.0 + tl.exp(-x))  # exp overflow gives 1/inf = 0, never NaN

    @triton.jit
    def _tanh(x):
        e = tl.exp(-2.0 * tl.abs(x))  # in (0, 1]: no overflow
        t = (1.0 - e) / (1.0 + e)
        return tl.where(x < 0, -t, t)

    @triton.jit
    def _act(x, ACT: tl.constexpr):
        """The leaky cells' f: relu, tanh, or softplus (log(1 + e^x), stable)."""
        if ACT == 0:
            return tl.maximum(x, 0.0)
        if ACT == 1:
            return _tanh(x)
        return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))

    @triton.jit
    def _act_grad(x, ACT: tl.constexpr):
        """f'(x) of :func:`_act` (relu's is 0 at 0, as torch's)."""
        if ACT == 0:
            return tl.where(x > 0.0, 1.0, 0.0)
        if ACT == 1:
            t = _tanh(x)
            return 1.0 - t * t
        return _sigmoid(x)

    @triton.jit
    def _put(ptrs, value, mask, ACCUMULATE: tl.constexpr):
        """Write a gradient, or add it to other batch blocks' (atomics) when the batch is
        split over several programs."""
        if ACCUMULATE:
            tl.atomic_add(ptrs, value, mask=mask)
        else:
            tl.store(ptrs, value, mask=mask)

    @triton.jit
    def _state_before(hid_ptr, hid_offs, t, S, mask):
        """State columns at step t-1 of a block of rows (steps S values apart; h, or the
        LSTM's c from ``hid_ptr + H``): zero at t = 0 (and in padded rows and columns, so
        that they add nothing to the gradients)."""
        prev = tl.load(hid_ptr + hid_offs + tl.maximum(t - 1, 0) * S, mask=mask, other=0.0)
        return tl.where(t > 0, prev, 0.0)

    @triton.jit
    def _program_block(T, B, H, CELL: tl.constexpr, GATES: tl.constexpr,
                       BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
        """What both kernels derive from the program id: its member, gate and state widths
        (S: the LSTM's state is [h, c]), masks, and the offsets of W's first gate block
        (``W[i, k*H + j]`` at ``w_offs + k*H``), of ``u[b, t]`` (at ``u_offs + t*gh``) and of
        the state ``[b, t]`` (at ``hid_offs + t*S``) within the member."""
        member = tl.program_id(0).to(tl.int64)
        rows = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_H)
        gh = GATES * H
        S = 2 * H if CELL == 3 else H
        col_ok = cols < H
        io_mask = (rows < B)[:, None] & col_ok[None, :]
        w_mask = col_ok[:, None] & col_ok[None, :]
        w_offs = cols[:, None] * gh + cols[None, :]
        u_offs = rows[:, None] * (T * gh) + cols[None, :]
        hid_offs = rows[:, None] * (T * S) + cols[None, :]
        return member, cols, gh, S, col_ok, io_mask, w_mask, w_offs, u_offs, hid_offs

    @triton.jit
    def _forward_kernel(u_ptr, w_ptr, b_ptr, hid_ptr, T, B, H, alpha, CELL: tl.constexpr,
                        GATES: tl.constexpr, ACT: tl.constexpr, TF32: tl.constexpr,
                        BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
        member, cols, gh, S, col_ok, io_mask, w_mask, w_offs, u_offs, hid_offs = (
            _program_block(T, B, H, CELL, GATES, BLOCK_B, BLOCK_H))
        w_ptr += member * H * gh
        b_ptr += member * gh
        u_ptr += member * B * T * gh
        hid_ptr += member * B * T * S
        # Padded rows and columns of W and b are zero, so padded state columns stay zero
        # (the LSTM's: c = c/2 + 0, h = tanh(0)/2) or, where f(0) is not (the leaky rate
        # cell with softplus), meet only W's zero rows.
        w0 = tl.load(w_ptr + w_offs, mask=w_mask, other=0.0)
        b0 = tl.load(b_ptr + cols, mask=col_ok, other=0.0)[None, :]
        if GATES >= 3:
            w1 = tl.load(w_ptr + H + w_offs, mask=w_mask, other=0.0)
            w2 = tl.load(w_ptr + 2 * H + w_offs, mask=w_mask, other=0.0)
            b1 = tl.load(b_ptr + H + cols, mask=col_ok, other=0.0)[None, :]
            b2 = tl.load(b_ptr + 2 * H + cols, mask=col_ok, other=0.0)[None, :]
        if GATES == 4:
            w3 = tl.load(w_ptr + 3 * H + w_offs, mask=w_mask, other=0.0)
            b3 = tl.load(b_ptr + 3 * H + cols, mask=col_ok, other=0.0)[None, :]
        h = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
        c = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)  # the LSTM's memory
        for t in range(T):
            step_u = u_ptr + t * gh + u_offs
            if CELL == 5:  # ctrnn_current: the recurrent input reads the rates f(v)
                a0 = tl.load(step_u, mask=io_mask, other=0.0) + _mm(_act(h, ACT), w0, TF32) + b0
            else:
                a0 = tl.load(step_u, mask=io_mask, other=0.0) + _mm(h, w0, TF32) + b0
            if CELL == 0:  # GRU: r, z, n
                a1 = tl.load(step_u + H, mask=io_mask, other=0.0) + _mm(h, w1, TF32) + b1
                hn = _mm(h, w2, TF32) + b2
                r = _sigmoid(a0)
                z = _sigmoid(a1)
                n = _tanh(tl.load(step_u + 2 * H, mask=io_mask, other=0.0) + r * hn)
                h = n + z * (h - n)
            elif CELL == 1:
                h = _tanh(a0)
            elif CELL == 2:
                h = tl.maximum(a0, 0.0)
            elif CELL == 4:  # ctrnn_rate
                h = h + alpha * (_act(a0, ACT) - h)
            elif CELL == 5:  # ctrnn_current
                h = h + alpha * (a0 - h)
            else:  # LSTM: i, f, g, o, all from h_{t-1}
                a1 = tl.load(step_u + H, mask=io_mask, other=0.0) + _mm(h, w1, TF32) + b1
                a2 = tl.load(step_u + 2 * H, mask=io_mask, other=0.0) + _mm(h, w2, TF32) + b2
                a3 = tl.load(step_u + 3 * H, mask=io_mask, other=0.0) + _mm(h, w3, TF32) + b3
                c = _sigmoid(a1) * c + _sigmoid(a0) * _tanh(a2)
                h = _sigmoid(a3) * _tanh(c)
                tl.store(hid_ptr + hid_offs + t * S + H, c, mask=io_mask)
            tl.store(hid_ptr + hid_offs + t * S, h, mask=io_mask)

    @triton.jit
    def _backward_kernel(u_ptr, w_ptr, b_ptr, hid_ptr, dhid_ptr, du_ptr, dhn_ptr, dw_ptr,
                         db_ptr, T, B, H, alpha, CELL: tl.constexpr, GATES: tl.constexpr,
                         ACT: tl.constexpr, TF32: tl.constexpr, ACCUMULATE: tl.constexpr,
                         DW_OUTSIDE: tl.constexpr, BLOCK_B: tl.constexpr,
                         BLOCK_H: tl.constexpr):
        # DW_OUTSIDE: no dW accumulators; the GRU writes dn·r to dhn_ptr ([G, B, T, H]) for
        # the matmuls after the kernel, and the tanh and ReLU cells never need h_{t-1}.
        # db_hh stays here: [BLOCK_H] vectors and a row sum a step, where a sum after the
        # kernel would read du and dn·r again (6.4 GB for the GRU at G=4,096, B=T=64, H=32).
        member, cols, gh, S, col_ok, io_mask, w_mask, w_offs, u_offs, hid_offs = (
            _program_block(T, B, H, CELL, GATES, BLOCK_B, BLOCK_H))
        w_ptr += member * H * gh
        dw_ptr += member * H * gh
        b_ptr += member * gh
        db_ptr += member * gh
        u_ptr += member * B * T * gh
        du_ptr += member * B * T * gh
        hid_ptr += member * B * T * S
        dhid_ptr += member * B * T * S
        dhn_ptr += member * B * T * H  # the GRU's dn·r (S = H), or du unused
        wt_offs = cols[None, :] * gh + cols[:, None]  # W_k transposed: [j_out, i_in]
        wt0 = tl.load(w_ptr + wt_offs, mask=w_mask, other=0.0)
        db0 = tl.zeros((BLOCK_H,), dtype=tl.float32)
        if not DW_OUTSIDE:
            dw0 = tl.zeros((BLOCK_H, BLOCK_H), dtype=tl.float32)
        if CELL == 4:  # ctrnn_rate recomputes its pre-activation: W and b too
            w0 = tl.load(w_ptr + w_offs, mask=w_mask, other=0.0)
            b0 = tl.load(b_ptr + cols, mask=col_ok, other=0.0)[None, :]
        if GATES >= 3:  # the gates are recomputed, so the GRU and LSTM need W and b too
            w0 = tl.load(w_ptr + w_offs, mask=w_mask, other=0.0)
            w1 = tl.load(w_ptr + H + w_offs, mask=w_mask, other=0.0)
            w2 = tl.load(w_ptr + 2 * H + w_offs, mask=w_mask, other=0.0)
            wt1 = tl.load(w_ptr + H + wt_offs, mask=w_mask, other=0.0)
            wt2 = tl.load(w_ptr + 2 * H + wt_offs, mask=w_mask, other=0.0)
            b0 = tl.load(b_ptr + cols, mask=col_ok, other=0.0)[None, :]
            b1 = tl.load(b_ptr + H + cols, mask=col_ok, other=0.0)[None, :]
            b2 = tl.load(b_ptr + 2 * H + cols, mask=col_ok, other=0.0)[None, :]
            db1 = tl.zeros((BLOCK_H,), dtype=tl.float32)
            db2 = tl.zeros((BLOCK_H,), dtype=tl.float32)
            if not DW_OUTSIDE:
                dw1 = tl.zeros((BLOCK_H, BLOCK_H), dtype=tl.float32)
                dw2 = tl.zeros((BLOCK_H, BLOCK_H), dtype=tl.float32)
        if GATES == 4:
            w3 = tl.load(w_ptr + 3 * H + w_offs, mask=w_mask, other=0.0)
            wt3 = tl.load(w_ptr + 3 * H + wt_offs, mask=w_mask, other=0.0)
            b3 = tl.load(b_ptr + 3 * H + cols, mask=col_ok, other=0.0)[None, :]
            db3 = tl.zeros((BLOCK_H,), dtype=tl.float32)
            if not DW_OUTSIDE:
                dw3 = tl.zeros((BLOCK_H, BLOCK_H), dtype=tl.float32)
        dh = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)  # dL/dh_t, carried backwards
        dc = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)  # the LSTM's dL/dc_t
        for i in range(T):
            t = T - 1 - i
            step_hid = hid_offs + t * S
            dh += tl.load(dhid_ptr + step_hid, mask=io_mask, other=0.0)
            step_du = du_ptr + t * gh + u_offs
            if CELL == 0:
                h_prev = _state_before(hid_ptr, hid_offs, t, S, io_mask)
                step_u = u_ptr + t * gh + u_offs
                a0 = tl.load(step_u, mask=io_mask, other=0.0) + _mm(h_prev, w0, TF32) + b0
                a1 = (tl.load(step_u + H, mask=io_mask, other=0.0) + _mm(h_prev, w1, TF32)
                      + b1)
                hn = _mm(h_prev, w2, TF32) + b2
                r = _sigmoid(a0)
                z = _sigmoid(a1)
                n = _tanh(tl.load(step_u + 2 * H, mask=io_mask, other=0.0) + r * hn)
                dn = dh * (1.0 - z) * (1.0 - n * n)  # dL/d(pre-tanh of n)
                dz = dh * (h_prev - n) * z * (1.0 - z)
                dr = dn * hn * r * (1.0 - r)
                dhn = dn * r  # dL/d(h W_n + b_n)
                tl.store(step_du, dr, mask=io_mask)
                tl.store(step_du + H, dz, mask=io_mask)
                tl.store(step_du + 2 * H, dn, mask=io_mask)
                if DW_OUTSIDE:
                    tl.store(dhn_ptr + step_hid, dhn, mask=io_mask)  # S = H
                else:
                    h_prev_t = tl.trans(h_prev)
                    dw0 += _mm(h_prev_t, dr, TF32)
                    dw1 += _mm(h_prev_t, dz, TF32)
                    dw2 += _mm(h_prev_t, dhn, TF32)
                db0 += tl.sum(dr, axis=0)
                db1 += tl.sum(dz, axis=0)
                db2 += tl.sum(dhn, axis=0)
                dh = dh * z + _mm(dr, wt0, TF32) + _mm(dz, wt1, TF32) + _mm(dhn, wt2, TF32)
            elif CELL == 3:  # LSTM: the gates from the stored h_{t-1}; c_{t-1}, c_t stored
                dc += tl.load(dhid_ptr + step_hid + H, mask=io_mask, other=0.0)
                h_prev = _state_before(hid_ptr, hid_offs, t, S, io_mask)
                step_u = u_ptr + t * gh + u_offs
                gi = _sigmoid(tl.load(step_u, mask=io_mask, other=0.0) + _mm(h_prev, w0, TF32)
                              + b0)
                gf = _sigmoid(tl.load(step_u + H, mask=io_mask, other=0.0)
                              + _mm(h_prev, w1, TF32) + b1)
                gg = _tanh(tl.load(step_u + 2 * H, mask=io_mask, other=0.0)
                           + _mm(h_prev, w2, TF32) + b2)
                go = _sigmoid(tl.load(step_u + 3 * H, mask=io_mask, other=0.0)
                              + _mm(h_prev, w3, TF32) + b3)
                tc = _tanh(tl.load(hid_ptr + step_hid + H, mask=io_mask, other=0.0))
                do = dh * tc * go * (1.0 - go)
                dc += dh * go * (1.0 - tc * tc)  # all of dL/dc_t
                di = dc * gg * gi * (1.0 - gi)
                df = dc * _state_before(hid_ptr + H, hid_offs, t, S, io_mask) * gf * (1.0 - gf)
                dg = dc * gi * (1.0 - gg * gg)
                # Pre-activation gradients: u's and, as u + h W + b, the hidden side's too.
                tl.store(step_du, di, mask=io_mask)
                tl.store(step_du + H, df, mask=io_mask)
                tl.store(step_du + 2 * H, dg, mask=io_mask)
                tl.store(step_du + 3 * H, do, mask=io_mask)
                if not DW_OUTSIDE:
                    h_prev_t = tl.trans(h_prev)
                    dw0 += _mm(h_prev_t, di, TF32)
                    dw1 += _mm(h_prev_t, df, TF32)
                    dw2 += _mm(h_prev_t, dg, TF32)
                    dw3 += _mm(h_prev_t, do, TF32)
                db0 += tl.sum(di, axis=0)
                db1 += tl.sum(df, axis=0)
                db2 += tl.sum(dg, axis=0)
                db3 += tl.sum(do, axis=0)
                dc = dc * gf
                dh = (_mm(di, wt0, TF32) + _mm(df, wt1, TF32) + _mm(dg, wt2, TF32)
                      + _mm(do, wt3, TF32))
            elif CELL == 4:  # ctrnn_rate: h_t = h + α (f(a) - h), a = u + h W + b
                h_prev = _state_before(hid_ptr, hid_offs, t, S, io_mask)
                a0 = (tl.load(u_ptr + t * gh + u_offs, mask=io_mask, other=0.0)
                      + _mm(h_prev, w0, TF32) + b0)
                da = dh * alpha * _act_grad(a0, ACT)
                tl.store(step_du, da, mask=io_mask)
                if not DW_OUTSIDE:
                    dw0 += _mm(tl.trans(h_prev), da, TF32)
                db0 += tl.sum(da, axis=0)
                dh = dh * (1.0 - alpha) + _mm(da, wt0, TF32)
            elif CELL == 5:  # ctrnn_current: v_t = v + α (a - v), a = u + f(v) W + b
                v_prev = _state_before(hid_ptr, hid_offs, t, S, io_mask)
                da = dh * alpha
                tl.store(step_du, da, mask=io_mask)
                if not DW_OUTSIDE:
                    dw0 += _mm(tl.trans(_act(v_prev, ACT)), da, TF32)
                db0 += tl.sum(da, axis=0)
                dh = dh * (1.0 - alpha) + _mm(da, wt0, TF32) * _act_grad(v_prev, ACT)
            else:  # tanh, relu: the derivative from the stored output h_t
                h_t = tl.load(hid_ptr + step_hid, mask=io_mask, other=0.0)
                if CELL == 1:  # noqa: SIM108 (a static branch, kept as in the forward)
                    da = dh * (1.0 - h_t * h_t)
                else:
                    da = tl.where(h_t > 0.0, dh, 0.0)
                tl.store(step_du, da, mask=io_mask)
                if not DW_OUTSIDE:
                    h_prev = _state_before(hid_ptr, hid_offs, t, S, io_mask)
                    dw0 += _mm(tl.trans(h_prev), da, TF32)
                db0 += tl.sum(da, axis=0)
                dh = _mm(da, wt0, TF32)
        _put(db_ptr + cols, db0, col_ok, ACCUMULATE)
        if GATES >= 3:
            _put(db_ptr + H + cols, db1, col_ok, ACCUMULATE)
            _put(db_ptr + 2 * H + cols, db2, col_ok, ACCUMULATE)
        if GATES == 4:
            _put(db_ptr + 3 * H + cols, db3, col_ok, ACCUMULATE)
        if not DW_OUTSIDE:
            _put(dw_ptr + w_offs, dw0, w_mask, ACCUMULATE)
            if GATES >= 3:
                _put(dw_ptr + H + w_offs, dw1, w_mask, ACCUMULATE)
                _put(dw_ptr + 2 * H + w_offs, dw2, w_mask, ACCUMULATE)
            if GATES == 4:
                _put(dw_ptr + 3 * H + w_offs, dw3, w_mask, ACCUMULATE)
