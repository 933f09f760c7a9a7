"""``dynamo analyze``: the analysis report of a DYNAMO checkpoint.

    dynamo analyze --ckpt_path <run>/checkpoints/last.ckpt      # writes <run>/report/

Loads the module and the population it was fitted on (the path recorded in the checkpoint,
or ``--population``), runs one test pass for the per-member emulation scores with a
``TrajectoryDataModule`` rebuilt from the checkpoint's data hyper-parameters, then writes
``report.json``, the PNGs and a self-contained ``report.html`` into ``--out`` (default:
``report/`` in the checkpoint's run folder; :func:`dynamo_lightning.analysis.write_report`;
schema in ``docs/report.md``). The test pass runs on ``--threads`` intra-op threads, as the
searches do (default 1): with torch's one thread per core it ran at 0.6 it/s instead of
about 45 it/s on a 2-core machine that had other work running.

This is the Lightning side of the report (loading, the test pass); the report itself is
computed in ``analysis/report/``, which never imports Lightning.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dynamo_lightning.cli.options import CommandParser, command_parser
from dynamo_lightning.cli.outputs import run_folder_of, writable_dir


class AnalysisInputError(ValueError):
    """A checkpoint or population that ``dynamo analyze`` cannot use (one clear line)."""


def analyze_main(argv: Sequence[str] = ()) -> int:
    """``dynamo analyze ...``; returns the exit status (unusable inputs raise a
    ``ValueError`` that the command's error boundary reports on one line, status 2)."""
    parser = _parser()
    args = parser.parse_args(list(argv))
    from dynamo_lightning.analysis.report.pairs import parse_pairs

    try:
        pairs = parse_pairs(args.pairs)
    except ValueError as err:
        parser.error(str(err))
    out = run_analysis(args.ckpt_path, args.out, population=args.population,
                       test=not args.no_test, trials=args.trials,
                       inits_per_member=args.inits_per_member, pairs=pairs,
                       steps=args.steps, grid_resolution=args.grid_resolution,
                       seed=args.seed, max_iters=args.max_iters,
                       threads=args.threads, progress=not args.no_progress,
                       device=args.device, baselines=args.baselines,
                       similarity_trials=args.similarity_trials,
                       averaging=not args.no_averaging)
    print(f"Report written to {out / 'report.html'} (data: {out / 'report.json'})")
    return 0


def run_analysis(ckpt: str | Path, out: str | Path | None = None,
                 population: str | Path | None = None,
                 scores: dict[str, list[float]] | None = None, test: bool = True,
                 device: str = "cpu", **options: Any) -> Path:
    """Load ``ckpt`` and its population, get emulation scores, write the report to ``out``.

    Args:
        ckpt: a ``DynamoModule`` checkpoint.
        out: the report directory; None: ``report/`` in the checkpoint's run folder.
        population: the population's directory when it is no longer where the checkpoint
            says it was.
        scores: precomputed per-member test scores (``module.member_scores``): skips the
            test pass (``dynamo demo`` passes the scores of the test it just ran).
        test: run the test pass when ``scores`` is None (else the report has no scores).
        device: where the fixed-point searches and interpolations run (``"cpu"``,
            ``"cuda"``, ``"cuda:1"``, ...). The CPU default keeps reports comparable across
            machines; a GPU pays off for large populations and grids.
        **options: :class:`~dynamo_lightning.analysis.report.ReportOptions` fields.

    Returns:
        ``out`` as a ``Path``.

    Raises:
        AnalysisInputError: a missing checkpoint, a population that moved (and no
            ``population``), or a population that is not the one the module was fitted on.
    """
    from dynamo_lightning.analysis.report import write_report
    from dynamo_lightning.analysis.report.compute import make_options
    from dynamo_lightning.analysis.report.memory_check import check_report
    from dynamo_lightning.analysis.report.pairs import resolve_pairs
    from dynamo_lightning.analysis.report.timing import threads as intra_op_threads
    from dynamo_lightning.data.memory_check import check_population_dir
    from dynamo_lightning.module import load_module

    ckpt = Path(ckpt)
    out = run_folder_of(ckpt) / "report" if out is None else Path(out)
    try:
        target = torch.device(device)
        if target.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("no CUDA device is available")
    except RuntimeError as err:
        raise AnalysisInputError(f"--device {device}: {err}") from None
    module = load_module(ckpt)
    pop_dir = population_dir(module, population)
    check_population_dir(pop_dir)  # pre-flight memory checks: the members, then the report
    pop = _load_population(module, pop_dir)
    try:  # bad options and outputs fail here, before the test pass, not after it
        report_options = make_options(options)
        threads = report_options.threads
        pairs = resolve_pairs(options.get("pairs", "auto"), module.member_ids,
                              module.member_metadata)
        writable_dir(out, "--out")
    except ValueError as err:
        raise AnalysisInputError(str(err)) from None
    check_report(module, pop, report_options, len(pairs), target)
    if scores is None and test:  # on the searches' threads: small ops too (see --threads)
        with intra_op_threads(threads):
            scores = emulation_scores(module, ckpt, pop_dir,
                                      progress=options.get("progress", True))
    module.to(target)
    pop.to(target)
    return write_report(module, pop, out, scores=scores, checkpoint=str(ckpt), **options)


def population_dir(module: Any, override: str | Path | None = None) -> Path:
    """The population's directory: ``override``, else the path the checkpoint recorded.

    Raises:
        AnalysisInputError: the directory has no ``manifest.json`` (moved or deleted).
    """
    recorded = module.hparams.get("population_path")
    if override is not None:
        path = Path(override).expanduser()
        if not (path / "manifest.json").is_file():
            raise AnalysisInputError(f"--population {path}: no population there "
                                     "(manifest.json not found)")
        return path
    if not recorded:
        raise AnalysisInputError("the checkpoint records no population path; pass the "
                                 "population it was fitted on with --population <dir>")
    path = Path(recorded)
    if not (path / "manifest.json").is_file():
        raise AnalysisInputError(
            f"the population this checkpoint was fitted on is not at {path} any more "
            f"(moved or deleted?); pass its new location with --population <dir>")
    return path


def _load_population(module: Any, path: Path) -> Any:
    from dynamo_lightning.population import Population

    pop = Population.load(path)
    if pop.ids != module.member_ids:
        raise AnalysisInputError(f"the population at {path} has members {pop.ids[:3]}... "
                                 f"({len(pop)}), but the checkpoint was fitted on "
                                 f"{module.member_ids[:3]}... ({len(module.member_ids)})")
    expected = module.hparams.get("population_checksum")
    if expected and pop.checksum != expected:
        raise AnalysisInputError(f"the population at {path} has checksum "
                                 f"{pop.checksum[:12]}…, but the checkpoint was fitted on "
                                 f"{expected[:12]}… (same ids, other weights)")
    return pop


def emulation_scores(module: Any, ckpt: Path, population: Path, progress: bool = True
                ) -> dict[str, list[float]]:
    """One ``trainer.test`` pass; returns ``module.member_scores``.

    The data module is rebuilt from the checkpoint's ``datamodule_hyper_parameters`` (same
    trials, same cache), pointed at ``population``; checkpoints without them get one built
    from the module's own record (task spec, k) with default trial counts.
    """
    import lightning.pytorch as pl

    from dynamo_lightning.cli.warnings import quiet_known_warnings
    from dynamo_lightning.data import TrajectoryDataModule

    quiet_known_warnings()
    hparams = _datamodule_hparams(ckpt)
    accepted = inspect.signature(TrajectoryDataModule.__init__).parameters
    kwargs = {k: v for k, v in hparams.items() if k in accepted}
    if not kwargs:
        kwargs = {"task": module.hparams.get("task_spec"),
                  "num_components": module.hparams.get("num_components")}
    kwargs["population"] = str(population)
    datamodule = TrajectoryDataModule(**kwargs)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=progress, devices=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trainer.test(module, datamodule=datamodule, verbose=False)
    return dict(module.member_scores)


def _datamodule_hparams(ckpt: Path) -> dict[str, Any]:
    """The checkpoint's ``datamodule_hyper_parameters`` ({} when absent or unreadable
    without unpickling code)."""
    from dynamo_lightning.module import read_checkpoint

    return dict(read_checkpoint(ckpt).get("datamodule_hyper_parameters") or {})


def _parser() -> CommandParser:
    parser = command_parser("dynamo analyze", __doc__)
    parser.add_argument("--ckpt_path", "--ckpt", required=True,
                        help="DynamoModule checkpoint (last.ckpt)")
    parser.add_argument("--out", default=None,
                        help="report directory (default: <run>/report, beside the checkpoints/ "
                             "folder of --ckpt_path)")
    parser.add_argument("--population", default=None,
                        help="population directory, if it moved since the fit")
    parser.add_argument("--trials", type=int, default=256,
                        help="test trials scored at every θ along an interpolation")
    parser.add_argument("--inits_per_member", "--inits-per-member", type=int, default=128,
                        help="initial states per member (and per θ_n) for fixed points")
    parser.add_argument("--pairs", default="auto",
                        help="member pairs to interpolate: auto | none | a:b,c:d (ids or "
                             "indices)")
    parser.add_argument("--steps", type=int, default=11, help="points per interpolation")
    parser.add_argument("--grid_resolution", "--grid-resolution", type=int, default=7,
                        help="topology map of a 2-D map: grid points a side (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_iters", "--max-iters", type=int, default=3000,
                        help="iterations of each fixed-point search")
    parser.add_argument("--device", default="cpu",
                        help="where the searches run: cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for the test pass and the searches "
                             "(small ops: 1 is usually fastest, and far faster on a "
                             "shared machine)")
    parser.add_argument("--baselines", default="all",
                        help="similarity baselines beside the map: all | none | a comma list "
                             "of cka, procrustes, weights, dsa (dsa needs the [baselines] "
                             "extra)")
    parser.add_argument("--similarity_trials", "--similarity-trials", type=int, default=64,
                        help="test trials each baseline runs the members on")
    parser.add_argument("--no_averaging", "--no-averaging", action="store_true",
                        help="skip the model-averaging section")
    parser.add_argument("--no_test", "--no-test", action="store_true",
                        help="skip the test pass (the report then has no emulation scores)")
    parser.add_argument("--no_progress", "--no-progress", action="store_true",
                        help="no progress bars")
    return parser
