"""The generic registry, the global registries, and entry-point plugins (the example package)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import dynamo_lightning as dl
from dynamo_lightning.population.architectures import RecurrentArchitecture
from dynamo_lightning.population.architectures.vanilla import VanillaRNN
from dynamo_lightning.registry import PluginLoadError, Registry, UnknownNameError
from dynamo_lightning.tasks import Task

PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "dynamo_example_plugin"
ARCH_GROUP = "dynamo_lightning.architectures"
TASK_GROUP = "dynamo_lightning.tasks"
EMPTY_GROUP = "dynamo_lightning.tests.no_such_group"


def _new_class(name: str) -> type:
    return type(name, (), {"__module__": __name__})


# --------------------------------------------------------------------------- Registry
def test_register_get_names_in_registration_order() -> None:
    reg: Registry[type] = Registry("widget", EMPTY_GROUP)
    a, b = _new_class("A"), _new_class("B")
    assert reg.register("b")(b) is b  # the decorator returns the class unchanged
    reg.register("a")(a)
    assert reg.names() == ["b", "a"]
    assert reg.get("a") is a and reg.get("b") is b
    assert a.registered_name == "a"


def test_unlisted_names_load_but_are_not_offered() -> None:
    reg: Registry[type] = Registry("widget", EMPTY_GROUP)
    shown, hidden = _new_class("Shown"), _new_class("Hidden")
    reg.register("shown")(shown)
    reg.register("hidden", listed=False)(hidden)
    assert reg.names() == ["shown"] and reg.get("hidden") is hidden and "hidden" in reg
    with pytest.raises(UnknownNameError, match=r"\(known: shown\)"):
        reg.get("nope")
    assert "vanilla_rotated" not in dl.architectures.names()
    assert dl.architectures.get("vanilla_rotated").registered_name == "vanilla_rotated"


def test_register_accepts_objects_without_attributes() -> None:
    reg: Registry[object] = Registry("function", EMPTY_GROUP)
    reg.register("length")(len)  # a builtin cannot take `registered_name`
    assert reg.get("length") is len


def test_duplicate_name_raises_naming_the_name_and_the_registered_class() -> None:
    reg: Registry[type] = Registry("widget", EMPTY_GROUP)
    first, second = _new_class("First"), _new_class("Second")
    reg.register("w")(first)
    with pytest.raises(ValueError) as info:
        reg.register("w")(second)
    message = str(info.value)
    assert "widget 'w'" in message
    assert f"{__name__}.First" in message
    assert reg.get("w") is first  # the failed registration changed nothing


def test_registering_the_same_object_twice_is_allowed() -> None:
    reg: Registry[type] = Registry("widget", EMPTY_GROUP)
    cls = _new_class("Same")
    reg.register("s")(cls)
    reg.register("s")(cls)  # e.g. a module imported twice
    assert reg.names() == ["s"]


@pytest.mark.parametrize("bad", ["", None, 3])
def test_bad_name_raises(bad: object) -> None:
    reg: Registry[type] = Registry("widget", EMPTY_GROUP)
    with pytest.raises(ValueError, match="widget name must be a non-empty string"):
        reg.register(bad)  # type: ignore[arg-type]


def test_unknown_name_lists_known_names_without_extra_quotes() -> None:
    reg: Registry[type] = Registry("widget", EMPTY_GROUP)
    reg.register("alpha")(_new_class("Alpha"))
    reg.register("beta")(_new_class("Beta"))
    with pytest.raises(UnknownNameError) as info:
        reg.get("gama")
    assert isinstance(info.value, KeyError)  # `except KeyError` still catches it
    assert str(info.value) == "unknown widget 'gama' (known: alpha, beta)"


def test_contains() -> None:
    reg: Registry[type] = Registry("widget", EMPTY_GROUP)
    reg.register("here")(_new_class("Here"))
    assert "here" in reg
    assert "absent" not in reg
    assert 3 not in reg


# --------------------------------------------------------------------------- global registries
def test_global_registries_start_with_the_builtins() -> None:
    assert dl.architectures.names()[:6] == ["vanilla", "relu", "gru", "lstm", "ugrnn", "cnn"]
    names = dl.tasks.names()
    builtin = [n for n in names if dl.tasks.get_class(n).__module__.startswith("dynamo_lightning.")]
    assert names[: len(builtin)] == builtin
    assert {"flipflop", "integrator", "sine", "context", "seq_digits", "digits"} <= set(builtin)


# --------------------------------------------------------------------------- entry points
def _write_dist_info(root: Path, name: str, version: str,
                     groups: dict[str, dict[str, str]]) -> None:
    """An installed-distribution record, as pip would write it, without installing anything."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, entries in groups.items():
        lines += [f"[{group}]", *(f"{key} = {value}" for key, value in entries.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))


def _forget_modules(prefix: str) -> None:
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]


@pytest.fixture
def example_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """The example package made visible through its entry points, as if pip-installed."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    _write_dist_info(tmp_path, project["name"], project["version"], project["entry-points"])
    _forget_modules("dynamo_example_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(PLUGIN / "src"))
    yield project["entry-points"]
    _forget_modules("dynamo_example_plugin")


def test_example_plugin_declares_both_groups(example_plugin: dict) -> None:
    assert example_plugin[ARCH_GROUP] == {
        "leaky_tanh": "dynamo_example_plugin.architecture:LeakyTanhRNN",
        "tanh_mlp": "dynamo_example_plugin.mlp:TanhMLP"}
    assert example_plugin[TASK_GROUP] == {"copy_delay": "dynamo_example_plugin.task:CopyDelay"}


def test_entry_point_architecture_is_loaded_lazily_and_works(example_plugin: dict) -> None:
    archs: Registry[type] = Registry("architecture", ARCH_GROUP)  # fresh: globals untouched
    assert "dynamo_example_plugin" not in sys.modules
    assert "leaky_tanh" in archs.names()
    cls = archs.get("leaky_tanh")
    assert issubclass(cls, RecurrentArchitecture) and cls.__name__ == "LeakyTanhRNN"
    assert cls.registered_name == "leaky_tanh"
    assert "leaky_tanh" not in dl.architectures.REGISTRY._entries

    g, b, t, alpha = 3, 4, 7, 0.3
    net = cls(input_size=2, output_size=3, hidden_size=8, num_members=g, seeds=[5, 6, 7],
              alpha=alpha)
    x = torch.randn(b, t, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outputs, hidden = net(x)
        assert outputs.shape == (g, b, t, 3) and hidden.shape == (g, b, t, 8)
        h = net.initial_state(b)
        for step in range(t):
            previous, h = h, net.step(h, x[:, step])
            torch.testing.assert_close(h, hidden[:, :, step])
        drive = (torch.einsum("bi,gij->gbj", x[:, -1], net.weight_ih) + net.bias_ih[:, None]
                 + torch.bmm(previous, net.weight_hh) + net.bias_hh[:, None])
        torch.testing.assert_close(hidden[:, :, -1],
                                   (1 - alpha) * previous + alpha * torch.tanh(drive))
        for i, seed in enumerate([5, 6, 7]):  # stacked == one by one
            single = cls(input_size=2, output_size=3, hidden_size=8, seeds=[seed], alpha=alpha)
            torch.testing.assert_close(single(x)[1][0], hidden[i])
        # alpha = 1 is the vanilla tanh RNN (same parameters, same initialisation).
        full = cls(input_size=2, output_size=3, hidden_size=8, seeds=[1], alpha=1.0)
        vanilla = VanillaRNN(input_size=2, output_size=3, hidden_size=8, seeds=[1])
        torch.testing.assert_close(full(x), vanilla(x))
    with pytest.raises(ValueError, match="alpha must be in"):
        cls(input_size=2, output_size=3, hidden_size=8, alpha=0.0)


def test_entry_point_task_is_registered_and_deterministic(example_plugin: dict) -> None:
    tasks: Registry[type] = Registry("task", TASK_GROUP)
    assert "copy_delay" in tasks.names()
    cls = tasks.get("copy_delay")
    assert issubclass(cls, Task)
    task = cls(n_channels=2, delay=3, seq_len=12)
    assert task.name == "copy_delay"
    assert (task.input_size, task.output_size, task.seq_len) == (2, 2, 12)

    x, y = task.sample(5, generator=torch.Generator().manual_seed(1))
    x2, y2 = task.sample(5, generator=torch.Generator().manual_seed(1))
    x3, _ = task.sample(5, generator=torch.Generator().manual_seed(2))
    assert x.shape == y.shape == (5, 12, 2) and x.dtype == torch.float32
    assert torch.equal(x, x2) and torch.equal(y, y2) and not torch.equal(x, x3)
    assert x.abs().sum() > 0
    assert torch.equal(y[:, 3:], x[:, :-3]) and not y[:, :3].any()
    assert task.loss(y, y).item() == 0.0 and task.metric(y, y) == 0.0
    assert task.metric(torch.zeros_like(y), y) > 0.0 and not cls.higher_is_better
    assert cls(**task.config()).config() == task.config()
    with pytest.raises(ValueError, match="delay=12"):
        cls(delay=12, seq_len=12)


def test_broken_entry_point_fails_only_when_loaded(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _write_dist_info(tmp_path, "broken-plugin", "0.1.0",
                     {ARCH_GROUP: {"broken": "dynamo_no_such_module:Thing"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    archs: Registry[type] = Registry("architecture", ARCH_GROUP)  # constructing loads nothing
    ok = _new_class("Ok")
    archs.register("ok")(ok)
    assert archs.get("ok") is ok  # a known name never touches the entry points
    with pytest.raises(PluginLoadError, match=r"plugin 'broken'.*dynamo_no_such_module") as err:
        archs.names()
    assert isinstance(err.value.__cause__, ModuleNotFoundError)
    with pytest.raises(PluginLoadError):  # still failing, not silently half-loaded
        archs.names()
