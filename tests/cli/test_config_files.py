"""The YAML scan in front of jsonargparse's loader: alias bombs, self-referencing aliases and
deep nesting are refused before anything is built; every shipped config passes unchanged."""

from __future__ import annotations

import pytest
import yaml
from jsonargparse import ArgumentParser, get_loader
from paths import REPO

from dynamo_lightning.cli.config_files import (
    MAX_ALIAS_NODES,
    MAX_YAML_DEPTH,
    ConfigFileError,
    checked_yaml_load,
    guard_yaml_loading,
    scan_yaml,
)

SHIPPED = sorted([*REPO.glob("configs/**/*.yaml"), *REPO.glob("tests/conf/*.yaml"),
                  *REPO.glob("dynamo_lightning/**/*.yaml")])


def _laughs(levels: int) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _flow_laughs(levels: int) -> str:
    """The same as one flow list: a value."""
    parts = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    parts += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return f"[{', '.join(parts)}]"


def _reused(uses: int, size: int = 999) -> str:
    """A list of ``size`` scalars (``size + 1`` nodes), anchored, and ``uses`` aliases of it."""
    return f"base: &b [{', '.join(['1'] * size)}]\nuses: [{', '.join(['*b'] * uses)}]\n"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_passes_and_loads_as_before(path) -> None:
    text = path.read_text()
    scan_yaml(text, path.name)
    assert checked_yaml_load(text) == yaml.safe_load(text)


def test_a_billion_laughs_is_refused_naming_the_file() -> None:
    with pytest.raises(ConfigFileError) as info:
        scan_yaml(_laughs(9), "bomb.yaml")
    message = str(info.value)
    assert message.startswith("config file bomb.yaml: ") and "\n" not in message
    assert f"expand to more than {MAX_ALIAS_NODES} nodes" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, yaml.YAMLError)


def test_the_count_is_the_expansion_exactly() -> None:
    """Each alias adds its anchor's whole expansion (1000 nodes here), counted once per
    anchor: 100 uses is one over the limit, 99 is under."""
    scan_yaml(_reused(MAX_ALIAS_NODES // 1000 - 1))
    with pytest.raises(ConfigFileError, match="YAML value: its aliases expand"):
        scan_yaml(_reused(MAX_ALIAS_NODES // 1000 + 1))
    scan_yaml(_laughs(5))  # 9 + 81 + ... + 9**5 scalars through aliases: about 66k


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    with pytest.raises(ConfigFileError, match=r"alias \*x is used inside its own anchor"):
        scan_yaml("a: &x {b: [1, *x]}\n")


def test_nesting_is_limited() -> None:
    scan_yaml("[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH)
    with pytest.raises(ConfigFileError, match=f"nested deeper than {MAX_YAML_DEPTH} levels"):
        scan_yaml("x: " + "[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1))


def test_yaml_that_does_not_parse_is_left_to_the_loader() -> None:
    scan_yaml("a: [1, 2\n")  # no verdict: jsonargparse's loader reports it in its words
    with pytest.raises(yaml.YAMLError):
        checked_yaml_load("a: [1, 2\n")


def test_the_guard_covers_jsonargparse_config_strings_and_values() -> None:
    guard_yaml_loading()
    guard_yaml_loading()  # idempotent
    assert get_loader("yaml") is checked_yaml_load
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--x", type=int, default=0)
    parser.add_argument("--y", type=list, default=[])
    assert parser.parse_string("x: 3\ny: [&v 1, *v]\n").y == [1, 1]
    with pytest.raises(Exception, match="alias bomb"):  # a config
        parser.parse_string(f"y: {_flow_laughs(9)}\n")
    with pytest.raises(Exception, match="Expected a <class 'int'>"):  # converted to an int
        parser.parse_string(f"x: '{_flow_laughs(9)}'\n")
    with pytest.raises(Exception, match="Expected a <class 'int'>"):  # on the command line
        parser.parse_args(["--x", _flow_laughs(9)])
