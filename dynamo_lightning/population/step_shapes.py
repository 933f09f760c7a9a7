"""The shape check of one recurrent time step, for a member and for a stack of members.

A leaf module (torch only), so that the architectures can use it too.
"""

from __future__ import annotations

from torch import Tensor


def check_step_shapes(owner: str, h: object, x: object, state_size: int, input_size: int,
                      members: int | None = None) -> None:
    """Raise unless ``h`` and ``x`` are one step's state and inputs.

    A member (``members`` None) takes ``h [B, state]`` and ``x [B, I]``; a stack of G
    members takes ``h [G, B, state]`` and ``x [B, I]`` (shared) or ``[G, B, I]``.

    Raises:
        ValueError: naming ``owner``, the expected and the given shapes.
    """
    lead = () if members is None else (members,)
    if not isinstance(h, Tensor) or not isinstance(x, Tensor):
        got = ", ".join(type(v).__name__ for v in (h, x))
        raise ValueError(f"{owner}: step takes tensors h and x, got {got}")
    batch = h.shape[-2] if h.dim() == len(lead) + 2 else None
    ok_h = batch is not None and tuple(h.shape) == (*lead, batch, state_size)
    ok_x = batch is not None and tuple(x.shape) in {(batch, input_size),
                                                      (*lead, batch, input_size)}
    if not (ok_h and ok_x):
        g = f"{members}, " if members is not None else ""
        x_forms = f"[B, {input_size}]" + (f" or [{g}B, {input_size}]" if lead else "")
        raise ValueError(f"{owner}: step expects h [{g}B, {state_size}] and x {x_forms}, "
                         f"got h {tuple(h.shape)} and x {tuple(x.shape)}")
