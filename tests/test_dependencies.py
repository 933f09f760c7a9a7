"""pyproject's dependencies are exactly what the package imports (plus the one it uses only
through another package, named here with the reason)."""

from __future__ import annotations

import ast
import re
import sys

import pytest
from paths import REPO

tomllib = pytest.importorskip("tomllib")

IMPORT_NAME = {"scikit-learn": "sklearn", "umap-learn": "umap", "PyYAML": "yaml"}
USED_INDIRECTLY = {
    "tensorboard": "Lightning's TensorBoardLogger, chosen by configs/logger/tensorboard.yaml",
}


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0] for spec in project["dependencies"]}
    return {IMPORT_NAME.get(name, name) for name in names}


def imported() -> set[str]:
    found = set()
    for path in (REPO / "dynamo_lightning").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    # DSA: the optional [baselines] extra. triton: optional, it comes with torch's CUDA
    # builds; without it the fused recurrence (population/architectures) is simply off.
    return {name for name in found
            if name not in sys.stdlib_module_names
            and name not in ("dynamo_lightning", "DSA", "triton")}


def test_dependencies_are_what_the_package_imports() -> None:
    assert declared() - set(USED_INDIRECTLY) == imported()
