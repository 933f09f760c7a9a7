"""The on-disk population format: exact round trip, atomic save, one clear error per fault."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch

import dynamo_lightning as dl
from dynamo_lightning.population import format as fmt
from dynamo_lightning.population.architectures import build


def _meta(arch: str, seed: int, hidden: int) -> dict:
    return {"architecture": arch, "task": "flipflop", "task_config": {"n_bits": 3},
            "seed": seed, "hidden_size": hidden, "task_metric": 0.1 + seed / 3, "tiny": 1e-300}


@pytest.fixture(scope="module")
def population() -> dl.Population:
    """2 GRUs (H=8) + 1 LSTM + 1 CNN, input size 3, output size 2."""
    gru = build("gru", num_members=2, seeds=[0, 1], input_size=3, output_size=2, hidden_size=8)
    lstm = build("lstm", num_members=1, seeds=[2], input_size=3, output_size=2, hidden_size=8)
    cnn = build("cnn", num_members=1, seeds=[3], input_size=3, output_size=2, hidden_size=4,
                n_layers=2)
    return (dl.Population.from_stack("gru", gru, ["gru-0", "gru-1"],
                                     [_meta("gru", 0, 8), _meta("gru", 1, 8)])
            + dl.Population.from_stack("lstm", lstm, ["lstm.2"], [_meta("lstm", 2, 8)])
            + dl.Population.from_stack("cnn", cnn, ["cnn_3"], [_meta("cnn", 3, 4)]))


@pytest.fixture()
def saved(population: dl.Population, tmp_path: Path) -> Path:
    return population.save(tmp_path / "pop")


def _edit_manifest(root: Path, edit: Callable[[dict], None]) -> Path:
    manifest = json.loads((root / "manifest.json").read_text())
    edit(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root / "manifest.json"


def _rewrite_weights(root: Path, index: int, edit: Callable[[dict], None]) -> Path:
    """Rewrite member ``index``'s weights through ``edit`` and fix its checksum."""
    entry = json.loads((root / "manifest.json").read_text())["members"][index]
    file = root / entry["file"]
    tensors = safetensors.torch.load_file(file)
    edit(tensors)
    safetensors.torch.save_file(tensors, file)
    _edit_manifest(root, lambda m: m["members"][index].update(sha256=fmt.sha256_file(file)))
    return file


def test_round_trip_is_exact(population: dl.Population, saved: Path) -> None:
    loaded = dl.Population.load(saved)
    assert loaded.ids == population.ids == ["gru-0", "gru-1", "lstm.2", "cnn_3"]
    for a, b in zip(population, loaded, strict=True):
        assert (a.architecture, a.config, a.metadata) == (b.architecture, b.config, b.metadata)
        assert a.state.keys() == b.state.keys()
        for name in a.state:
            assert a.state[name].dtype == b.state[name].dtype
            assert torch.equal(a.state[name], b.state[name])
    assert loaded[0].metadata["task_metric"] == 0.1 and loaded[3].metadata["tiny"] == 1e-300
    assert loaded.checksum == population.checksum


def test_manifest_layout(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["schema_version"] == 1
    for entry in manifest["members"]:
        assert entry["file"] == f"weights/{entry['id']}.safetensors"
        assert entry["sha256"] == fmt.sha256_file(saved / entry["file"])
    assert sorted(p.name for p in (saved / "weights").iterdir()) == sorted(
        f"{e['id']}.safetensors" for e in manifest["members"])


def test_load_never_unpickles(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("population loading must not unpickle")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
                         (torch, "load")):
        monkeypatch.setattr(module, name, forbidden)
    assert len(dl.Population.load(saved)) == 4


def test_save_leaves_no_temp_dirs_and_replaces_whole(population: dl.Population,
                                                     tmp_path: Path) -> None:
    target = tmp_path / "pop"
    population.save(target, description="first")
    population[:1].save(target)
    assert [p.name for p in tmp_path.iterdir()] == ["pop"]
    assert [p.name for p in (target / "weights").iterdir()] == ["gru-0.safetensors"]
    assert dl.Population.load(target).ids == ["gru-0"]


def test_failed_save_keeps_old_population(population: dl.Population, saved: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def crash(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        population[:2].save(saved)
    assert calls and [p.name for p in saved.parent.iterdir()] == ["pop"]
    assert dl.Population.load(saved).ids == population.ids


def test_save_refuses_non_population_dir(population: dl.Population, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(dl.PopulationFormatError, match="did not write"):
        population.save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty_ok").mkdir()
    population.save(tmp_path / "empty_ok")
    assert dl.Population.load(tmp_path / "empty_ok").ids == population.ids


def test_save_rejects_bad_members(population: dl.Population, tmp_path: Path) -> None:
    m = population[0]
    with pytest.raises(ValueError, match="duplicate member id"):
        fmt.save_population([m, m], tmp_path / "dup")
    wrong = dl.Member("x", "gru", {**m.config, "hidden_size": 9}, {}, m.state)
    with pytest.raises(ValueError, match="weight_ih"):
        fmt.save_population([wrong], tmp_path / "shape")
    with pytest.raises(ValueError, match="safe file name"):
        dl.Member("../evil", "gru", m.config, {}, m.state)
    assert not (tmp_path / "dup").exists() and not (tmp_path / "shape").exists()


def _flip_byte(root: Path) -> Path:
    file = root / "weights" / "gru-1.safetensors"
    data = bytearray(file.read_bytes())
    data[-3] ^= 0xFF
    file.write_bytes(bytes(data))
    return file


def _truncate_and_fix_sha(root: Path) -> Path:
    file = root / "weights" / "lstm.2.safetensors"
    file.write_bytes(file.read_bytes()[:40])
    _edit_manifest(root, lambda m: m["members"][2].update(sha256=fmt.sha256_file(file)))
    return file


def _manifest_case(edit: Callable[[dict], None]) -> Callable[[Path], Path]:
    return lambda root: _edit_manifest(root, edit)


def _write_manifest(text: str) -> Callable[[Path], Path]:
    def case(root: Path) -> Path:
        (root / "manifest.json").write_text(text)
        return root / "manifest.json"
    return case


def _delete(rel: str) -> Callable[[Path], Path]:
    def case(root: Path) -> Path:
        (root / rel).unlink()
        return root / rel
    return case


BAD_CASES: dict[str, tuple[Callable[[Path], Path], list[str]]] = {
    "missing_dir": (lambda root: shutil.rmtree(root) or root, ["not found"]),
    "missing_manifest": (_delete("manifest.json"), ["missing manifest"]),
    "invalid_json": (_write_manifest('{\n  "schema_version": 1,\n  oops\n}'),
                     ["invalid JSON", "line 3"]),
    "not_object": (_write_manifest("[1, 2]"), ["must be a JSON object"]),
    "missing_members": (_manifest_case(lambda m: m.pop("members")), ["missing key", "members"]),
    "members_not_list": (_manifest_case(lambda m: m.update(members={})), ["must be a list"]),
    "entry_missing_key": (_manifest_case(lambda m: m["members"][1].pop("sha256")),
                          ["members[1]", "missing key", "sha256"]),
    "entry_wrong_type": (_manifest_case(lambda m: m["members"][0].update(config=[1])),
                         ["members[0].config must be dict"]),
    "schema_version": (_manifest_case(lambda m: m.update(schema_version=7)),
                       ["unknown schema_version 7", "supported: 1"]),
    "duplicate_id": (_manifest_case(lambda m: m["members"][1].update(id="gru-0")),
                     ["duplicate member id 'gru-0'", "members[1]"]),
    "unsafe_id": (_manifest_case(lambda m: m["members"][0].update(id="a/b")), ["safe file name"]),
    "unknown_arch": (_manifest_case(lambda m: m["members"][3].update(architecture="gruu")),
                     ["unknown architecture 'gruu' in members[3]", "known:", "gru", "cnn"]),
    "escaping_file": (_manifest_case(lambda m: m["members"][0].update(file="../x.safetensors")),
                      ["relative path"]),
    "missing_weights": (_delete("weights/lstm.2.safetensors"), ["missing weights file"]),
    "checksum": (_flip_byte, ["checksum mismatch", "manifest says"]),
    "corrupted": (_truncate_and_fix_sha, ["corrupted safetensors"]),
    "shape_mismatch": (lambda root: _rewrite_weights(
        root, 0, lambda t: t.update(weight_hh=torch.zeros(8, 25))),
        ["'weight_hh'", "(8, 25)", "(8, 24)"]),
    "config_mismatch": (lambda root: _manifest_case(
        lambda m: m["members"][1]["config"].update(hidden_size=9))(root).parent
        / "weights" / "gru-1.safetensors",
                        ["'weight_ih'", "(3, 24)", "(3, 27)"]),
    "missing_tensor": (lambda root: _rewrite_weights(root, 2, lambda t: t.pop("readout_bias")),
                       ["missing", "readout_bias"]),
    "extra_tensor": (lambda root: _rewrite_weights(
        root, 3, lambda t: t.update(bonus=torch.zeros(2))), ["unexpected", "bonus"]),
    "bad_config": (_manifest_case(lambda m: m["members"][0]["config"].pop("hidden_size")),
                   ["bad config", "hidden_size", "members[0]"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_population_gives_one_clear_error(saved: Path, case: str) -> None:
    corrupt, words = BAD_CASES[case]
    culprit = corrupt(saved)
    with pytest.raises(dl.PopulationFormatError) as info:
        dl.Population.load(saved)
    message = str(info.value)
    assert str(culprit) in message and "\n" not in message
    for word in words:
        assert word in message
    assert isinstance(info.value, ValueError)


def test_the_longest_allowed_member_id_saves_and_loads(tmp_path) -> None:
    from torch import nn

    from dynamo_lightning.population.member import MAX_ID_LENGTH

    member_id = "m" * MAX_ID_LENGTH
    pop = dl.Population.from_torch({member_id: (nn.GRU(2, 4, batch_first=True), nn.Linear(4, 1))})
    assert dl.Population.load(pop.save(tmp_path / "population")).ids == [member_id]
