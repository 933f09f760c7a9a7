"""Shared base of the analysis callbacks (FixedPoints, Interpolation): when to run, rank 0
only, eval mode and no grad (restored afterwards), resumable state, argument checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from dynamo_lightning.analysis.search_options import SearchOptions
from dynamo_lightning.checks import is_int, positive_int
from dynamo_lightning.modes import frozen

if TYPE_CHECKING:
    import lightning.pytorch as pl

MemberKey = str | int


class ResumableDrawing(Callback):
    """Draws every ``_every_n_epochs`` validation epochs and once at the end of fit, on rank 0
    only; remembers the last global step it drew at and how often, across resumes.

    Subclasses set ``_every_n_epochs`` and implement ``_draw(trainer, pl_module, final)``
    (``final``: the end-of-fit call, made even when this step was already drawn).
    """

    _every_n_epochs: int = 1
    _last_step: int | None = None
    _num_drawn: int = 0

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if (trainer.current_epoch + 1) % self._every_n_epochs != 0:
            return
        if self._last_step == trainer.global_step:  # already drawn at this step
            return
        self._draw(trainer, pl_module, final=False)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self._draw(trainer, pl_module, final=True)

    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, final: bool) -> None:
        raise NotImplementedError

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self._last_step, "num_drawn": self._num_drawn}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_step = state_dict.get("last_step")
        self._num_drawn = state_dict.get("num_drawn", 0)


class _Analysis(ResumableDrawing):
    """Timing, rank-0 only, eval mode + no grad (restored after) and resumable state."""

    def __init__(self, every_n_epochs: int, search: SearchOptions) -> None:
        super().__init__()
        owner = type(self).__name__
        self._every_n_epochs = positive_int("every_n_epochs", every_n_epochs, owner)
        if not isinstance(search, SearchOptions):
            raise ValueError(f"{owner}: search must be a SearchOptions (in YAML, a mapping of "
                             f"its settings), got {search!r}")
        self._search = search
        self._last_step: int | None = None  # global step of the last analysis
        self._num_drawn = 0

    @override
    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, final: bool) -> None:
        if self._last_step == trainer.global_step:  # already analysed at this step
            return
        # validation hooks run under inference mode; the finder needs autograd
        with frozen(pl_module, no_grad=False), torch.inference_mode(False), torch.no_grad():
            done = self._analyse(trainer, pl_module)
        if done:
            self._last_step = trainer.global_step
            self._num_drawn += 1

    def _analyse(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        raise NotImplementedError


def _keys(owner: Callback, name: str, values: Any) -> list[MemberKey]:
    """A list of member ids (str) or indices (int >= 0), else ValueError naming ``name``."""
    ok = (not isinstance(values, (str, bytes)) and isinstance(values, Sequence)
          and all((isinstance(v, str) and v) or (is_int(v) and v >= 0) for v in values))
    if not ok:
        raise ValueError(f"{type(owner).__name__}: {name} must list member ids (str) or "
                         f"indices (int >= 0), got {values!r}")
    return list(values)
