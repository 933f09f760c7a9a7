"""``DynamoModule``: the meta-model, the θ table and the per-member alignment maps.

Loss (docs/method.md), averaged over the members in the batch, their inputs and time steps::

    L = mean_n [ ||A_n h̃_t(θ_n) − P_n h^n_t||² + λ_out · ℓ_out(ỹ_t(θ_n), y^n_t) ] + λ_θ ||θ_n||²

``P_n h^n_t`` are the member's hidden states projected on its own top-k PCs (served by
``TrajectoryDataModule``); ``A_n`` is one ``[k, H̃]`` affine map per member, all stored in
one tensor and applied with one batched matmul. ℓ_out is MSE for regression members and KL
to the member's output distribution for classifiers: the meta-model emulates members, not
task labels.

Feed-forward populations use the same module with a ``MetaCNN`` (``meta_choice``): "time" is
depth, ``A_n`` is one ``[k, H̃]`` map per member *and stage* (``[N, S̃, k, H̃]``, one einsum),
and targets a shallower member lacks (NaN, see ``data.stages``) are left out of the loss and
the metrics; ``{stage}/stage_hidden_r2`` is the median over members and stages.

Trials of different lengths padded to one (``Task.step_mask``, e.g. neurogym's tasks) come
with ``mask [M, S, T]``: the hidden and output terms (``losses.py``) and the per-member
metrics then count real steps only.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.parsing import AttributeDict
from torch import Tensor, nn

from dynamo_lightning.checks import non_negative_real, positive_int
from dynamo_lightning.meta.embedded import EmbeddedNetwork
from dynamo_lightning.module.checkpoints import check_population
from dynamo_lightning.module.config import (
    LossWeights,
    MetaModelConfig,
    Optimization,
    as_config,
    check_schedule_length,
)
from dynamo_lightning.module.embedding_api import EmbeddingAPI
from dynamo_lightning.module.losses import masked_squared_error, output_loss, squared_error
from dynamo_lightning.module.memory_check import check_fit_batches, check_meta_model
from dynamo_lightning.module.meta_choice import build_meta
from dynamo_lightning.module.metrics import PerMemberAgreement, PerMemberR2, PerMemberStageR2
from dynamo_lightning.module.task_scores import TaskScores

__all__ = ["LOGGED_MEMBERS_UP_TO", "DynamoModule", "masked_squared_error"]

LOGGED_MEMBERS_UP_TO = 256
"""Loggers record ``member_ids`` and ``member_metadata`` whole up to this many members."""


class DynamoModule(EmbeddingAPI, pl.LightningModule):
    """Trains one meta-model that emulates every member of a population.

    Sizes and the population's identity come from ``TrajectoryDataModule`` (the CLI links
    them), so a config only chooses the meta-model and the optimisation.

    Args:
        num_members: N, members in the population.
        input_size: I, input units of every member.
        output_size: O, output units of every member.
        num_components: k, principal components kept per member (the alignment targets).
        output_kind: "regression" or "classification" (which ℓ_out).
        embedding_dim: d, size of θ (2 gives a map that needs no projection).
        meta: the meta-model (``MetaModelConfig`` or a dict of its fields).
        loss: loss weights (``LossWeights`` or dict).
        optim: learning rates (``Optimization`` or dict).
        theta_init_scale: std of the initial θ's.
        member_ids: the members' ids, in the order of the θ table.
        member_metadata: each member's metadata (architecture, task, seed, ...).
        population_path: where the population was read from.
        population_checksum: its checksum (a resumed or tested run must match it).
        task_spec: the input task ``{name, config}`` the members were compared on.

    Raises:
        ValueError: a non-positive size, an unknown output kind, a bad sub-config (a rate
            that is not a finite number > 0, a negative or NaN loss weight, ...) or a
            negative ``theta_init_scale``.
    """

    def __init__(self, num_members: int, input_size: int, output_size: int, num_components: int,
                 output_kind: str = "regression", embedding_dim: int = 2,
                 meta: MetaModelConfig | dict | None = None, loss: LossWeights | dict | None = None,
                 optim: Optimization | dict | None = None, theta_init_scale: float = 0.1,
                 member_ids: list[str] | None = None,
                 member_metadata: list[dict[str, Any]] | None = None,
                 population_path: str | None = None, population_checksum: str | None = None,
                 task_spec: dict[str, Any] | None = None) -> None:
        super().__init__()
        for key, value in (("num_members", num_members), ("input_size", input_size),
                           ("output_size", output_size), ("num_components", num_components),
                           ("embedding_dim", embedding_dim)):
            positive_int(key, value, "DynamoModule")
        if output_kind not in ("regression", "classification"):
            raise ValueError(f"DynamoModule: output_kind must be 'regression' or "
                             f"'classification', got {output_kind!r}")
        meta, loss = as_config(MetaModelConfig, meta), as_config(LossWeights, loss)
        optim = as_config(Optimization, optim)  # the groups check their own fields
        theta_init_scale = non_negative_real("theta_init_scale", theta_init_scale,
                                             "DynamoModule")
        ids = list(member_ids) if member_ids else [str(i) for i in range(num_members)]
        if len(ids) != num_members:
            raise ValueError(f"DynamoModule: {len(ids)} member_ids for {num_members} members")
        self.save_hyperparameters({
            "num_members": num_members, "input_size": input_size, "output_size": output_size,
            "num_components": num_components, "output_kind": output_kind,
            "embedding_dim": embedding_dim, "meta": asdict(meta), "loss": asdict(loss),
            "optim": asdict(optim), "theta_init_scale": theta_init_scale, "member_ids": ids,
            "member_metadata": list(member_metadata or [{} for _ in ids]),
            "population_path": population_path, "population_checksum": population_checksum,
            "task_spec": task_spec})
        check_meta_model(meta, input_size, output_size, embedding_dim,  # pre-flight memory
                         self.hparams.member_metadata, num_members, num_components)
        self.meta = build_meta(meta, input_size, output_size, embedding_dim,
                               self.hparams.member_metadata)
        self.theta = nn.Embedding(num_members, embedding_dim)
        nn.init.normal_(self.theta.weight, std=theta_init_scale)
        state = self.meta.state_size
        stages = () if self.meta.recurrent else (self.meta.stages,)  # one map per stage
        self.align_weight = nn.Parameter(
            torch.randn(num_members, *stages, num_components, state) / state**0.5)
        self.align_bias = nn.Parameter(torch.zeros(num_members, *stages, num_components))
        self.projections: dict[str, Tensor] = {}
        self.member_scores: dict[str, list[float]] = {}
        self._task_scores = TaskScores()
        self.allow_population_change = False  # set by --allow_population_change
        self.metrics = nn.ModuleDict({stage: nn.ModuleDict({
            "hidden_r2": PerMemberR2(num_members, num_components),
            "output_r2": PerMemberR2(num_members, output_size),
            "output_agreement": PerMemberAgreement(num_members, output_kind),
            **({} if self.meta.recurrent else {"stage_hidden_r2": PerMemberStageR2(
                num_members, self.meta.stages, num_components)}),
        }) for stage in ("val", "test")})

    @property
    def hparams_initial(self) -> AttributeDict:
        """What loggers record (Lightning reads this property for nothing else): the
        hyperparameters, with the per-member lists shortened to a count above
        ``LOGGED_MEMBERS_UP_TO`` members. The checkpoint keeps them whole; a logger writing
        10,000 ids and metadata dicts as YAML took 21 s of every fit."""
        hparams = super().hparams_initial
        for key in ("member_ids", "member_metadata"):
            values = hparams.get(key)
            if values is not None and len(values) > LOGGED_MEMBERS_UP_TO:
                hparams[key] = f"{len(values)} entries (whole in the checkpoint)"
        return hparams

    # ------------------------------------------------------------------ model
    def forward(self, member: Tensor, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Emulate members ``member [M]`` on their inputs ``[M, S, T, I]``.

        Returns:
            meta outputs ``[M, S, T_o, O]`` and aligned hidden states ``[M, S, T_h, k]``
            (recurrent: ``T_o = T_h = T``; feed-forward: ``T_o = 1``, ``T_h = S̃`` stages).
        """
        m, s, t = inputs.shape[:3]
        theta = self.theta(member).repeat_interleave(s, dim=0)
        outputs, hidden = self.meta(inputs.reshape(m * s, t, -1), theta)
        outputs = outputs.reshape(m, s, *outputs.shape[1:])
        if not self.meta.recurrent:  # one map per member and stage
            hidden = hidden.reshape(m, s, *hidden.shape[1:])
            aligned = torch.einsum("mbsh,mskh->mbsk", hidden, self.align_weight[member])
            return outputs, aligned + self.align_bias[member].unsqueeze(1)
        hidden = hidden.reshape(m, s * t, -1)
        aligned = torch.baddbmm(self.align_bias[member].unsqueeze(1), hidden,
                                self.align_weight[member].transpose(1, 2))
        return outputs, aligned.reshape(m, s, t, -1)

    def losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The three loss terms and their weighted sum for a member-major batch.

        A batch of padded trials carries ``mask [M, S, T]`` (True on real steps): the hidden
        and output losses then average over real steps only, and what the members did on
        padded steps changes nothing."""
        member, target_hidden, target_out = batch["member"], batch["hidden"], batch["outputs"]
        mask = self._step_mask(batch)
        if self.meta.recurrent and target_hidden.shape[2] != batch["inputs"].shape[2]:
            raise ValueError("MetaRNN emulates recurrent members: their hidden trajectories need "
                             f"one state per input step, got {target_hidden.shape[2]} states for "
                             f"{batch['inputs'].shape[2]} steps (feed-forward members?)")
        outputs, aligned = self(member, batch["inputs"])
        hidden_loss = (masked_squared_error(aligned, target_hidden) if not self.meta.recurrent
                       else squared_error(aligned, target_hidden, mask))
        output_loss = self.output_loss(outputs, target_out, mask)
        theta_loss = self.theta(member).pow(2).sum(-1).mean()
        weights = self.hparams.loss
        total = hidden_loss + weights["output"] * output_loss + weights["theta"] * theta_loss
        return {"loss": total, "hidden_loss": hidden_loss, "output_loss": output_loss,
                "theta_loss": theta_loss, "outputs": outputs, "aligned": aligned}

    def output_loss(self, outputs: Tensor, member_outputs: Tensor,
                    mask: Tensor | None = None) -> Tensor:
        """MSE for regression; KL(member ‖ meta) of the output distributions for classifiers
        (``losses.output_loss``; with ``mask [M, S, T]``, over real steps only)."""
        return output_loss(outputs, member_outputs, self.hparams.output_kind, mask)

    def _step_mask(self, batch: dict[str, Tensor]) -> Tensor | None:
        """The batch's ``mask [M, S, T]`` (None without one, or for a feed-forward meta-model,
        whose steps are stages, not time).

        Raises:
            ValueError: a mask whose shape is not the inputs' ``[M, S, T]``.
        """
        mask = batch.get("mask")
        if mask is None or not self.meta.recurrent:
            return None
        if tuple(mask.shape) != tuple(batch["inputs"].shape[:3]):
            raise ValueError(f"batch mask {tuple(mask.shape)} must be [M, S, T] = "
                             f"{tuple(batch['inputs'].shape[:3])} (the inputs' leading dims)")
        return mask.bool()

    # ------------------------------------------------------------------ Lightning hooks
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        terms = self.losses(batch)
        if not torch.isfinite(terms["loss"]):
            raise FloatingPointError(
                f"DYNAMO loss became {terms['loss'].item()} at step {self.global_step} "
                f"(hidden {terms['hidden_loss'].item():.4g}, output "
                f"{terms['output_loss'].item():.4g}); lower model.optim.lr / theta_lr")
        for key in ("loss", "hidden_loss", "output_loss", "theta_loss"):
            self.log(f"train/{key}", terms[key], prog_bar=key == "loss")
        return terms["loss"]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: dict[str, Tensor], stage: str) -> None:
        terms = self.losses(batch)
        member = batch["member"]
        metrics, mask = self.metrics[stage], self._step_mask(batch)
        metrics["hidden_r2"].update(terms["aligned"], batch["hidden"], member, mask)
        metrics["output_r2"].update(terms["outputs"], batch["outputs"], member, mask)
        metrics["output_agreement"].update(terms["outputs"], batch["outputs"], member, mask)
        if "stage_hidden_r2" in metrics:
            metrics["stage_hidden_r2"].update(terms["aligned"], batch["hidden"], member)
        self.log(f"{stage}/loss", terms["loss"], batch_size=member.numel())
        if stage == "test" and "targets" in batch:
            self._task_scores.update(member, terms["outputs"], batch["outputs"], batch["targets"],
                                     batch["task_id"])

    def on_validation_epoch_end(self) -> None:
        self._log_member_metrics("val")

    def on_test_epoch_start(self) -> None:
        self._task_scores.reset()

    def on_test_epoch_end(self) -> None:
        self._log_member_metrics("test")
        task = self.task
        if task is None or not self._task_scores.seen:
            return
        # Each member scored on its own computation (a mixture's sub-task), where known.
        meta, own = self._task_scores.scores(
            task, self.hparams.num_members,
            [task.own_sub_task(m) for m in self.hparams.member_metadata])
        self._task_scores.reset()
        self.member_scores["task_metric_meta"] = meta
        self.member_scores["task_metric_member"] = own
        pairs = [(a, b) for a, b in zip(meta, own, strict=True)
                 if not (math.isnan(a) or math.isnan(b))]
        if pairs:
            gaps = torch.tensor([abs(a - b) for a, b in pairs])
            self.log("test/task_metric_meta", torch.tensor([a for a, _ in pairs]).median())
            self.log("test/task_metric_member", torch.tensor([b for _, b in pairs]).median())
            self.log("test/task_metric_gap_max", gaps.max())
            self.log("test/within_2_points", (gaps <= 0.02).float().mean())

    def _log_member_metrics(self, stage: str) -> None:
        self.member_scores = {}
        for name, metric in self.metrics[stage].items():
            values = metric.compute()
            metric.reset()
            seen = values[~values.isnan()]
            if seen.numel() == 0:
                continue
            self.member_scores[name] = values.tolist()
            self.log(f"{stage}/{name}", seen.median(), prog_bar=name == "hidden_r2")
            self.log(f"{stage}/{name}_min", seen.min())

    def configure_optimizers(self) -> Any:
        optim = self.hparams.optim
        rest = [p for name, p in self.named_parameters() if not name.startswith("theta.")]
        optimizer = torch.optim.Adam([
            {"params": rest, "lr": optim["lr"], "weight_decay": optim["weight_decay"]},
            {"params": self.theta.parameters(), "lr": optim["theta_lr"], "weight_decay": 0.0},
        ])
        schedule = optim.get("schedule", "none")
        if schedule == "none":
            return optimizer
        check_schedule_length(schedule, self.trainer.max_epochs, self.trainer.max_steps)
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):  # e.g. an endless train loader
            raise ValueError(f"DynamoModule: optim.schedule {schedule!r} needs a run of known "
                             f"length, but it has {total} steps: set trainer.max_steps, or "
                             "model.optim.schedule none")
        total = max(1, int(total))
        floor = optim.get("final_lr_fraction", 0.02)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: floor + (1 - floor) * 0.5 * (1 + math.cos(
                math.pi * min(step, total) / total)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler,
                                                         "interval": "step"}}

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if self._trainer is not None and stage == "fit":  # before the first batch
            check_fit_batches(self, datamodule, self.trainer.strategy.root_device)
        if datamodule is not None and hasattr(datamodule, "projection_state"):
            state = datamodule.projection_state()
            self.projections = {k: v.detach().cpu() for k, v in state.items()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dynamo_projections"] = self.projections

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the projections; refuse a checkpoint fitted on other members (resuming or
        testing on a population that changed under the same ids) unless
        ``allow_population_change`` is set (``--allow_population_change true``)."""
        recorded = (checkpoint.get("hyper_parameters") or {}).get("population_checksum")
        check_population(recorded, self.hparams.get("population_checksum"),
                         str(self.hparams.get("population_path")),
                         self.allow_population_change)
        self.projections = dict(checkpoint.get("dynamo_projections", {}))

    # ------------------------------------------------------------------ public API
    def meta_model_at(self, theta: Tensor) -> EmbeddedNetwork:
        """The meta-model at θ ``[d]``: a plain frozen module that runs like a member.

        Raises:
            ValueError: θ is not ``[d]`` or not finite.
        """
        theta = torch.as_tensor(theta, dtype=self.theta.weight.dtype,
                                device=self.theta.weight.device)
        d = self.hparams.embedding_dim
        if theta.shape != (d,):
            raise ValueError(f"meta_model_at: theta must be [{d}] (one embedding), got shape "
                             f"{tuple(theta.shape)}")
        if not bool(torch.isfinite(theta).all()):
            raise ValueError(f"meta_model_at: theta must be finite, got {theta.tolist()}")
        return EmbeddedNetwork(self.meta, theta)
