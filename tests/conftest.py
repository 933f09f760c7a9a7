"""Shared fixtures: a tiny trained-shape population built once per session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")
# Lightning's DDP launcher sets torch's thread count (one per core) in the test's own process
# unless OMP_NUM_THREADS is set, and the next test would inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
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


@pytest.fixture(scope="session")
def tiny_fit(tiny_population: Population, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``tiny_population`` saved, and one tiny ``dynamo fit`` on it (2 epochs, meta GRU of 8).

    Returns a dict: ``root`` (run dir), ``population`` (its directory), ``ckpt`` (last.ckpt)
    and ``module`` (the loaded ``DynamoModule``, eval mode, on the CPU). Read-only: tests that
    change the module must load their own copy from ``ckpt``.
    """
    return fit_tiny(tiny_population, tmp_path_factory.mktemp("tiny_fit"))


@pytest.fixture(scope="session")
def demo_layout(tiny_fit: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out like ``make demo``'s output, filled from ``tiny_fit``:
    ``runs/demo/population/`` and ``runs/demo/fit/checkpoints/last.ckpt``. Tests run README
    examples as written with this directory as the working directory (``monkeypatch.chdir``).
    """
    root = tmp_path_factory.mktemp("demo_layout")
    demo = root / "runs" / "demo"
    shutil.copytree(tiny_fit["population"], demo / "population")
    (demo / "fit" / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_fit["ckpt"], demo / "fit" / "checkpoints" / "last.ckpt")
    return root


def build_cnn_population() -> Population:
    """Four untrained digits CNNs: widths 4 and 6, depths 2 and 3, two training variants
    (``task_label`` standard / permuted), as metadata a trained population would carry."""
    parts = []
    permuted = [1, 0, 3, 2, 5, 4, 7, 6, 9, 8]
    for i, (width, depth) in enumerate(((4, 2), (6, 3))):
        stack = architectures.build("cnn", num_members=2, seeds=[i, i + 2], input_size=8,
                                    output_size=10, hidden_size=width, n_layers=depth)
        ids = [f"cnn-h{width}-d{depth}-{label}" for label in ("standard", "permuted")]
        meta = [{"architecture": "cnn", "task": "digits", "seed": i, "hidden_size": width,
                 "n_layers": depth, "task_label": label,
                 "task_config": {} if label == "standard" else {"label_permutation": permuted}}
                for label in ("standard", "permuted")]
        parts.append(Population.from_stack("cnn", stack, ids, meta))
    return Population.concat(parts)


@pytest.fixture(scope="session")
def tiny_cnn_fit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny CNN population (``build_cnn_population``) saved, and one tiny ``dynamo fit`` on
    it (the meta-CNN, 8 channels, 2 epochs). Same keys as ``tiny_fit``; read-only."""
    return fit_tiny(build_cnn_population(), tmp_path_factory.mktemp("tiny_cnn_fit"))


def fit_tiny(population: Population, root: Path) -> dict:
    """Save ``population`` under ``root`` and run one ``dynamo fit`` of
    ``conf/dynamo_tiny.yaml`` on it there; the dict ``tiny_fit`` describes."""
    from dynamo_lightning.cli import main
    from dynamo_lightning.module import DynamoModule

    pop_dir = population.save(root / "population")
    config = os.path.join(os.path.dirname(__file__), "conf", "dynamo_tiny.yaml")
    assert main(["fit", "--config", config, f"--data.population={pop_dir}",
                 f"--data.cache_dir={root / 'cache'}", f"--trainer.default_root_dir={root}"]) == 0
    ckpt = root / "checkpoints" / "last.ckpt"
    module = DynamoModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    return {"root": root, "population": pop_dir, "ckpt": ckpt, "module": module}


@pytest.fixture(autouse=True)
def _threads_left_as_found() -> Iterator[None]:
    """A test that changes torch's intra-op thread count must give it back: the next test (and
    its timing-sensitive defaults) would otherwise run on the leaked count."""
    before = torch.get_num_threads()
    yield
    after = torch.get_num_threads()
    torch.set_num_threads(before)
    assert after == before, f"the test left torch on {after} threads (it found {before})"
