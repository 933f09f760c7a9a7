"""Lightning callbacks that draw and log DYNAMO's analyses while it trains, and keep a
resumable checkpoint (:class:`LastCheckpoint`), and time a fit's phases (:class:`StageTimes`).

Every figure goes through :func:`log_figure` (every attached logger + a PNG in the run
directory); tables through :func:`log_table`.
"""

from dynamo_lightning.callbacks.embedding_manifold import EmbeddingManifold
from dynamo_lightning.callbacks.figures import log_figure, log_table
from dynamo_lightning.callbacks.fixed_points import FixedPoints
from dynamo_lightning.callbacks.interpolation import Interpolation
from dynamo_lightning.callbacks.last_checkpoint import LastCheckpoint
from dynamo_lightning.callbacks.progress_bar import RunProgressBar
from dynamo_lightning.callbacks.stage_times import StageTimes
from dynamo_lightning.callbacks.wandb_logger import DynamoWandbLogger

__all__ = [
    "DynamoWandbLogger",
    "EmbeddingManifold",
    "FixedPoints",
    "Interpolation",
    "LastCheckpoint",
    "RunProgressBar",
    "StageTimes",
    "log_figure",
    "log_table",
]
