"""The recurrent weights of a user's CTRNN module, with Dale's law read from its ``h2h``.

neurogym's ``EIRecLinear`` keeps raw ``weight [post, pre]`` and a fixed ``mask`` (``+1`` in
the columns of the first ``e_size`` units, ``-1`` in the others, a zero diagonal), and uses
``effective_weight() = |weight| * mask``. ctrnn's ``dale_ratio`` and ``autapses`` build the
same mask (``connectivity_mask``), so a member keeps the signs; a mask they cannot build
(not excitatory-then-inhibitory, not one sign per presynaptic unit, entries other than ±1)
is refused rather than dropped.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def recurrent_arrays(where: str, h2h: nn.Module, hidden: int, attributes: str
                     ) -> tuple[Tensor, Tensor | None, dict[str, Any]]:
    """``W_rec [H, H]`` (post×pre, the effective weights), ``b_rec`` and the Dale options.

    Args:
        where: ``"member 'id'"``, for the messages.
        h2h: an ``nn.Linear(H, H)``, or a module with ``weight`` and ``mask`` (effective
            weights ``|weight| * mask``) and/or ``effective_weight()``.
        hidden: H.
        attributes: what a CTRNN module must have, for the messages.

    Returns:
        ``(W_rec, bias or None, options)``: ``options`` is empty without Dale's law, else
        ``dale_ratio``, ``autapses`` and ``n_exc`` (the number of excitatory units).

    Raises:
        ValueError: naming the member, ``h2h`` and the fault.
    """
    mask = getattr(h2h, "mask", None)
    effective = getattr(h2h, "effective_weight", None)
    bias = getattr(h2h, "bias", None)
    if mask is None and not callable(effective):
        if not isinstance(h2h, nn.Linear):
            raise ValueError(f"{where}: h2h is a {type(h2h).__name__} without weight and mask "
                             f"or effective_weight() (a CTRNN module has {attributes})")
        _check_square(where, "h2h.weight", h2h.weight, hidden)
        return h2h.weight.detach(), bias, {}
    if callable(effective):
        weight, what = effective(), "h2h.effective_weight()"
    else:
        weight = h2h.weight.abs() * torch.as_tensor(mask).to(h2h.weight)
        what = "|h2h.weight| * mask"
    weight = weight.detach().to("cpu", torch.float64)
    _check_square(where, what, weight, hidden)
    if mask is not None:
        sign, autapses = _mask_signs(where, torch.as_tensor(mask), hidden)
        what = "h2h.mask"
    else:
        sign, autapses = _weight_signs(where, weight)
    n_exc = _excitatory_first(where, what, sign)
    return weight, bias, {"dale_ratio": dale_ratio(n_exc, hidden), "autapses": autapses,
                          "n_exc": n_exc}


def dale_ratio(n_exc: int, hidden: int) -> float:
    """A ratio ``r`` in (0, 1) with ``int(r * hidden) == n_exc`` (ctrnn's rule)."""
    ratio = n_exc / hidden
    return ratio if int(ratio * hidden) == n_exc else (n_exc + 0.5) / hidden


def _check_square(where: str, what: str, weight: Tensor, hidden: int) -> None:
    if tuple(weight.shape) != (hidden, hidden):
        raise ValueError(f"{where}: {what} has shape {list(weight.shape)}, expected "
                         f"[{hidden}, {hidden}] (hidden_size x hidden_size)")


def _mask_signs(where: str, mask: Tensor, hidden: int) -> tuple[Tensor, bool]:
    """Per-presynaptic-unit signs ``[H]`` of a ``[post, pre]`` mask, and whether its
    diagonal keeps the autapses (equal to the signs) or not (zero)."""
    m = mask.detach().to("cpu", torch.float64)
    _check_square(where, "h2h.mask", m, hidden)
    off = ~torch.eye(hidden, dtype=torch.bool)
    low = torch.where(off, m, torch.inf).amin(0)
    high = torch.where(off, m, -torch.inf).amax(0)
    bad = ((low != high) | (low.abs() != 1)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"{where}: h2h.mask is not one sign (+1 or -1) per presynaptic unit "
                         f"(mask [post, pre], column j = unit j): column(s) {_some(bad)} "
                         "differ; accepted: neurogym's EIRecLinear mask, excitatory units "
                         "first")
    diagonal = m.diagonal()
    if bool((diagonal == 0).all()):
        return low, False
    if bool((diagonal == low).all()):
        return low, True
    raise ValueError(f"{where}: h2h.mask's diagonal is neither all zero (no autapses) nor "
                     "the units' own signs (autapses)")


def _weight_signs(where: str, weight: Tensor) -> tuple[Tensor, bool]:
    """Signs ``[H]`` of the presynaptic columns of ``effective_weight()`` (no mask given)."""
    positive, negative = weight.gt(0).any(0), weight.lt(0).any(0)
    bad = ((positive & negative) | ~(positive | negative)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"{where}: h2h.effective_weight() [post, pre] is not of one sign in "
                         f"presynaptic column(s) {_some(bad)} (mixed or all zero), and h2h has "
                         "no mask to tell the units' signs; give h2h a mask (+1/-1 per column)")
    return torch.where(positive, 1.0, -1.0).double(), not bool(weight.diagonal().eq(0).all())


def _excitatory_first(where: str, what: str, sign: Tensor) -> int:
    """The number of excitatory units, if ``sign`` is +1s then -1s, both present."""
    n_exc = int(sign.gt(0).sum())
    expected = torch.cat([torch.ones(n_exc), -torch.ones(len(sign) - n_exc)]).double()
    if not torch.equal(sign, expected) or n_exc in (0, len(sign)):
        signs = "".join("+" if s > 0 else "-" for s in sign.tolist())
        raise ValueError(f"{where}: {what} is not excitatory-then-inhibitory (the first units "
                         f"+1, the rest -1, both present): unit signs {signs}; ctrnn's "
                         "dale_ratio makes the first int(dale_ratio * H) units excitatory")
    return n_exc


def _some(items: list[int], limit: int = 8) -> str:
    return ", ".join(map(str, items[:limit])) + (", ..." if len(items) > limit else "")
