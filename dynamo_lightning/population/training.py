"""``PopulationModule``: trains every member of a grid at once, one stack per group.

Each group (task × architecture × shape) is one stacked ``Architecture``; a training step
is one forward per group. Adam is elementwise and gradients are clipped per member, so each
member follows exactly the trajectory it would follow if trained alone on the same batches.

The step is written out (manual optimisation: zero, forward, backward, clip, step) so that on
a GPU the part before the optimiser's step can run as one CUDA graph with the groups on
parallel streams (:mod:`~dynamo_lightning.population.graphed_step`; ``cuda_graphs``): the
eager step is launch-bound there. On a GPU each recurrent cell is also ``torch.compile``'d
(``compile_cells``): its gate arithmetic and that of its backward become a few fused kernels
instead of one per operation, which halves the step's memory traffic (measured in
``benchmarks/population_training.py``). GRU, tanh, ReLU and LSTM stacks go further
(``fused_cells``): their whole time loop, forward and backward, is one Triton kernel that
keeps each member's recurrent weights on chip
(:mod:`~dynamo_lightning.population.architectures.fused_recurrence`).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn

from dynamo_lightning.checks import (
    boolean,
    is_int,
    non_negative_real,
    positive_int,
    positive_real,
)
from dynamo_lightning.memory import check_population_training
from dynamo_lightning.population import architectures
from dynamo_lightning.population.architectures import build as build_architecture
from dynamo_lightning.population.datamodule import Batch
from dynamo_lightning.population.evaluation import summed_member_loss
from dynamo_lightning.population.graphed_step import GraphedStep
from dynamo_lightning.population.grid import (
    ArchitectureEntry,
    GroupSpec,
    expand_grid,
    parse_task_specs,
)

OWNER = "PopulationModule"
"""Who its settings' errors name."""
GRAPHED_PRECISIONS = ("32-true", "32", 32)
"""Trainer precisions the CUDA graph runs under (mixed precision runs the eager step)."""


class PopulationModule(pl.LightningModule):
    """A grid of networks trained together.

    Args:
        tasks: task variants ``[{name, config?, label?}]``; linked from ``data.tasks`` by the CLI.
        architectures: registered architecture names (``dl.architectures.names()``), or
            entries ``{name, config?, label?}`` whose config's list values are crossed like
            widths: ``{name: ctrnn, config: {alpha: [0.1, 0.2], dale_ratio: [null, 0.8]}}``
            is four groups (:func:`~dynamo_lightning.population.grid.expand_grid`). Two
            entries of one architecture need distinct labels (the labels name the members).
        hidden_sizes: widths to train (RNN units or CNN channels).
        seeds: initialisation seeds, one member per seed in every group; or a count ``n``
            for seeds ``0 … n−1`` (a grid of thousands of members). Left out (None),
            ``architectures``, ``hidden_sizes`` and ``seeds`` default to ``[gru]``, ``[32]``
            and ``[0, 1, 2, 3]``; an empty list is an empty grid and is refused.
        architecture_options: extra constructor options per architecture name, for the
            plain-name entries, e.g. ``{"cnn": {"n_layers": 3}}`` (lists are crossed too).
        lr: Adam learning rate (a finite number > 0).
        weight_decay: Adam weight decay (a finite number >= 0).
        clip_norm: per-member gradient-norm clip (None or 0 turns it off). Lightning's own
            ``gradient_clip_val`` would clip the whole stack and couple the members.
        cuda_graphs: on one CUDA device with 32-bit precision, capture the step (forward,
            loss, backward, clip of every group) once and replay it: the same arithmetic,
            without launching thousands of small kernels from Python each step. A loss that
            is not finite is then caught at the next logging step or epoch end (checking
            every step would stall the GPU), not at once.
        compile_cells: on a CUDA device, ``torch.compile`` each recurrent stack's cell
            (fused gate arithmetic; the first steps take the compile time, seconds per
            architecture). If compiling fails while the step is captured, the plain cells
            and the eager step run instead, with a warning.
        fused_cells: on a CUDA device with 32-bit precision and Triton installed, run the
            whole time loop of each stack whose class names a ``fused_cell`` (GRU and LSTM up
            to H=32, tanh and ReLU up to H=64: where the kernel was measured faster) as one
            Triton kernel, forward and backward, instead of compiling its cell; other stacks
            keep ``compile_cells``. The same arithmetic with far less memory traffic; the
            first step takes the kernels' compile time (seconds). If a kernel fails while
            the step is captured, the plain path and the eager step run instead, with a
            warning, as for ``compile_cells``.

    Raises:
        ValueError: a setting out of range or of the wrong type (named), an empty grid axis,
            or a bad grid (:func:`~dynamo_lightning.population.grid.expand_grid`).
    """

    def __init__(self, tasks: list[dict[str, Any]],
                 architectures: list[ArchitectureEntry] | None = None,
                 hidden_sizes: list[int] | None = None, seeds: list[int] | int | None = None,
                 architecture_options: dict[str, dict[str, Any]] | None = None,
                 lr: float = 1e-2, weight_decay: float = 0.0, clip_norm: float | None = 1.0,
                 cuda_graphs: bool = True, compile_cells: bool = True,
                 fused_cells: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False  # the step is written out: see the module doc
        positive_real("lr", lr, OWNER)
        non_negative_real("weight_decay", weight_decay, OWNER)
        if clip_norm is not None:
            non_negative_real("clip_norm", clip_norm, OWNER)
        for name, value in (("cuda_graphs", cuda_graphs), ("compile_cells", compile_cells),
                            ("fused_cells", fused_cells)):
            boolean(name, value, OWNER)
        if is_int(seeds):
            seeds = list(range(positive_int("seeds", seeds, OWNER)))
        specs = parse_task_specs(tasks)
        # Only an axis left out takes its default: an empty list is an empty grid (refused).
        self.groups: list[GroupSpec] = expand_grid(
            specs, ["gru"] if architectures is None else architectures,
            [32] if hidden_sizes is None else hidden_sizes,
            [0, 1, 2, 3] if seeds is None else seeds, architecture_options)
        self.tasks = {spec.label: spec.build() for spec in specs}
        check_population_training(self.groups, self.tasks, build_architecture)  # pre-flight
        self.stacks = nn.ModuleList(
            _build_stack(group) for group in self.groups)
        self._graphed: GraphedStep | None = None
        self._graphs_usable = True  # until a capture fails
        self._plain_cells: list[tuple[nn.Module, object]] = []  # (stack, cell) when compiled
        self._fused: list[nn.Module] = []  # stacks whose forward runs the fused kernel
        self._finite: Tensor | None = None  # all losses since the last check were finite

    @property
    def member_ids(self) -> list[str]:
        """Ids of the trained members, group by group."""
        return [member for group in self.groups for member in group.ids]

    def forward(self, batch: Batch) -> list[tuple[Tensor, Tensor]]:
        """Outputs and hidden states of every group on its task's inputs."""
        pairs = zip(self.groups, self.stacks, strict=True)
        return [stack(batch[group.task.label][0]) for group, stack in pairs]

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        optimizer = self.optimizers()
        graphed = self._graphed_step(batch)
        if graphed is not None:
            total = graphed(batch).clone()  # gradients written and clipped by the replay
        else:
            optimizer.zero_grad()
            total = torch.zeros((), device=self.device)
            for index, group in enumerate(self.groups):
                total = total + self._group_loss(index, *batch[group.task.label])
            self.manual_backward(total)
            for stack in self.stacks:
                self._clip(stack)
        self._check_finite(total, batch_idx, every_step=graphed is None)
        optimizer.step()
        self.log("train/loss", total / len(self.member_ids), prog_bar=True)
        return total

    def setup(self, stage: str) -> None:
        """Before the first batch: refuse a grid whose training step (its batch sizes from
        the data module) does not fit on the device (:mod:`dynamo_lightning.memory`)."""
        data = getattr(self.trainer, "datamodule", None)
        check_population_training(self.groups, self.tasks, build_architecture,
                                  getattr(data, "batch_size", None),
                                  getattr(data, "val_batch_size", None),
                                  self.trainer.strategy.root_device)

    def on_fit_start(self) -> None:
        if self.device.type != "cuda" or self._plain_cells:
            return  # CPU, or compiled by a fit that did not end
        widths = self._fused_widths() if self.hparams.fused_cells else {}
        for stack in self.stacks:
            if any(stack is fused for fused in self._fused):
                continue  # fused by an earlier fit
            cell = getattr(stack, "fused_kernel", lambda: None)()
            if cell is not None and stack.hidden_size <= widths.get(cell, 0):
                stack.fused = True
                self._fused.append(stack)
            elif (self.hparams.compile_cells and getattr(stack, "recurrent", False)
                  and hasattr(stack, "cell")):
                self._plain_cells.append((stack, stack.cell))
                stack.cell = torch.compile(stack.cell, fullgraph=True, dynamic=False)

    def _fused_widths(self) -> dict[str, int]:
        """Widest H fused per cell; none without 32-bit precision (the kernels are float32
        only) or Triton."""
        trainer = self._trainer
        if trainer is not None and trainer.precision not in GRAPHED_PRECISIONS:
            return {}
        from dynamo_lightning.population.architectures import fused_recurrence  # loads Triton

        if not fused_recurrence.available():
            rank_zero_warn(f"population training: fused_cells is on but "
                           f"{fused_recurrence.unavailable_reason()}; compiling the cells "
                           "instead (compile_cells)")
            return {}
        return fused_recurrence.FASTER_UP_TO

    def on_train_end(self) -> None:
        """Undo the compiled cells once training ends. They were compiled for the training
        step's shapes: scoring and writing the members afterwards (another batch size,
        frozen parameters) would compile each stack's cell again. At 10,000 members on an
        H200 the write after training took 72 s; members of the same grid, never compiled,
        were scored and written in 13 s. Fused stacks stay fused: their kernels take any batch."""
        self._restore_compiled_cells()

    def _restore_compiled_cells(self) -> None:
        for stack, cell in self._plain_cells:
            stack.cell = cell
        self._plain_cells = []

    def _restore_plain_cells(self) -> None:
        """Undo compiled cells and fused stacks: back to the plain path."""
        self._restore_compiled_cells()
        for stack in self._fused:
            stack.fused = False
        self._fused = []

    def _group_loss(self, index: int, x: Tensor, y: Tensor) -> Tensor:
        group = self.groups[index]
        outputs, _ = self.stacks[index](x)
        return summed_member_loss(self.tasks[group.task.label], outputs, y)

    def _clip(self, stack: nn.Module) -> None:
        if self.hparams.clip_norm:
            clip_per_member(stack, self.hparams.clip_norm)

    def _graphed_step(self, batch: Batch) -> GraphedStep | None:
        """The captured step when it applies to this batch (captured on first use)."""
        trainer = self._trainer
        usable = (self.hparams.cuda_graphs and self._graphs_usable
                  and self.device.type == "cuda"
                  and (trainer is None or (trainer.precision in GRAPHED_PRECISIONS
                                           and trainer.world_size == 1)))  # DDP: its hooks
        if not usable:
            return None
        if self._graphed is None:
            labels = [group.task.label for group in self.groups]
            try:
                self._graphed = GraphedStep(self.stacks, labels, self._group_loss, self._clip,
                                            batch)
            except RuntimeError as err:  # e.g. a plugin task's loss syncs with the host
                self._capture_failed(err)
                return None
        return self._graphed if self._graphed.accepts(batch) else None

    def _capture_failed(self, err: RuntimeError) -> None:
        """Warn once and run the eager step (the same arithmetic) from now on."""
        reason = (str(err).strip().splitlines() or [repr(err)])[0]
        rank_zero_warn(f"population training: the step could not be captured as a CUDA graph "
                       f"({reason}); running it eagerly (same results, slower). A task loss "
                       "without host syncs (.item(), bool(...), boolean indexing) can be "
                       "captured.")
        self._graphs_usable = False
        self._restore_plain_cells()  # a compile or fused-kernel error surfaces here too
        for p in self.parameters():
            p.grad = None

    def _check_finite(self, total: Tensor, batch_idx: int, every_step: bool) -> None:
        """Raise on a loss that is not finite: at once in the eager step; with the graph, at
        logging steps and the epoch's last batch (a check is a host-device sync)."""
        finite = torch.isfinite(total)
        self._finite = finite if self._finite is None else self._finite & finite
        trainer = self._trainer
        due = every_step or trainer is None or (
            (self.global_step + 1) % max(1, trainer.log_every_n_steps) == 0
            or batch_idx + 1 >= trainer.num_training_batches)
        if due:
            ok, self._finite = bool(self._finite), None
            if not ok:
                raise FloatingPointError(
                    f"population training loss is not finite at step {self.global_step} (last "
                    f"loss {total.item()}); lower model.lr or set model.clip_norm")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        worst = float("inf")
        for group, stack in zip(self.groups, self.stacks, strict=True):
            x, y = batch[group.task.label]
            outputs, _ = stack(x)
            task = self.tasks[group.task.label]
            scores = [task.metric(out, y) for out in outputs]
            for member, score in zip(group.ids, scores, strict=True):
                self.log(f"val_member/{member}", score)
            worst = min(worst, *scores)
            self.log(f"val/{group.name}/{task.metric_name}", sum(scores) / len(scores))
        self.log("val/worst_member_metric", worst, prog_bar=True)

    def configure_optimizers(self) -> OptimizerLRScheduler:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr,
                                weight_decay=self.hparams.weight_decay)


def clip_per_member(stack: nn.Module, max_norm: float) -> Tensor:
    """Scale each member's gradient (leading axis of every parameter) to norm ≤ ``max_norm``.

    Returns the per-member norms before clipping, ``[G]``.
    """
    grads = [p.grad for p in stack.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
    return norms


def _build_stack(group: GroupSpec) -> architectures.Architecture:
    """The group's fresh stack; a bad option value is refused naming the group's first member
    (before any training)."""
    try:
        return architectures.build(group.architecture, num_members=len(group.seeds),
                                   seeds=list(group.seeds), **group.config)
    except ValueError as err:
        raise ValueError(f"members {group.ids[0]}, ...: {err}") from None
