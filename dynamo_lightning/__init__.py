"""dynamo_lightning: DYNAMO (dynamical model embedding) as a PyTorch Lightning framework."""

__version__ = "0.1.0"

# Every name loads on first use, so `import dynamo_lightning` (and with it the `dynamo`
# command's --help and --version) imports neither torch nor Lightning.
_LAZY = {
    "tasks": ("dynamo_lightning.tasks", None),
    "architectures": ("dynamo_lightning.population.architectures", None),
    "register_architecture": ("dynamo_lightning.population.architectures",
                              "register_architecture"),
    "Member": ("dynamo_lightning.population", "Member"),
    "Population": ("dynamo_lightning.population", "Population"),
    "PopulationFormatError": ("dynamo_lightning.population", "PopulationFormatError"),
    "Trajectories": ("dynamo_lightning.population", "Trajectories"),
    "DynamoModule": ("dynamo_lightning.module", "DynamoModule"),
    "TrajectoryDataModule": ("dynamo_lightning.data", "TrajectoryDataModule"),
    "MetaRNN": ("dynamo_lightning.meta", "MetaRNN"),
    "MetaCNN": ("dynamo_lightning.meta", "MetaCNN"),
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
    "MetaCNN",
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
