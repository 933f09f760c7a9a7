"""EmbeddingManifold: draw the map of the population (the learned θ's) while DYNAMO trains."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from typing_extensions import override

from dynamo_lightning.analysis.map_figure import default_keys, map_figure, metadata_keys
from dynamo_lightning.analysis.projection import METHODS, project
from dynamo_lightning.callbacks.analysis_base import ResumableDrawing
from dynamo_lightning.callbacks.figures import log_figure, log_table, run_dir
from dynamo_lightning.checks import boolean, positive_int

if TYPE_CHECKING:
    import lightning.pytorch as pl

_REQUIRED = ("embeddings", "member_ids", "member_metadata")

__all__ = ["EmbeddingManifold", "default_keys"]


class EmbeddingManifold(ResumableDrawing):
    """Draws the model-embedding map: every member's θ (projected to 2-D when d > 2), one
    panel per metadata key, coloured by that key; logs it as ``figures/map`` with a table
    ``tables/embeddings`` (member id, θ, map coordinates, metadata) to every attached logger
    and saves PNG/CSV files under ``<run_dir>/figures/``. The final map (at the end of fit) is
    also saved as ``<run_dir>/map.png``.

    The LightningModule is read duck-typed: ``embeddings()`` → Tensor ``[N, d]``,
    ``member_ids`` (``list[str]``, N) and ``member_metadata`` (``list[dict]``, N).

    Categorical keys (architecture, task, seed, hidden_size) get a colour per value and a
    legend; numeric keys with non-integer values or more than 20 values (task_metric) get a
    colormap and a colorbar.

    Args:
        every_n_epochs: Draw after validation every this many epochs (the map at the end of fit
            is always drawn).
        method: Projection when d > 2: ``"pca"`` or ``"umap"`` (see
            :func:`dynamo_lightning.analysis.project`); with d ≤ 2 θ is drawn as it is.
        keys: Metadata keys to colour by, one panel each. Default: every key whose value
            varies across members and has at most 20 distinct values, plus varying numeric
            keys (drawn with a colorbar).
        annotate: Write each member's id next to its point.
        map_path: Where the final map's PNG goes (default ``<run_dir>/map.png``).

    Raises:
        ValueError: If ``every_n_epochs`` is not a positive int, ``method`` is unknown,
            ``keys`` is not a list of non-empty strings, or ``annotate`` is not a bool.

    Example::

        from lightning.pytorch import Trainer
        from dynamo_lightning.callbacks import EmbeddingManifold

        trainer = Trainer(callbacks=[EmbeddingManifold(every_n_epochs=5, keys=["architecture"])])
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        method: str = "pca",
        keys: list[str] | None = None,
        annotate: bool = False,
        map_path: str | None = None,
    ) -> None:
        super().__init__()
        every_n_epochs = positive_int("every_n_epochs", every_n_epochs, "EmbeddingManifold")
        if method not in METHODS:
            raise ValueError(f"EmbeddingManifold: unknown method {method!r} "
                             f"(known: {', '.join(METHODS)})")
        if keys is not None and (isinstance(keys, str) or not isinstance(keys, Sequence)
                                 or not all(isinstance(k, str) and k for k in keys)):
            raise ValueError("EmbeddingManifold: keys must be a list of metadata keys "
                             f"(non-empty strings) or None, got {keys!r}")
        annotate = boolean("annotate", annotate, "EmbeddingManifold")
        self._every_n_epochs = every_n_epochs
        self._method = method
        self._keys = list(keys) if keys is not None else None
        self._annotate = annotate
        self._map_path = Path(map_path) if map_path else None
        self._last_step: int | None = None  # global step of the last map sent to the loggers
        self._num_drawn = 0
        self._last_png: Path | None = None  # that map's PNG (not restored on resume)

    @override
    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, final: bool) -> None:
        """Project, plot, log; ``final`` also writes ``<run_dir>/map.png``."""
        step = trainer.global_step
        final_png = self._map_path or run_dir(trainer) / "map.png"
        final_png.parent.mkdir(parents=True, exist_ok=True)
        if final and self._last_step == step and self._last_png and self._last_png.is_file():
            shutil.copyfile(self._last_png, final_png)  # the loggers have this map
            return
        theta, ids, metadata = _read_members(pl_module)
        xy = project(theta, method=self._method if theta.shape[1] > 2 else "pca")  # 2-D: as is
        keys = self._keys if self._keys is not None else default_keys(metadata)
        _check_keys(keys, metadata)
        what = "end of fit" if final else f"epoch {trainer.current_epoch}"
        fig = map_figure(xy, ids, metadata, keys, self._method, theta.shape[1],
                         annotate=self._annotate)
        fig.suptitle(f"Model embedding map — {what}, step {step}")
        self._last_png = log_figure(trainer, fig, "figures/map", step=step)
        columns, rows = _table(theta, xy, ids, metadata)
        log_table(trainer, "tables/embeddings", columns, rows, step=step)
        self._last_step = step
        self._num_drawn += 1
        if final and self._last_png is not None:
            shutil.copyfile(self._last_png, final_png)


def _read_members(pl_module: pl.LightningModule) -> tuple[np.ndarray, list[str], list[dict]]:
    """θ ``[N, d]`` (float64, CPU), member ids and metadata, checked for consistent N."""
    missing = [name for name in _REQUIRED if not hasattr(pl_module, name)]
    if missing:
        raise AttributeError(
            f"EmbeddingManifold needs the LightningModule to provide embeddings(), member_ids "
            f"and member_metadata; {type(pl_module).__name__} lacks {', '.join(missing)}")
    with torch.no_grad():
        theta = pl_module.embeddings().detach().to("cpu", torch.float64).numpy()
    ids = [str(i) for i in pl_module.member_ids]
    metadata = [dict(m) for m in pl_module.member_metadata]
    if theta.ndim != 2 or not len(ids) == len(metadata) == theta.shape[0]:
        raise ValueError(
            f"{type(pl_module).__name__}: embeddings() has shape {tuple(theta.shape)}, expected "
            f"[N, d] with N = len(member_ids) = {len(ids)} = len(member_metadata) = "
            f"{len(metadata)}")
    return theta, ids, metadata


def _check_keys(keys: list[str], metadata: list[dict[str, Any]]) -> None:
    known = metadata_keys(metadata)
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ValueError(f"EmbeddingManifold(keys=...): no member has metadata key(s) "
                         f"{', '.join(map(repr, unknown))} (known: {', '.join(known)})")


def _table(theta: np.ndarray, xy: np.ndarray, ids: list[str],
           metadata: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    keys = metadata_keys(metadata)
    columns = ["member", *(f"theta_{i + 1}" for i in range(theta.shape[1])), "map_x", "map_y",
               *keys]
    rows = [[name, *map(float, t), float(p[0]), float(p[1]), *(m.get(k) for k in keys)]
            for name, t, p, m in zip(ids, theta, xy, metadata, strict=True)]
    return columns, rows
