"""An outside package's feed-forward architecture (the example plugin's ``tanh_mlp``, found
through its entry point) runs through ``dynamo population fit``, ``dynamo fit`` and
``dynamo analyze`` without any change to dynamo_lightning."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from paths import CONF, REPO

import dynamo_lightning as dl
from dynamo_lightning.cli import main

PLUGIN = REPO / "examples" / "dynamo_example_plugin"


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example package visible through its entry points, as if pip-installed, with the
    global architecture registry looking for entry points afresh (restored after)."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    info = tmp_path / "site" / "dynamo_example_plugin-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dynamo-example-plugin\n"
                                   "Version: 0.1.0\n")
    lines = []
    for group, entries in project["entry-points"].items():
        lines += [f"[{group}]", *(f"{k} = {v}" for k, v in entries.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(PLUGIN / "src"))
    registry = dl.architectures.REGISTRY
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    yield
    for name in [m for m in sys.modules if m.startswith("dynamo_example_plugin")]:
        del sys.modules[name]


def test_plugin_mlp_population_fit_and_report(installed_plugin: None, tmp_path: Path) -> None:
    config = {
        "seed_everything": 0,
        "trainer": {"max_steps": 3, "devices": 1, "logger": False, "enable_checkpointing": False,
                    "default_root_dir": str(tmp_path / "population_run"),
                    "enable_progress_bar": False, "enable_model_summary": False,
                    "val_check_interval": 3, "check_val_every_n_epoch": None},
        "model": {"architectures": ["tanh_mlp"], "hidden_sizes": [6], "seeds": [0, 1],
                  "architecture_options": {"tanh_mlp": {"n_layers": [1, 2]}}},
        "data": {"tasks": [{"name": "digits"}], "batch_size": 16, "steps_per_epoch": 3,
                 "val_batch_size": 32},
        "population": {"path": str(tmp_path / "population"), "eval_trials": 32}}
    (tmp_path / "population.yaml").write_text(yaml.safe_dump(config))
    assert main(["population", "fit", "--config", str(tmp_path / "population.yaml")]) == 0
    manifest = json.loads((tmp_path / "population" / "manifest.json").read_text())
    assert {m["architecture"] for m in manifest["members"]} == {"tanh_mlp"}
    assert sorted(m["metadata"]["n_layers"] for m in manifest["members"]) == [1, 1, 2, 2]

    assert main(["fit", "--config", str(CONF / "dynamo_tiny.yaml"),
                 f"--data.population={tmp_path / 'population'}",
                 f"--data.cache_dir={tmp_path / 'cache'}",
                 f"--trainer.default_root_dir={tmp_path / 'fit'}"]) == 0
    ckpt = tmp_path / "fit" / "checkpoints" / "last.ckpt"
    module = dl.DynamoModule.load_from_checkpoint(ckpt, map_location="cpu")
    assert type(module.meta).__name__ == "MetaCNN" and module.meta.stages == 2

    out = tmp_path / "report"
    assert main(["analyze", "--ckpt_path", str(ckpt), "--out", str(out), "--trials", "8",
                 "--steps", "3", "--similarity-trials", "8", "--baselines", "cka,weights",
                 "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["fixed_points"]["applies"] is False
    assert report["emulation"]["stages"]["median"] is not None
    assert report["interpolation"]["pairs"] and (out / "report.html").is_file()
