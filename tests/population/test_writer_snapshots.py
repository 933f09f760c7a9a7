"""A snapshot step the run never reaches is refused before training, not dropped."""

from __future__ import annotations

from pathlib import Path

from paths import CONF

from dynamo_lightning.cli import main


def test_a_snapshot_step_past_the_last_step_is_refused(tmp_path: Path, capsys) -> None:
    code = main(["population", "fit", "--config", str(CONF / "population_tiny.yaml"),
                 f"--trainer.default_root_dir={tmp_path}",
                 f"--population.path={tmp_path / 'population'}",
                 "--population.snapshot_steps=[0, 3, 50]"])
    assert code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "snapshot_steps [50] lie past the run's last step (6" in line
    assert not (tmp_path / "population").exists()
