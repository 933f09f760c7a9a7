"""Cell equations shared by every conditioning of the meta-RNN.

The meta-RNN owns the cell type; a conditioning only decides how θ enters the gate
pre-activations. Keeping the equations here, written once, is what makes every
conditioning's single step agree with its sequence forward and with ``torch.nn.GRU`` /
``nn.LSTM`` / ``nn.RNN`` (whose weights the ``concat`` conditioning uses directly).

Conventions follow torch: gate blocks ``r, z, n`` (GRU) and ``i, f, g, o`` (LSTM), weights
``[gates·H, in]`` used as ``F.linear(v, weight, bias)``. The LSTM state is the concatenation
``[h, c]`` (size 2H), like the population's LSTM, so trajectories, fixed points and Jacobians
see the whole dynamical state.
"""

from __future__ import annotations

import torch
from torch import Tensor

GATES: dict[str, int] = {"gru": 3, "lstm": 4, "vanilla": 1}
"""Gate blocks per cell type; the keys are the known cell names."""


def check_cell(cell: str) -> str:
    """Return ``cell`` if known, else raise a ValueError listing the known cells."""
    if cell not in GATES:
        raise ValueError(f"unknown cell {cell!r} (known: {', '.join(GATES)})")
    return cell


def state_size(cell: str, hidden_size: int) -> int:
    """Size of the full state: ``2·H`` for LSTM (``[h, c]``), else ``H``."""
    return 2 * hidden_size if cell == "lstm" else hidden_size


def hidden_units(cell: str, state: Tensor, hidden_size: int) -> Tensor:
    """The hidden units ``h`` of a state ``[..., state]`` (the state itself unless LSTM).

    Returning ``state`` itself where it *is* ``h`` matters on the fixed-point search's hot
    path: a slice's backward allocates a zero tensor of the whole input and copies into it.
    """
    return state if cell != "lstm" else state[..., :hidden_size]


def _modulate(a: Tensor, gamma: Tensor | None, beta: Tensor | None) -> Tensor:
    """FiLM ``γ ⊙ a + β`` (identity without modulation)."""
    return a if gamma is None or beta is None else torch.addcmul(beta, gamma, a)


def cell_update(cell: str, state: Tensor, gx: Tensor, gh: Tensor, gamma: Tensor | None = None,
                beta: Tensor | None = None) -> Tensor:
    """One step of the cell from precomputed gate inputs.

    With pre-activations ``a = gx + gh`` per gate (GRU's candidate: ``a_n = gx_n + r ⊙ gh_n``)
    and optional FiLM ``a ↦ γ ⊙ a + β`` applied to every gate's pre-activation just before
    its nonlinearity:

    - vanilla: ``h' = tanh(a)``;
    - gru: ``r = σ(a_r)``, ``z = σ(a_z)``, ``n = tanh(a_n)``, ``h' = (1 − z) ⊙ n + z ⊙ h``;
    - lstm: ``i, f, o = σ(a_i), σ(a_f), σ(a_o)``, ``g = tanh(a_g)``, ``c' = f ⊙ c + i ⊙ g``,
      ``h' = o ⊙ tanh(c')``; returns ``[h', c']``.

    Gate blocks are taken with ``split`` rather than slicing: a split's backward is one
    concatenation, a slice's a zero fill plus a copy of the whole tensor per slice; on
    the fixed-point search's hot path that was about a tenth of its time.

    Args:
        cell: ``"gru" | "lstm" | "vanilla"``.
        state: ``[B, state]``.
        gx: input contribution ``W_ih x + b_ih``, ``[B, gates·H]``.
        gh: recurrent contribution ``W_hh h + b_hh``, ``[B, gates·H]``.
        gamma, beta: optional per-unit gain and bias ``[B, gates·H]``.

    Returns:
        The next state ``[B, state]``.
    """
    size = gh.shape[-1] // GATES[cell]
    if cell == "vanilla":
        return torch.tanh(_modulate(gx + gh, gamma, beta))
    if cell == "gru":
        gx_r, gx_z, gx_n = gx.split(size, dim=-1)
        gh_r, gh_z, gh_n = gh.split(size, dim=-1)
        gammas = (None,) * 3 if gamma is None else gamma.split(size, dim=-1)
        betas = (None,) * 3 if beta is None else beta.split(size, dim=-1)
        r = torch.sigmoid(_modulate(gx_r + gh_r, gammas[0], betas[0]))
        z = torch.sigmoid(_modulate(gx_z + gh_z, gammas[1], betas[1]))
        n = torch.tanh(_modulate(torch.addcmul(gx_n, r, gh_n), gammas[2], betas[2]))
        return torch.lerp(n, state, z)
    i, f, g, o = _modulate(gx + gh, gamma, beta).split(size, dim=-1)
    memory = torch.addcmul(torch.sigmoid(f) * state[..., size:], torch.sigmoid(i), torch.tanh(g))
    return torch.cat([torch.sigmoid(o) * torch.tanh(memory), memory], dim=-1)


def lstm_memory(gates: Tensor, initial: Tensor) -> Tensor:
    """Every LSTM cell state ``c_t`` from all pre-activations at once.

    ``torch.nn.LSTM`` returns ``h_t`` at every step but ``c`` only at the end. Given the
    pre-activations of all steps (one parallel matmul over ``h_{t−1}``, known from the fused
    output), ``c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t`` is a linear recurrence, solved here by a
    Hillis–Steele scan: ``⌈log2 T⌉`` elementwise passes instead of T sequential steps, and
    numerically stable because it only multiplies forget gates in (0, 1).

    Args:
        gates: pre-activations ``[B, T, 4·H]`` (order i, f, g, o).
        initial: ``c_0 [B, H]``.

    Returns:
        ``c [B, T, H]`` (after each step).
    """
    i, f, g, _ = gates.chunk(4, dim=-1)
    decay = torch.sigmoid(f)
    drive = torch.sigmoid(i) * torch.tanh(g)
    # Fold c_0 into the first step; element t then holds the map c_{t-1} ↦ decay·c + drive.
    drive = torch.cat([torch.addcmul(drive[:, :1], decay[:, :1], initial[:, None]),
                       drive[:, 1:]], dim=1)
    shift, steps = 1, drive.shape[1]
    while shift < steps:
        drive = torch.cat([drive[:, :shift],
                           torch.addcmul(drive[:, shift:], decay[:, shift:], drive[:, :-shift])],
                          dim=1)
        decay = torch.cat([decay[:, :shift], decay[:, shift:] * decay[:, :-shift]], dim=1)
        shift *= 2
    return drive
