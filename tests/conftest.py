"""Shared fixtures: a tiny trained-shape population built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import matplotlib

matplotlib.use("agg")

import pytest
import torch

from dynamo_lightning.population import Population, architectures

# The suite runs many tiny ops; one intra-op thread avoids oversubscription on 2-core CI.
torch.set_num_threads(1)



@pytest.fixture(scope="session")
def tiny_population() -> Population:
    """Four untrained 3-bit flip-flop members (2 GRU, 1 vanilla, 1 LSTM), hidden size 8."""
    parts = []
    for name, seeds in (("gru", [0, 1]), ("vanilla", [2]), ("lstm", [3])):
        stack = architectures.build(name, num_members=len(seeds), seeds=seeds,
                                    input_size=3, output_size=3, hidden_size=8)
        ids = [f"{name}-s{s}" for s in seeds]
        meta = [{"architecture": name, "task": "flipflop", "task_config": {"n_bits": 3},
                 "seed": s, "hidden_size": 8, "task_metric": 0.5} for s in seeds]
        parts.append(Population.from_stack(name, stack, ids, meta))
    return Population.concat(parts)
