"""Every code block of README.md, CONTRIBUTING.md and docs/*.md runs as written, in order.

``test_blocks_run_as_written`` takes one Markdown file at a time and runs its blocks in
document order, from a fresh working directory laid out like the repository root after
``make demo``: ``runs/demo/population/`` and ``runs/demo/fit/checkpoints/last.ckpt`` come
from the session's tiny fit (the ``demo_layout`` fixture: four untrained 3-bit flip-flop
members, GRU, vanilla and LSTM of 8 units, and a 2-epoch fit of a meta-GRU of 8 units), and
``configs/``, ``examples/`` and ``.venv`` (the running interpreter's environment) are links.

- ``python`` blocks run in one namespace per file, in order (``exec``; tracebacks give the
  Markdown file's own line numbers).
- ``bash`` blocks: each command (``\\``-continued lines joined, comments dropped) runs in
  that directory and must exit with status 0:

  - ``dynamo ...`` runs in this process through ``dynamo_lightning.cli.main``, the console
    script's function (a fresh interpreter per line costs about 10 s of imports each). Outside
    ``docs/tutorial.md``, whose commands are tiny as written, the runner *appends* flags that
    make training and analysis tiny, and changes nothing else of what the user typed (a
    later flag wins, so an appended one overrides the same flag typed earlier):

    * ``dynamo fit|validate|test``: ``--trainer.max_epochs 1 --trainer.limit_train_batches 2
      --trainer.limit_val_batches 1 --trainer.limit_test_batches 1`` (the configs train 30
      epochs over 512 trials);
    * ``dynamo population fit``: ``--trainer.max_steps 2 --trainer.limit_val_batches 1
      --population.eval_trials 8`` (the configs train 1500 steps and score every member on
      512 trials);
    * ``dynamo analyze``: ``--trials 16 --inits-per-member 8 --max-iters 50 --steps 3
      --grid-resolution 2 --similarity-trials 8 --no-progress`` (the defaults search 3000
      iterations from 128 states per member along 11-point interpolations: minutes);
    * ``dynamo place``: ``--trials 16 --steps 5 --no-progress``;
    * ``dynamo demo``: ``--max-steps 2 --max-epochs 1``;

    and nothing to a line with ``--help`` or ``--print_config``. A line that asks for
    GPUs (``--trainer.accelerator gpu --trainer.devices N``) runs in a subprocess (a DDP
    launch starts processes of its own) when this machine has N CUDA devices; otherwise it
    is not run and a warning names it.
  - ``.venv/bin/python -c ...`` runs as a subprocess.
  - Not run: ``make ...`` lines (they build the venv and run the full demo or suite),
    installation lines (``pip install``, ``python -m pip install``) and ``pytest`` lines
    (the suite inside itself). Any other command fails the test, so that a new kind of
    command gets a decision here.

After the last block, the files that the blocks say they write (``WRITES``) must exist.

``text``, ``yaml`` and ``toml`` blocks are not run (output, file layouts, config excerpts);
``test_blocks_are_fenced_with_a_known_language`` fails on any other fence, a bare one
included. ``test_examples_define_what_they_use`` checks that each python block of README.md
and CONTRIBUTING.md (separate examples; the tutorial is one story) reads no name that only an
earlier block defines. ``test_docs_reference_only_the_repository`` fails on web links, links
to files that do not exist, and repository paths in backticks that are not there.

A block that fails because of a known gap is listed in ``KNOWN_FAILURES`` and turns the
file's test into an expected failure (``pytest.xfail``) with the reason.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from doc_blocks import ROOT, Block, Command, fenced_blocks, shell_commands, undefined_names

DOCS = ["README.md", "CONTRIBUTING.md",
        *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
RUN = {"python", "bash"}
NOT_RUN = {"text", "yaml", "toml"}
AS_WRITTEN = {"docs/tutorial.md", "docs/neurogym.md"}  # tiny as written: no flags appended
SELF_CONTAINED = ["README.md", "CONTRIBUTING.md"]  # each python block stands alone

TINY: dict[tuple[str, ...], list[str]] = {
    ("fit",): ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
               "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1"],
    ("population", "fit"): ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
                            "--population.eval_trials", "8"],
    ("analyze",): ["--trials", "16", "--inits-per-member", "8", "--max-iters", "50",
                   "--steps", "3", "--grid-resolution", "2", "--similarity-trials", "8",
                   "--no-progress"],
    ("place",): ["--trials", "16", "--steps", "5", "--no-progress"],
    ("demo",): ["--max-steps", "2", "--max-epochs", "1"],
}
TINY[("validate",)] = TINY[("test",)] = TINY[("fit",)]

WRITES = {  # what a file's blocks say they write, checked once they have all run
    "README.md": ["runs/population/flipflop/population/manifest.json", "runs/pop8/manifest.json",
                  "runs/dynamo/flipflop/version_0/checkpoints/last.ckpt",
                  "runs/dynamo/flipflop/version_0/report/report.html",
                  "runs/my_population/manifest.json",
                  "runs/demo/fit/placement/placement.json", "placement.png"],
    "docs/tutorial.md": ["runs/my_nets/manifest.json",
                         "runs/dynamo/my_nets/version_0/checkpoints/last.ckpt",
                         "runs/dynamo/my_nets/version_0/map.png", "my_map.png",
                         "runs/dynamo/my_nets/version_0/placement/placement.json"],
}

KNOWN_FAILURES: dict[tuple[str, str], str] = {
    # (file, text in the failing block): why — none now; keep the mechanism for a block
    # that documents an API gap on purpose
}


# ---------------------------------------------------------------------------------- runner
@pytest.fixture
def docs_workdir(demo_layout: Path, tmp_path: Path) -> Path:
    """A fresh folder laid out like the repository root after ``make demo``."""
    shutil.copytree(demo_layout / "runs", tmp_path / "runs")
    for name in ("configs", "examples"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return tmp_path


def tiny_argv(words: list[str]) -> list[str]:
    """A ``dynamo`` command's arguments with the flags that make it tiny appended."""
    args = words[1:]
    if {"--help", "-h", "--print_config"} & set(args):
        return args
    for command, flags in TINY.items():
        if tuple(args[: len(command)]) == command:
            return [*args, *flags]
    return args


def gpus_asked(words: list[str]) -> int:
    """How many CUDA devices a command asks for (0: none)."""
    def value(flag: str) -> str | None:
        for i, word in enumerate(words):
            if word == flag and i + 1 < len(words):
                return words[i + 1]
            if word.startswith(flag + "="):
                return word.split("=", 1)[1]
        return None

    if value("--trainer.accelerator") not in {"gpu", "cuda"}:
        return 0
    devices = value("--trainer.devices") or "1"
    return int(devices) if devices.isdigit() else 1


def run_dynamo(command: Command, argv: list[str]) -> int:
    """``dynamo <argv>`` in this process (or, for GPUs, a subprocess); its exit status."""
    gpus = gpus_asked(command.words)
    if gpus:
        if torch.cuda.device_count() < gpus:
            warnings.warn(f"line {command.line}: {command.text!r} needs {gpus} CUDA "
                          "device(s): not run here", UserWarning, stacklevel=2)
            return 0
        return subprocess.run([sys.executable, "-m", "dynamo_lightning.cli", *argv],
                              check=False).returncode
    from dynamo_lightning.cli import main

    try:
        return main(argv)
    except SystemExit as stop:  # --print_config and --help end with SystemExit(0)
        return stop.code if isinstance(stop.code, int) else int(stop.code is not None)


def run_command(command: Command, append_flags: bool) -> None:
    """Run one shell command of a block as the module docstring says (or leave it out)."""
    words = command.words
    program = Path(words[0]).name
    installs = "install" in words[:4] and (program in {"pip", "pip3"} or words[1:3] == ["-m",
                                                                                        "pip"])
    if program == "make" or installs or program == "pytest" or words[1:3] == ["-m", "pytest"]:
        return
    if program == "dynamo":
        status = run_dynamo(command, tiny_argv(words) if append_flags else words[1:])
    elif program.startswith("python") and words[1:2] == ["-c"]:
        status = subprocess.run(words, check=False).returncode
    else:
        pytest.fail(f"line {command.line}: the docs runner does not know how to run "
                    f"{command.text!r}; teach tests/test_docs.py (run it or say why not)")
    assert status == 0, f"line {command.line}: {command.text!r} exited with status {status}"


def run_block(markdown: str, block: Block, namespace: dict) -> None:
    if block.language == "python":
        code = compile("\n" * block.line + block.body, str(ROOT / markdown), "exec")
        exec(code, namespace)
    else:
        for command in shell_commands(block):
            run_command(command, append_flags=markdown not in AS_WRITTEN)


# ----------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("markdown", DOCS)
def test_blocks_run_as_written(markdown: str, docs_workdir: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(docs_workdir)
    namespace: dict = {"__name__": "__docs__"}
    try:
        for block in fenced_blocks(markdown):
            if block.language not in RUN:
                continue
            try:
                run_block(markdown, block, namespace)
            except Exception:
                for (where, text), reason in KNOWN_FAILURES.items():
                    if where == markdown and text in block.body:
                        pytest.xfail(reason)
                raise
    finally:
        plt.close("all")
    missing = [f for f in WRITES.get(markdown, []) if not (docs_workdir / f).is_file()]
    assert not missing, f"{markdown}: its blocks ran but did not write {missing}"


@pytest.mark.parametrize("markdown", DOCS)
def test_blocks_are_fenced_with_a_known_language(markdown: str) -> None:
    bad = [f"line {b.line}: {b.language or '(none)'}" for b in fenced_blocks(markdown)
           if b.language not in RUN | NOT_RUN]
    assert not bad, (f"{markdown}: fence blocks as python/bash (run by tests/test_docs.py) "
                     f"or text/yaml/toml (not run): {bad}")


@pytest.mark.parametrize("markdown", SELF_CONTAINED)
def test_examples_define_what_they_use(markdown: str) -> None:
    """Each python block of a file of separate examples runs on its own: it reads no name that
    only an earlier block defines (the run above shares one namespace, so it cannot tell)."""
    bad = {f"line {b.line}": sorted(undefined_names(b.body))
           for b in fenced_blocks(markdown) if b.language == "python"}
    bad = {where: names for where, names in bad.items() if names}
    assert not bad, f"{markdown}: blocks use names they do not define: {bad}"


_LINK = re.compile(r"\]\(([^)\s]+)\)")
_REPO_PATH = re.compile(r"`((?:configs|docs|dynamo_lightning|examples|tests|benchmarks|"
                        r"experiments)/[^`\s<>*{}]*)`")


@pytest.mark.parametrize("markdown", DOCS)
def test_docs_reference_only_the_repository(markdown: str) -> None:
    text = (ROOT / markdown).read_text(encoding="utf-8")
    here = (ROOT / markdown).parent
    outside = re.findall(r"(?:https?://|www\.)\S+", text)
    assert not outside, f"{markdown} links outside the repository: {outside}"
    for target in _LINK.findall(text):
        path = (here / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT) and path.exists(), f"{markdown}: broken link {target}"
    for target in _REPO_PATH.findall(text):
        assert (ROOT / target).exists(), f"{markdown}: `{target}` is not in the repository"


def test_runner_appends_only_the_tiny_flags() -> None:
    fit = ["dynamo", "fit", "--config", "configs/dynamo/flipflop.yaml"]
    assert tiny_argv(fit) == [*fit[1:], *TINY[("fit",)]]
    assert tiny_argv([*fit, "--print_config"]) == [*fit[1:], "--print_config"]
    assert tiny_argv(["dynamo", "population", "fit"]) == ["population", "fit",
                                                          *TINY[("population", "fit")]]
    assert gpus_asked([*fit, "--trainer.accelerator", "gpu", "--trainer.devices", "2"]) == 2
    assert gpus_asked(fit) == 0
