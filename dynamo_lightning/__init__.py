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

# Lightning-backed names load on first use, so `import dynamo_lightning` stays light.
_LAZY = {
    "DynamoModule": ("dynamo_lightning.module", "DynamoModule"),
    "TrajectoryDataModule": ("dynamo_lightning.data", "TrajectoryDataModule"),
    "MetaRNN": ("dynamo_lightning.meta", "MetaRNN"),
    "analysis": ("dynamo_lightning.analysis", None),
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'dynamo_lightning' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value

__all__ = [
    "DynamoModule",
    "Member",
    "MetaRNN",
    "Population",
    "PopulationFormatError",
    "Trajectories",
    "TrajectoryDataModule",
    "__version__",
    "analysis",
    "architectures",
    "register_architecture",
    "tasks",
]
