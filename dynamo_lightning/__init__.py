"""dynamo_lightning: DYNAMO (dynamical model embedding) as a PyTorch Lightning framework."""

from dynamo_lightning import tasks
from dynamo_lightning.population import (
    Member,
    Population,
    PopulationFormatError,
    Trajectories,
    architectures,
)
from dynamo_lightning.population.architectures import register_architecture

__version__ = "0.1.0"

__all__ = [
    "Member",
    "Population",
    "PopulationFormatError",
    "Trajectories",
    "__version__",
    "architectures",
    "register_architecture",
    "tasks",
]
