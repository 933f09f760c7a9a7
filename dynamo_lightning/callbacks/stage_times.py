"""StageTimes: where a fit's wall-clock time goes, written to ``<run>/stage_times.json``.

Why: a run of thousands of members is a few stages of very different cost: setting up
(building stacks, fitting projections), the first steps (``torch.compile``, CUDA-graph
capture, the Triton kernels' compilation), steady training and validation passes. A total
says none of this; this callback times each phase, so a slow run says which one to attack.

On a GPU the device is synchronised at each phase boundary (a handful of syncs a fit), so a
phase's time covers its kernels, not only their launch. Steady steps are timed as a block
from the end of warm-up to the end of training, validation subtracted: no sync per step.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from dynamo_lightning.callbacks.figures import run_dir
from dynamo_lightning.checks import positive_int

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["StageTimes"]


class StageTimes(Callback):
    """Times a fit's phases into ``times`` and ``<run_dir>/stage_times.json``.

    ``times`` (seconds unless named otherwise):

    - ``setup``: from the Trainer's ``setup`` to the first training batch (data module setup,
      projections, model setup);
    - ``warmup``: the first ``warmup_steps`` training batches (compilation and capture);
    - ``steps``, ``step_seconds``, ``steps_per_second``: the training batches after those,
      validation excluded;
    - ``validation``, ``validations``: all validation passes, and how many ran;
    - ``fit``: ``setup`` to the end of training.

    ``started_at`` / ``ended_at`` are ``time.perf_counter()`` readings of the fit's start and
    the end of its training, so a caller can time what follows (writing a population, say).

    Args:
        warmup_steps: training batches counted as warm-up (default 10).

    Example::

        timer = StageTimes()
        Trainer(callbacks=[timer]).fit(module, datamodule)
        timer.times["steps_per_second"]
    """

    def __init__(self, warmup_steps: int = 10) -> None:
        self.warmup_steps = positive_int("warmup_steps", warmup_steps, "StageTimes")
        self.times: dict[str, float] = {}
        self.started_at = self.ended_at = 0.0
        self._batches = 0
        self._mark = 0.0  # start of the current training block
        self._validation_started = 0.0
        self._device: torch.device | None = None

    def _now(self) -> float:
        if self._device is not None and self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        return time.perf_counter()

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._device = pl_module.device
        self.times = {"setup": 0.0, "warmup": 0.0, "steps": 0, "step_seconds": 0.0,
                      "steps_per_second": 0.0, "validation": 0.0, "validations": 0,
                      "fit": 0.0}
        self._batches = 0
        self.started_at = time.perf_counter()

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if self._batches == 0:
            self._device = pl_module.device  # moved to the accelerator after setup
            self._mark = self._now()
            self.times["setup"] = self._mark - self.started_at

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._batches += 1
        if self._batches == self.warmup_steps:
            now = self._now()
            self.times["warmup"] += now - self._mark
            self._mark = now

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._validation_started = self._now()
        self._close_block(self._validation_started)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._mark = self._now()
        self.times["validation"] += self._mark - self._validation_started
        self.times["validations"] += 1

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The end of training, not on_fit_end: other callbacks' on_fit_end (writing a
        # population, say) may run before this one's, and are not the fit's time.
        self.ended_at = self._now()
        self._close_block(self.ended_at)
        self.times["fit"] = self.ended_at - self.started_at
        steady = self.times["step_seconds"]
        self.times["steps"] = max(0, self._batches - self.warmup_steps)
        self.times["steps_per_second"] = self.times["steps"] / steady if steady > 0 else 0.0
        self._write(trainer)

    def _close_block(self, now: float) -> None:
        """Book the training time since the last mark to warm-up or steady steps."""
        if self._batches == 0:
            return
        key = "warmup" if self._batches < self.warmup_steps else "step_seconds"
        self.times[key] += now - self._mark
        self._mark = now

    @rank_zero_only
    def _write(self, trainer: pl.Trainer) -> None:
        path = run_dir(trainer) / "stage_times.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                    for k, v in self.times.items()}, indent=2) + "\n")
