"""Callbacks that tests put into real runs (imported by class path, also in subprocesses):
one that kills its own process like a lost node would, one that records what a run did."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class KillDuringEpoch(Callback):
    """SIGKILL this process after the first training batch of epoch ``epoch``: no cleanup,
    no atexit, as when a node dies or the queue's time limit hits mid-epoch."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class EpochLog(Callback):
    """Appends ``{"epoch", "step", "lr"}`` to the JSON-lines file ``path`` at every training
    epoch start: which epochs a run trained, and at what learning rate each began."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        with self.path.open("a") as f:
            f.write(json.dumps({"epoch": trainer.current_epoch, "step": trainer.global_step,
                                "lr": lr}) + "\n")


class SignalDuringEpoch(Callback):
    """Send this process ``signum`` (default SIGTERM, as a scheduler's kill or ``timeout``
    does) after the first training batch of epoch ``epoch``; Lightning's own handler runs."""

    def __init__(self, epoch: int, signum: int = int(signal.SIGTERM)) -> None:
        self.epoch, self.signum, self.sent = epoch, signum, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)
