"""Reparameterised copies of recurrent members: same computation, different coordinates.

A copy computes exactly what its original does (identical outputs on every input) but its
hidden state is expressed in other coordinates, so weight-space distances put it far away.
DYNAMO's map should not: the copy's θ should land on the original's. These copies are how
that is tested (``experiments/embedding_invariance.py``).

- ``permuted_copy``: hidden units relabelled, ``h_copy = h[..., perm]``; every weight is
  permuted consistently (per gate block for gated cells; an LSTM's ``h`` and ``c`` halves by
  the same permutation). A ``vanilla_rotated`` member has its state's coordinates permuted,
  i.e. the columns of its basis.
- ``rotated_copy``: ``h_copy = h Q`` for an orthogonal ``Q``; a rotated tanh RNN is no longer
  a tanh RNN, so the copy is a ``vanilla_rotated`` member with ``basis = Q``.
- ``rescaled_copy``: ``h_copy = h * s`` for positive per-unit scales ``s``; only a ReLU RNN
  stays the same architecture (``relu(s a) = s relu(a)`` for ``s > 0``), so only it is accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dynamo_lightning.checks import is_int, positive_int
from dynamo_lightning.population import Member

#: Gate blocks per architecture whose hidden units ``permuted_copy`` can relabel.
PERMUTABLE_GATES = {"vanilla": 1, "relu": 1, "gru": 3, "lstm": 4, "ugrnn": 2}
#: Architectures whose state ``rotated_copy`` can rotate.
ROTATABLE = ("vanilla", "vanilla_rotated")
#: Largest ``|QᵀQ − I|`` entry accepted as orthogonal (float32 QR gives ~1e-6 at H = 256).
ORTHOGONALITY_TOL = 1e-4


def permuted_copy(member: Member, permutation: Sequence[int] | Tensor, new_id: str) -> Member:
    """A copy of ``member`` whose hidden units are relabelled by ``permutation``.

    Unit ``j`` of the copy is unit ``permutation[j]`` of the original, so on any input the
    copy's outputs equal the original's and its hidden trajectory is
    ``hidden[..., permutation]`` (LSTM: both the ``h`` and the ``c`` half).

    Args:
        member: a ``vanilla``, ``relu``, ``gru``, ``lstm``, ``ugrnn`` or ``vanilla_rotated``
            member.
        permutation: a permutation of ``range(hidden_size)``.
        new_id: id of the copy.

    Returns:
        A new ``Member``; metadata copied plus ``copy_of`` and ``transform="permutation"``.

    Raises:
        ValueError: an unsupported architecture, or ``permutation`` is not a permutation of
            ``range(hidden_size)``.
    """
    supported = (*PERMUTABLE_GATES, "vanilla_rotated")
    _check_architecture(member, supported, "permuted_copy")
    size = _hidden_size(member)
    perm = _check_permutation(permutation, size)
    state = {name: t.detach().clone() for name, t in member.state.items()}
    if member.architecture == "vanilla_rotated":
        # The state is s = h Q: relabelling s's coordinates permutes Q's columns only.
        state["basis"] = state["basis"][:, perm]
    else:
        blocks = torch.cat([perm + g * size for g in range(PERMUTABLE_GATES[member.architecture])])
        state["weight_ih"] = state["weight_ih"][:, blocks]
        state["weight_hh"] = state["weight_hh"][perm][:, blocks]
        state["bias_ih"] = state["bias_ih"][blocks]
        state["bias_hh"] = state["bias_hh"][blocks]
        state["readout_weight"] = state["readout_weight"][perm]
    return _copy(member, new_id, member.architecture, state, "permutation")


def rotated_copy(member: Member, orthogonal: Tensor, new_id: str) -> Member:
    """A copy of a tanh RNN whose state is ``h @ orthogonal``, as a ``vanilla_rotated`` member.

    Outputs are unchanged on every input. A ``vanilla_rotated`` member is rotated further
    (``basis @ orthogonal``).

    Args:
        member: a ``vanilla`` (or ``vanilla_rotated``) member.
        orthogonal: ``[H, H]`` orthogonal matrix Q (e.g. from ``random_orthogonal``).
        new_id: id of the copy.

    Returns:
        A new ``vanilla_rotated`` member; metadata copied (``architecture`` updated) plus
        ``copy_of`` and ``transform="rotation"``.

    Raises:
        ValueError: an unsupported architecture, a wrong shape, or Q is not orthogonal.
    """
    _check_architecture(member, ROTATABLE, "rotated_copy")
    size = _hidden_size(member)
    reference = member.state["weight_hh"]
    q = _check_orthogonal(orthogonal, size).to(reference.dtype)
    state = {name: t.detach().clone() for name, t in member.state.items()}
    state["basis"] = state["basis"] @ q if "basis" in state else q
    return _copy(member, new_id, "vanilla_rotated", state, "rotation")


def rescaled_copy(member: Member, scales: Sequence[float] | Tensor, new_id: str) -> Member:
    """A copy of a ReLU RNN whose hidden units are rescaled: ``h_copy = h * scales``.

    Because ``relu(s a) = s relu(a)`` for ``s > 0``, scaling the incoming weights and biases
    of each unit by ``s`` (``W_ih' = W_ih diag(s)``, ``b' = b * s``), conjugating the
    recurrence (``W_hh' = diag(1/s) W_hh diag(s)``, input-major) and undoing the scale in the
    readout (``W_out' = diag(1/s) W_out``) gives identical outputs on every input, while
    every weight changes. tanh and gated cells are not positively homogeneous, so the same
    change would alter what they compute; they are refused.

    Args:
        member: a ``relu`` member.
        scales: ``[H]`` finite positive scales, one per hidden unit.
        new_id: id of the copy.

    Returns:
        A new ``relu`` member whose hidden trajectory is ``hidden * scales``; metadata copied
        plus ``copy_of`` and ``transform="rescaling"``.

    Raises:
        ValueError: a non-``relu`` member, or ``scales`` of the wrong size or not all
            finite and positive.
    """
    if not isinstance(member, Member):
        raise TypeError(f"rescaled_copy takes a Member, got {type(member).__name__}")
    if member.architecture != "relu":
        raise ValueError(f"rescaled_copy needs a 'relu' member, got architecture "
                         f"{member.architecture!r} for member {member.id!r}: only ReLU is "
                         "positively homogeneous (relu(s·a) = s·relu(a) for s > 0); tanh and "
                         "gated cells are not, so rescaling their units changes the outputs")
    size = _hidden_size(member)
    s = _check_scales(scales, size)
    # In float64, so the float32 copy is the exact transform rounded once.
    state = {name: t.detach().double() for name, t in member.state.items()}
    state["weight_ih"] = state["weight_ih"] * s
    state["bias_ih"] = state["bias_ih"] * s
    state["bias_hh"] = state["bias_hh"] * s
    state["weight_hh"] = state["weight_hh"] / s[:, None] * s[None, :]
    state["readout_weight"] = state["readout_weight"] / s[:, None]
    dtypes = {name: t.dtype for name, t in member.state.items()}
    state = {name: t.to(dtypes[name]) for name, t in state.items()}
    return _copy(member, new_id, member.architecture, state, "rescaling")


def random_orthogonal(n: int, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float32) -> Tensor:
    """A Haar-random ``[n, n]`` orthogonal matrix (QR of a Gaussian, with the sign fix).

    Multiplying Q's columns by the signs of R's diagonal makes the draw uniform over the
    orthogonal group (Mezzadri 2007); without it QR's sign convention biases it.

    Raises:
        ValueError: ``n`` is not a positive int.
    """
    n = positive_int("n", n, "random_orthogonal")
    gaussian = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return (q * signs).to(dtype)


# --------------------------------------------------------------------------- helpers
def _check_architecture(member: Member, supported: Sequence[str], what: str) -> None:
    if not isinstance(member, Member):
        raise TypeError(f"{what} takes a Member, got {type(member).__name__}")
    if member.architecture not in supported:
        raise ValueError(f"{what} does not support architecture {member.architecture!r} of "
                         f"member {member.id!r} (supported: {', '.join(supported)})")


def _hidden_size(member: Member) -> int:
    size = member.config.get("hidden_size")
    if not is_int(size) or size < 1:
        raise ValueError(f"member {member.id!r} has no valid hidden_size in its config: {size!r}")
    return size


def _check_permutation(permutation: Sequence[int] | Tensor, size: int) -> Tensor:
    perm = torch.as_tensor(permutation)
    if perm.dim() != 1 or perm.numel() != size:
        raise ValueError(f"permutation must be a 1-d sequence of {size} unit indices (the "
                         f"hidden size), got shape {tuple(perm.shape)}")
    if perm.is_floating_point() or perm.is_complex() or perm.dtype == torch.bool:
        raise ValueError(f"permutation must hold integers, got dtype {perm.dtype}")
    perm = perm.long()
    if not torch.equal(perm.sort().values, torch.arange(size)):
        missing = sorted(set(range(size)) - set(perm.tolist()))
        raise ValueError(f"permutation is not a permutation of range({size}): "
                         f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
                         f"got {perm.tolist()[:16]}{' ...' if size > 16 else ''}")
    return perm


def _check_scales(scales: Sequence[float] | Tensor, size: int) -> Tensor:
    """``scales`` as a float64 ``[size]`` tensor, or a ValueError saying what is wrong."""
    s = torch.as_tensor(scales).detach().cpu()
    if s.dim() != 1 or s.numel() != size:
        raise ValueError(f"scales must be a 1-d sequence of {size} positive numbers (one per "
                         f"hidden unit), got shape {tuple(s.shape)}")
    if s.is_complex() or s.dtype == torch.bool:
        raise ValueError(f"scales must be real numbers, got dtype {s.dtype}")
    s = s.double()
    bad = (~torch.isfinite(s) | (s <= 0)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"scales must be finite and positive (a ReLU commutes only with "
                         f"positive scaling), got {s[bad[0]].item()!r} at unit {bad[0]}"
                         f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}")
    return s


def _check_orthogonal(orthogonal: Tensor, size: int) -> Tensor:
    if not isinstance(orthogonal, Tensor):
        raise ValueError(f"orthogonal must be a Tensor [{size}, {size}], "
                         f"got {type(orthogonal).__name__}")
    if tuple(orthogonal.shape) != (size, size):
        raise ValueError(f"orthogonal must be [{size}, {size}] (the hidden size), "
                         f"got {tuple(orthogonal.shape)}")
    q = orthogonal.detach().double().cpu()
    error = float((q.T @ q - torch.eye(size, dtype=torch.float64)).abs().max())
    if not error <= ORTHOGONALITY_TOL:
        raise ValueError(f"orthogonal is not orthogonal: max |QᵀQ − I| = {error:.3g} "
                         f"(tolerance {ORTHOGONALITY_TOL:g}); use random_orthogonal()")
    return orthogonal.detach().cpu().clone()


def _copy(member: Member, new_id: str, architecture: str, state: dict[str, Tensor],
          transform: str) -> Member:
    metadata: dict[str, Any] = {**member.metadata, "copy_of": member.id, "transform": transform}
    if "architecture" in metadata:
        metadata["architecture"] = architecture
    return Member(new_id, architecture, dict(member.config), metadata,
                  {name: t.contiguous() for name, t in state.items()})
