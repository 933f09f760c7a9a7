"""Populations of trained networks: architecture plugins, the on-disk format, training."""

from dynamo_lightning.population.errors import PopulationFormatError
from dynamo_lightning.population.member import Member
from dynamo_lightning.population.population import Population
from dynamo_lightning.population.torch_import import to_torch
from dynamo_lightning.population.trajectories import Trajectories

__all__ = ["Member", "Population", "PopulationFormatError", "Trajectories", "to_torch"]
