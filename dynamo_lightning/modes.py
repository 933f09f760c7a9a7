"""One context manager for "run this module frozen": eval mode and/or no parameter gradients
for a block, with every submodule's mode and every parameter's ``requires_grad`` restored
exactly as they were — parameters a user froze before stay frozen after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def frozen(module: nn.Module, eval_mode: bool = True, no_grad: bool = True
           ) -> Iterator[nn.Module]:
    """``module`` in eval mode (``eval_mode``) with ``requires_grad=False`` on its parameters
    (``no_grad``) for the block.

    Restores each submodule's own ``training`` flag (``module.train(was)`` would set every
    submodule to the parent's) and each parameter's own ``requires_grad``.
    """
    modes = [(m, m.training) for m in module.modules()]
    grads = [(p, p.requires_grad) for p in module.parameters()]
    if eval_mode:
        module.eval()
    if no_grad:
        for p, _ in grads:
            p.requires_grad_(False)
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad in grads:
            p.requires_grad_(requires_grad)
