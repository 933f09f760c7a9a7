"""``dynamo place``: new networks placed on the map of a DYNAMO checkpoint.

    dynamo place --ckpt_path <run>/checkpoints/last.ckpt --population <dir of new members>

Fits θ for every member of ``--population`` (the meta-model frozen) on fresh trials of the
module's task, and writes into ``--out`` (default ``<run>/placement``): ``placement.json``
(θ's, nearest members, nearest group centre, the settings), ``placement.png`` (the map
with the new members as stars) and ``placement.md`` (the table that is also printed).
The placing itself is :func:`dynamo_lightning.analysis.placement.place`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from dynamo_lightning.checks import optional_positive_int
from dynamo_lightning.checks import seed as check_seed
from dynamo_lightning.cli.options import CommandParser, command_parser
from dynamo_lightning.cli.outputs import run_folder_of, writable_dir

PLACE_THREADS = 1
"""torch intra-op threads while placing (``--threads``). Each θ fit is hundreds of Adam steps
through the meta-model on one batch of trials: small ops, each a parallel region whose
threads must all get a core."""


class PlacementInputError(ValueError):
    """A checkpoint, population or output directory ``dynamo place`` cannot use."""


def place_main(argv: Sequence[str] = ()) -> int:
    """``dynamo place ...``; returns the exit status (unusable inputs raise a ``ValueError``
    that the command's error boundary reports on one line, status 2)."""
    args = _parser().parse_args(list(argv))
    out = run_placement(args.ckpt_path, args.population, args.out, trials=args.trials,
                        steps=args.steps, seed=args.seed, key=args.key,
                        use_hidden=not args.no_hidden, neighbours=args.neighbours,
                        progress=not args.no_progress, threads=args.threads)
    print((out / "placement.md").read_text(encoding="utf-8"))
    print(f"Placement written to {out} (placement.json, placement.png, placement.md)")
    return 0


def run_placement(ckpt: str | Path, population: str | Path, out: str | Path | None = None,
                  threads: int | None = PLACE_THREADS, **settings: Any) -> Path:
    """Load ``ckpt`` and the new ``population``, place it, write the three files to ``out``.

    Args:
        ckpt: a ``DynamoModule`` checkpoint.
        population: the directory of the members to place.
        out: output directory; None: ``placement/`` in the checkpoint's run directory.
        threads: torch intra-op threads while placing (restored after; None: unchanged).
        **settings: :func:`~dynamo_lightning.analysis.placement.place` keywords.

    Returns:
        ``out`` as a ``Path``.

    Raises:
        PlacementInputError: a missing or unreadable checkpoint, a directory that is not a
            population, members the module cannot take, a bad setting or an unwritable
            ``out`` — all found before any fitting.
    """
    from dynamo_lightning.analysis.placement import check_placeable, place
    from dynamo_lightning.analysis.placement_figure import placement_figure
    from dynamo_lightning.analysis.report.timing import threads as intra_op_threads
    from dynamo_lightning.population import Population

    ckpt = Path(ckpt)
    module = load_module(ckpt)
    try:
        optional_positive_int("threads", threads)
        if "seed" in settings:
            check_seed("seed", settings["seed"])
        pop = Population.load(Path(population).expanduser())
        check_placeable(module, pop, settings.get("key", "task"),
                        **{k: settings[k] for k in ("trials", "steps", "neighbours")
                           if k in settings})
    except ValueError as err:
        raise PlacementInputError(str(err)) from None
    out = writable_dir(run_folder_of(ckpt) / "placement" if out is None else out, "--out")
    with intra_op_threads(threads):
        placement = place(module, pop, **settings)
    record = {"checkpoint": str(ckpt), "population": str(population),
              "settings": {k: v for k, v in settings.items() if k != "progress"},
              **placement.to_dict()}
    (out / "placement.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    fig = placement_figure(module.embeddings(), module.member_metadata, placement,
                           key=placement.key)
    try:
        fig.savefig(out / "placement.png", dpi=120)
    finally:
        plt.close(fig)
    (out / "placement.md").write_text(_markdown(placement, ckpt), encoding="utf-8")
    return out


def load_module(ckpt: Path) -> Any:
    """The ``DynamoModule`` of ``ckpt``, on the CPU, in eval mode.

    Raises:
        CheckpointError: no file there, or one that is not a DynamoModule checkpoint.
    """
    from dynamo_lightning.cli.warnings import quiet_known_warnings
    from dynamo_lightning.module import load_module as load_checkpoint

    quiet_known_warnings()
    return load_checkpoint(ckpt)


def _markdown(placement: Any, ckpt: Path) -> str:
    score = placement.fraction_correct
    summary = ("" if score is None else
               f" Nearest centre is the member's own {placement.key}: {100 * score:.0f}%.")
    if len(placement.groups) < 2:
        summary = (f" The map has one {placement.key} group ({', '.join(placement.groups)}), "
                   "so the nearest centre says nothing about a member's group.")
    return (f"# Placement on {ckpt}\n\n{len(placement.ids)} member(s) placed; distances in "
            f"θ-space (map diameter {placement.diameter:.3g}).{summary}\n\n"
            f"{placement.to_markdown()}\n")


def _parser() -> CommandParser:
    parser = command_parser("dynamo place", __doc__)
    parser.add_argument("--ckpt_path", "--ckpt", required=True,
                        help="DynamoModule checkpoint (last.ckpt)")
    parser.add_argument("--population", required=True,
                        help="directory of the members to place (a saved population)")
    parser.add_argument("--out", default=None,
                        help="output directory (default: <run>/placement)")
    parser.add_argument("--trials", type=int, default=256,
                        help="trials of the module's task each member is run on")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps of each θ fit")
    parser.add_argument("--seed", type=int, default=0, help="seed of the trials")
    parser.add_argument("--key", default="task",
                        help="metadata key whose groups' centres are compared")
    parser.add_argument("--neighbours", type=int, default=3,
                        help="nearest fitted members reported per new member")
    parser.add_argument("--threads", type=int, default=PLACE_THREADS,
                        help="torch intra-op threads while placing, restored after (small "
                             "ops: 1 is usually fastest, and far faster on a shared machine)")
    parser.add_argument("--no_hidden", "--no-hidden", action="store_true",
                        help="fit θ to the outputs only, not the hidden states")
    parser.add_argument("--no_progress", "--no-progress", action="store_true",
                        help="no progress bar")
    return parser
