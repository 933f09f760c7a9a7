"""Trajectory data: per-member projections, the input source, the cache and the datamodule.

``TrajectoryDataModule`` is the Lightning entry point; ``fit_projections`` and
``project_states`` are the pure-torch maths behind its targets (usable without Lightning).
(``analysis.project`` is another thing: it projects embeddings θ onto a 2-D map.)
"""

from dynamo_lightning.data.datamodule import TrajectoryDataModule
from dynamo_lightning.data.input_source import build_input_source
from dynamo_lightning.data.projection import MemberProjections, fit_projections, project_states

__all__ = [
    "MemberProjections",
    "TrajectoryDataModule",
    "build_input_source",
    "fit_projections",
    "project_states",
]
