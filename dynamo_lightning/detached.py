"""Calling a module's methods without gradients reaching its parameters.

Analyses run on live networks — the meta-model mid-training, a member being studied — and
need gradients with respect to their *inputs* (Jacobians, fixed-point searches) but must
never write into the network's ``.grad``. :class:`DetachedCall` runs ``module.<method>``
through ``torch.func.functional_call`` with detached views (shared storage, no copy) of the
parameters that require grad. When none does, or grad is off, it calls the module
directly: there is nothing to cut off, and the swap has a cost per call.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _MethodCall(nn.Module):
    """``forward(name, *args)`` calls ``module.<name>(*args)``, so ``functional_call`` can
    run any of the module's methods with substituted parameters."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, method: str, *args: Any) -> Any:
        return getattr(self.module, method)(*args)


class DetachedCall:
    """``call(method, *args)`` = ``module.<method>(*args)``, its parameters detached.

    A plain object, not an ``nn.Module``: holding one does not register ``module`` as a
    submodule of the holder.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._call = _MethodCall(module)

    def __call__(self, method: str, *args: Any) -> Any:
        trainable = {f"module.{name}": p.detach()
                     for name, p in self.module.named_parameters() if p.requires_grad}
        if not trainable or not torch.is_grad_enabled():
            return getattr(self.module, method)(*args)
        return torch.func.functional_call(self._call, trainable, (method, *args))
