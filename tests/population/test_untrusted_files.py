"""A population directory is untrusted data: files that lie are refused on load, each with
one ``PopulationFormatError`` line naming the file and the fault. Weights of another dtype
(or converted only on request), two members whose weights are one file (hard links) or
copies of one, a manifest or weights file linking outside the directory, and a manifest
nested deeper than ``MAX_JSON_DEPTH``; sound populations still load."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch

import dynamo_lightning as dl
from dynamo_lightning.population import format as fmt
from dynamo_lightning.population.architectures import build
from dynamo_lightning.population.manifest import MAX_JSON_DEPTH, json_too_deep


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    """Two GRU members (gru-0, gru-1) and one LSTM (lstm-2), saved."""
    gru = build("gru", num_members=2, seeds=[0, 1], input_size=2, output_size=2, hidden_size=4)
    lstm = build("lstm", num_members=1, seeds=[2], input_size=2, output_size=2, hidden_size=4)
    population = (dl.Population.from_stack("gru", gru, ["gru-0", "gru-1"])
                  + dl.Population.from_stack("lstm", lstm, ["lstm-2"]))
    return population.save(tmp_path / "pop")


def _weights(root: Path, member_id: str) -> Path:
    return root / "weights" / f"{member_id}.safetensors"


def _fix_checksum(root: Path, index: int) -> None:
    """Make ``members[index]``'s manifest checksum match its file again."""
    manifest = json.loads((root / "manifest.json").read_text())
    entry = manifest["members"][index]
    entry["sha256"] = fmt.sha256_file(root / entry["file"])
    (root / "manifest.json").write_text(json.dumps(manifest))


def _rewrite(root: Path, index: int, member_id: str,
             edit: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> Path:
    file = _weights(root, member_id)
    safetensors.torch.save_file(edit(safetensors.torch.load_file(file)), file)
    _fix_checksum(root, index)
    return file


def _refusal(root: Path, **load_options: bool) -> str:
    """The one-line message of loading ``root``, which must fail."""
    with pytest.raises(dl.PopulationFormatError) as info:
        dl.Population.load(root, **load_options)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ValueError)
    return message


# ------------------------------------------------------------------------------- (a) dtypes
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16, torch.int32])
def test_weights_of_another_dtype_are_refused(saved: Path, dtype: torch.dtype) -> None:
    file = _rewrite(saved, 1, "gru-1", lambda s: {k: v.to(dtype) for k, v in s.items()})
    message = _refusal(saved)
    name = str(dtype).removeprefix("torch.")
    for word in (str(file), "'gru-1'", f"{name} tensor(s)", "'weight_hh'",
                 "'gru' parameters are float32", "convert_dtypes=True"):
        assert word in message, message


def test_one_tensor_of_another_dtype_is_named(saved: Path) -> None:
    file = _rewrite(saved, 2, "lstm-2", lambda s: {**s, "readout_bias": s["readout_bias"].double()})
    message = _refusal(saved)
    assert str(file) in message and "float64 tensor(s) ['readout_bias']" in message, message


def test_convert_dtypes_converts_real_weights(saved: Path) -> None:
    before = dl.Population.load(saved)
    _rewrite(saved, 0, "gru-0", lambda s: {k: v.double() for k, v in s.items()})
    _rewrite(saved, 2, "lstm-2", lambda s: {k: v.half() for k, v in s.items()})
    loaded = dl.Population.load(saved, convert_dtypes=True)
    for member, original in zip(loaded, before, strict=True):
        assert all(t.dtype == torch.float32 for t in member.state.values())
        tol = 1e-3 if member.id == "lstm-2" else 0.0  # float16 keeps ~3 digits
        for key, value in original.state.items():
            torch.testing.assert_close(member.state[key], value, atol=tol, rtol=tol)


def test_convert_dtypes_repairs_a_population_by_saving_it_again(saved: Path,
                                                                tmp_path: Path) -> None:
    _rewrite(saved, 1, "gru-1", lambda s: {k: v.double() for k, v in s.items()})
    repaired = dl.Population.load(saved, convert_dtypes=True).save(tmp_path / "repaired")
    assert dl.Population.load(repaired).ids == ["gru-0", "gru-1", "lstm-2"]


@pytest.mark.parametrize("convert", [False, True])
def test_bool_weights_are_refused_even_with_convert(saved: Path, convert: bool) -> None:
    file = _rewrite(saved, 0, "gru-0", lambda s: {**s, "readout_bias": s["readout_bias"] > 0})
    message = _refusal(saved, convert_dtypes=convert)
    assert str(file) in message and "bool tensor(s) ['readout_bias']" in message, message
    if convert:
        assert "cannot be converted" in message


def test_converted_weights_must_still_be_finite(saved: Path) -> None:
    """A float64 value beyond float32's range would become an infinity: refused."""
    def huge(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        state = {k: v.double() for k, v in state.items()}
        state["weight_hh"][0, 0] = 1e300
        return state

    file = _rewrite(saved, 1, "gru-1", huge)
    message = _refusal(saved, convert_dtypes=True)
    assert str(file) in message and "NaN or infinite" in message and "'weight_hh'" in message


def test_a_float64_stack_is_saved_as_float32_and_loads(tmp_path: Path) -> None:
    stack = build("gru", num_members=2, seeds=[0, 1], input_size=2, output_size=2,
                  hidden_size=4).double()
    population = dl.Population.from_stack("gru", stack, ["a", "b"])
    loaded = dl.Population.load(population.save(tmp_path / "pop"))
    for member, original in zip(loaded, population, strict=True):
        for key, value in original.state.items():
            assert member.state[key].dtype == torch.float32
            torch.testing.assert_close(member.state[key], value.float(), atol=0, rtol=0)


# --------------------------------------------------------------- (b) one file, two members
def test_hard_linked_weights_files_are_refused(saved: Path) -> None:
    first, second = _weights(saved, "gru-0"), _weights(saved, "gru-1")
    second.unlink()
    os.link(first, second)
    _fix_checksum(saved, 1)
    message = _refusal(saved)
    for word in ("'gru-0' (members[0])", "'gru-1' (members[1])", "hard links", str(first),
                 str(second), "each member needs its own weights file"):
        assert word in message, message


def test_byte_identical_weights_files_are_refused(saved: Path) -> None:
    first, second = _weights(saved, "gru-0"), _weights(saved, "gru-1")
    shutil.copyfile(first, second)
    _fix_checksum(saved, 1)
    message = _refusal(saved)
    for word in ("'gru-0' (members[0])", "'gru-1' (members[1])", "identical copies",
                 str(first), str(second)):
        assert word in message, message


def test_a_link_to_another_members_file_inside_is_refused(saved: Path) -> None:
    second = _weights(saved, "gru-1")
    second.unlink()
    second.symlink_to("gru-0.safetensors")
    _fix_checksum(saved, 1)
    message = _refusal(saved)
    assert "'gru-0' (members[0])" in message and "'gru-1' (members[1])" in message, message
    assert "each member needs its own file" in message and str(_weights(saved, "gru-0")) in message


def test_weights_hard_linked_to_a_file_outside_still_load(saved: Path, tmp_path: Path) -> None:
    """A snapshot made with hard links (``cp -al``, ``rsync --link-dest``) shares inodes with
    its source, not between its own members: it loads."""
    snapshot = tmp_path / "snapshot"
    shutil.copytree(saved, snapshot, copy_function=os.link)
    assert dl.Population.load(snapshot).ids == dl.Population.load(saved).ids


# ------------------------------------------------------------------- (c) links that leave
def test_a_manifest_linking_outside_is_refused(saved: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    (saved / "manifest.json").rename(outside)
    (saved / "manifest.json").symlink_to(outside)
    message = _refusal(saved)
    for word in (str(saved / "manifest.json"), str(outside), "outside the population directory"):
        assert word in message, message


def test_a_weights_file_linking_outside_is_refused(saved: Path, tmp_path: Path) -> None:
    outside = tmp_path / "lstm.safetensors"
    _weights(saved, "lstm-2").rename(outside)
    _weights(saved, "lstm-2").symlink_to(outside)
    message = _refusal(saved)
    for word in ("'lstm-2'", str(outside), "outside the population directory"):
        assert word in message, message


def test_links_that_stay_inside_load(saved: Path, tmp_path: Path) -> None:
    """A population reached through a linked directory, with a manifest linked inside it."""
    (saved / "manifest.json").rename(saved / "weights" / "manifest.real")
    (saved / "manifest.json").symlink_to("weights/manifest.real")
    link = tmp_path / "linked_pop"
    link.symlink_to(saved)
    assert dl.Population.load(link).ids == ["gru-0", "gru-1", "lstm-2"]


# --------------------------------------------------------------------- (d) deep manifests
def test_a_manifest_nested_100k_deep_is_refused_without_recursion(saved: Path) -> None:
    depth = 100_000
    manifest = saved / "manifest.json"
    manifest.write_text('{"schema_version": 1, "members": ' + "[" * depth + "]" * depth + "}")
    message = _refusal(saved)
    assert str(manifest) in message
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in message, message


def test_brackets_inside_strings_do_not_count(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["members"][0]["metadata"]["note"] = '[{"\\"' * 1000
    (saved / "manifest.json").write_text(json.dumps(manifest))
    assert dl.Population.load(saved)[0].metadata["note"] == '[{"\\"' * 1000


def test_json_too_deep_counts_levels_exactly() -> None:
    assert not json_too_deep("[" * 64 + "]" * 64)
    assert json_too_deep("[" * 65 + "]" * 65)
    assert not json_too_deep('{"a": "' + "[" * 100 + '"}')
    assert json_too_deep('{"a": [{"b": [1]}]}', limit=3)


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


def test_metadata_as_deep_as_a_manifest_allows_round_trips(tmp_path: Path) -> None:
    stack = build("gru", num_members=1, seeds=[0], input_size=2, output_size=2, hidden_size=4)
    deepest = MAX_JSON_DEPTH - fmt.ENTRY_DEPTH
    ok = dl.Population.from_stack("gru", stack, ["a"], [_nested(deepest)])
    assert dl.Population.load(ok.save(tmp_path / "ok"))[0].metadata["x"] == _nested(deepest)["x"]
    deep = dl.Population.from_stack("gru", stack, ["a"], [_nested(deepest + 1)])
    with pytest.raises(ValueError, match=f"metadata of member 'a' is nested deeper than "
                                         f"{deepest} levels"):
        deep.save(tmp_path / "deep")
    assert not (tmp_path / "deep").exists()


def test_a_sound_population_loads_unchanged(saved: Path) -> None:
    loaded = dl.Population.load(saved)
    assert loaded.ids == ["gru-0", "gru-1", "lstm-2"]
    assert all(t.dtype == torch.float32 for m in loaded for t in m.state.values())
