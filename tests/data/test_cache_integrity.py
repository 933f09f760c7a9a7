"""A trajectory cache whose arrays changed after writing is rebuilt, never silently reused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dynamo_lightning.data import TrajectoryDataModule
from dynamo_lightning.data.cache import read_cache, write_cache
from dynamo_lightning.files import sha256_file
from dynamo_lightning.population import Population

SIZES = {"num_components": 2, "members_per_batch": 2, "samples_per_member": 2,
         "train_trials": 6, "val_trials": 4, "test_trials": 2}


def _change_in_place(file: Path, index: int = 0, value: float = 42.0) -> None:
    """Overwrite one value of a ``.npy`` file through a writable memory map (same size)."""
    array = np.load(file, mmap_mode="r+")
    array.reshape(-1)[index] = value
    array.flush()
    del array


def test_meta_records_each_arrays_checksum(tmp_path: Path) -> None:
    entry = write_cache(tmp_path, "k", {"a": np.arange(6.0), "b": np.ones(3)}, {})
    listing = json.loads((entry / "meta.json").read_text())["arrays"]
    for name in ("a", "b"):
        assert listing[name]["sha256"] == sha256_file(entry / f"{name}.npy")


def test_array_changed_in_place_is_not_reused(tmp_path: Path) -> None:
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.zeros(2)}
    entry = write_cache(tmp_path, "k", arrays, {"note": 1})
    _change_in_place(entry / "a.npy")
    with pytest.warns(UserWarning, match=str(entry / "a.npy")) as caught:
        assert read_cache(tmp_path, "k") is None
    assert "changed since the cache was written" in str(caught[0].message)
    assert "rebuilding" in str(caught[0].message)
    write_cache(tmp_path, "k", arrays, {"note": 1})
    got, meta = read_cache(tmp_path, "k")
    np.testing.assert_array_equal(got["a"], arrays["a"])
    assert meta == {"note": 1}


def test_datamodule_rebuilds_a_changed_cache(tiny_population: Population,
                                             tmp_path: Path) -> None:
    pop_dir = tiny_population.save(tmp_path / "population")
    cache_dir = tmp_path / "cache"
    first = TrajectoryDataModule(str(pop_dir), cache_dir=str(cache_dir), **SIZES)
    first.setup("fit")
    assert first.cache_path is not None
    target = first.cache_path / "train_hidden.npy"
    original = np.array(np.load(target))
    _change_in_place(target, value=1e6)
    again = TrajectoryDataModule(str(pop_dir), cache_dir=str(cache_dir), **SIZES)
    with pytest.warns(UserWarning, match=str(first.cache_path)):
        again.setup("fit")
    assert not again.reused_cache
    np.testing.assert_array_equal(np.load(target), original)
    np.testing.assert_array_equal(again._stores["train"]["train_hidden"], original)


def test_a_second_writer_keeps_the_first_writers_intact_entry(tmp_path: Path) -> None:
    """Two fits of one population build the same entry: the later one must not delete the
    entry the first is already reading (it did, and the first fit crashed)."""
    first = write_cache(tmp_path, "k", {"x": np.arange(4.0)}, {"by": "first"})
    opened, _ = read_cache(tmp_path, "k")
    second = write_cache(tmp_path, "k", {"x": np.arange(4.0)}, {"by": "second"})
    assert second == first
    assert read_cache(tmp_path, "k")[1] == {"by": "first"}
    np.testing.assert_array_equal(opened["x"], np.arange(4.0))  # still readable
    assert [p.name for p in tmp_path.iterdir()] == ["k"]  # ours was discarded


def test_a_damaged_entry_is_replaced(tmp_path: Path) -> None:
    entry = write_cache(tmp_path, "k", {"x": np.arange(4.0)}, {"by": "first"})
    (entry / "x.npy").write_bytes(b"torn")
    write_cache(tmp_path, "k", {"x": np.arange(4.0)}, {"by": "second"})
    assert read_cache(tmp_path, "k")[1] == {"by": "second"}
