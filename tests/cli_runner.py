"""``dynamo`` run inside the test process, seen as a subprocess would see it: the exit
status, stdout and stderr. The bad-input matrices run most of their cases this way (a fresh
process costs seconds of imports each) and a few as real subprocesses, which prove the same
at the process level."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout

from dynamo_lightning.cli import main

__all__ = ["run_dynamo", "run_dynamo_process"]


def run_dynamo(argv: Sequence[str], cwd: str | os.PathLike | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``dynamo *argv`` in this process (cwd and environment restored after). A bug, an
    exception that is not a user's error, propagates, as a traceback would end a process."""
    out, err = io.StringIO(), io.StringIO()
    here, saved = os.getcwd(), dict(os.environ)
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as stop:  # the parsers exit with status 2 themselves
                code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["dynamo", *argv], code, out.getvalue(), err.getvalue())


def run_dynamo_process(argv: Sequence[str], cwd: str | os.PathLike | None = None,
                       env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``dynamo *argv`` in a fresh Python process."""
    return subprocess.run([sys.executable, "-m", "dynamo_lightning.cli", *argv], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=600)
