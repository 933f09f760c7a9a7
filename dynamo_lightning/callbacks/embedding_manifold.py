"""EmbeddingManifold: draw the map of the population (the learned θ's) while DYNAMO trains."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from dynamo_lightning.analysis.projection import METHODS, project
from dynamo_lightning.callbacks.figures import log_figure, log_table, run_dir

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_CATEGORIES = 20
"""A metadata key with more distinct (non-numeric) values than this is not drawn by default."""

_REQUIRED = ("embeddings", "member_ids", "member_metadata")


class EmbeddingManifold(Callback):
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
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) \
                or every_n_epochs < 1:
            raise ValueError(f"EmbeddingManifold(every_n_epochs={every_n_epochs!r}): "
                             "every_n_epochs must be a positive int")
        if method not in METHODS:
            raise ValueError(f"EmbeddingManifold(method={method!r}): unknown method "
                             f"(known: {', '.join(METHODS)})")
        if keys is not None and (isinstance(keys, str) or not isinstance(keys, Sequence)
                                 or not all(isinstance(k, str) and k for k in keys)):
            raise ValueError(f"EmbeddingManifold(keys={keys!r}): keys must be a list of "
                             "metadata keys (non-empty strings) or None")
        if not isinstance(annotate, bool):
            raise ValueError(f"EmbeddingManifold(annotate={annotate!r}): annotate must be a bool")
        self._every_n_epochs = every_n_epochs
        self._method = method
        self._keys = list(keys) if keys is not None else None
        self._annotate = annotate
        self._map_path = Path(map_path) if map_path else None
        self._last_step: int | None = None  # global step of the last map sent to the loggers
        self._num_drawn = 0
        self._last_png: Path | None = None  # that map's PNG (not restored on resume)

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

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self._last_step, "num_drawn": self._num_drawn}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_step = state_dict.get("last_step")
        self._num_drawn = state_dict.get("num_drawn", 0)

    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, final: bool) -> None:
        """Project, plot, log; ``final`` also writes ``<run_dir>/map.png``."""
        step = trainer.global_step
        final_png = self._map_path or run_dir(trainer) / "map.png"
        final_png.parent.mkdir(parents=True, exist_ok=True)
        if final and self._last_step == step and self._last_png and self._last_png.is_file():
            shutil.copyfile(self._last_png, final_png)  # the loggers have this map
            return
        theta, ids, metadata = _read_members(pl_module)
        xy = project(theta, method=self._method)
        keys = self._keys if self._keys is not None else default_keys(metadata)
        _check_keys(keys, metadata)
        what = "end of fit" if final else f"epoch {trainer.current_epoch}"
        fig = self._figure(xy, ids, metadata, keys, theta.shape[1])
        fig.suptitle(f"Model embedding map — {what}, step {step}")
        self._last_png = log_figure(trainer, fig, "figures/map", step=step)
        columns, rows = _table(theta, xy, ids, metadata)
        log_table(trainer, "tables/embeddings", columns, rows, step=step)
        self._last_step = step
        self._num_drawn += 1
        if final and self._last_png is not None:
            shutil.copyfile(self._last_png, final_png)

    def _figure(self, xy: np.ndarray, ids: list[str], metadata: list[dict[str, Any]],
                keys: list[str], dim: int) -> Figure:
        panels: list[str | None] = list(keys) if keys else [None]
        ncols = min(3, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.0 * nrows),
                                 squeeze=False, layout="constrained")
        try:
            labels = _axis_labels(self._method, dim)
            for ax, key in zip(axes.flat, panels, strict=False):
                if key is None:
                    ax.scatter(xy[:, 0], xy[:, 1], s=30, color="C0")
                    ax.set_title(f"{len(ids)} members")
                else:
                    values = [m.get(key) for m in metadata]
                    if _is_continuous(values):
                        _scatter_numeric(fig, ax, xy, values, key)
                    else:
                        _scatter_categorical(ax, xy, values, key)
                if self._annotate:
                    for (x, y), name in zip(xy, ids, strict=True):
                        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3),
                                    textcoords="offset points")
                ax.set_xlabel(labels[0])
                ax.set_ylabel(labels[1])
            for ax in axes.flat[len(panels):]:
                ax.set_visible(False)
        except BaseException:
            plt.close(fig)  # never leak a half-drawn figure
            raise
        return fig


def default_keys(metadata: list[dict[str, Any]]) -> list[str]:
    """Metadata keys worth a panel: values vary across members, and there are at most
    :data:`MAX_CATEGORIES` of them or they are numbers (drawn with a colorbar)."""
    chosen = []
    for key in _all_keys(metadata):
        values = [m.get(key) for m in metadata]
        distinct = len({_label(v) for v in values})
        if distinct > 1 and (distinct <= MAX_CATEGORIES or _is_continuous(values)):
            chosen.append(key)
    return chosen


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
    known = _all_keys(metadata)
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ValueError(f"EmbeddingManifold(keys=...): no member has metadata key(s) "
                         f"{', '.join(map(repr, unknown))} (known: {', '.join(known)})")


def _table(theta: np.ndarray, xy: np.ndarray, ids: list[str],
           metadata: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    keys = _all_keys(metadata)
    columns = ["member", *(f"theta_{i + 1}" for i in range(theta.shape[1])), "map_x", "map_y",
               *keys]
    rows = [[name, *map(float, t), float(p[0]), float(p[1]), *(m.get(k) for k in keys)]
            for name, t, p, m in zip(ids, theta, xy, metadata, strict=True)]
    return columns, rows


def _scatter_categorical(ax: Axes, xy: np.ndarray, values: list[Any], key: str) -> None:
    labels = [_label(v) for v in values]
    order = sorted(set(labels), key=_sort_key)
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    for i, category in enumerate(order):
        mask = np.array([lab == category for lab in labels])
        ax.scatter(xy[mask, 0], xy[mask, 1], s=30, color=cmap(i % cmap.N), label=category)
    ax.legend(title=key, fontsize=7, title_fontsize=8, loc="best", framealpha=0.7)
    ax.set_title(key)


def _scatter_numeric(fig: Figure, ax: Axes, xy: np.ndarray, values: list[Any], key: str) -> None:
    c = np.array([np.nan if v is None else float(v) for v in values])
    known = np.isfinite(c)
    points = ax.scatter(xy[known, 0], xy[known, 1], c=c[known], s=30, cmap="viridis")
    if not known.all():
        ax.scatter(xy[~known, 0], xy[~known, 1], s=30, color="lightgrey", marker="x",
                   label="n/a")
        ax.legend(fontsize=7)
    fig.colorbar(points, ax=ax, label=key)
    ax.set_title(key)


def _is_continuous(values: list[Any]) -> bool:
    """Numbers (missing allowed) with a non-integer value or too many values for a legend."""
    numbers = [v for v in values if v is not None]
    if not numbers or not all(isinstance(v, Real) and not isinstance(v, bool) for v in numbers):
        return False
    return (any(float(v) != int(v) for v in numbers if math.isfinite(v))
            or len(set(numbers)) > MAX_CATEGORIES)


def _sort_key(label: str) -> tuple[int, float, str]:
    """Numbers in numeric order first, then other labels alphabetically."""
    try:
        return 0, float(label), label
    except ValueError:
        return 1, 0.0, label


def _label(value: Any) -> str:
    return "n/a" if value is None else str(value)


def _all_keys(metadata: list[dict[str, Any]]) -> list[str]:
    """Union of the members' metadata keys, in first-seen order."""
    return list(dict.fromkeys(k for m in metadata for k in m))


def _axis_labels(method: str, dim: int) -> tuple[str, str]:
    if dim > 2:
        name = method.upper()
        return f"{name} 1 of θ (d = {dim})", f"{name} 2"
    return "θ₁", "θ₂" if dim == 2 else "(d = 1)"
