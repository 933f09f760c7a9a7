"""The LightningCLI runs: ``dynamo population fit|validate`` and ``dynamo fit|validate|test``.

Every run is a plain LightningCLI: all Trainer flags work and the resolved config is saved
with the run. ``dynamo demo`` and the experiments call the same runners with a config dict.
There is no ``--optimizer``/``--lr_scheduler``: both modules configure their own (the
meta-model and θ learn at two rates on one schedule; population members are clipped one by
one), so those flags are refused instead of silently dropping that; set ``model.optim.*``
(or ``model.lr``) instead. The project's callbacks are imported here, so a config can name
them by their short class name (``class_path: LastCheckpoint``).
"""

from __future__ import annotations

import glob
import inspect
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info

import dynamo_lightning.callbacks  # noqa: F401  (short class names in configs)
from dynamo_lightning.callbacks import RunProgressBar
from dynamo_lightning.cli.config_files import guard_yaml_loading
from dynamo_lightning.cli.errors import OneLineErrors, one_line
from dynamo_lightning.cli.outputs import check_run_outputs
from dynamo_lightning.cli.resume_flags import changed_model_settings
from dynamo_lightning.cli.run_folders import (
    find_last_checkpoint,
    resume_run,
    run_root,
    settle_root,
)
from dynamo_lightning.cli.trainer_flags import check_trainer_flags
from dynamo_lightning.cli.warnings import quiet_known_warnings
from dynamo_lightning.data import TrajectoryDataModule
from dynamo_lightning.module import DynamoModule, read_checkpoint
from dynamo_lightning.module.checkpoints import check_population
from dynamo_lightning.module.config import check_schedule_length
from dynamo_lightning.population.datamodule import TaskDataModule
from dynamo_lightning.population.training import PopulationModule
from dynamo_lightning.population.writer import PopulationWriter

# Sizes and the population's identity are read from the data module and written once.
DATA_TO_MODEL = ("num_members", "input_size", "output_size", "num_components", "output_kind",
                 "member_ids", "member_metadata", "population_path", "population_checksum",
                 "task_spec")

# The shared base of every dynamo fit/validate/test run (parser defaults, below any --config).
DYNAMO_BASE = Path(__file__).resolve().parent / "defaults" / "dynamo_fit.yaml"
DYNAMO_SUBCOMMANDS = ("fit", "validate", "test")
CHECKPOINT_KEYWORDS = ("last", "best", "hpc", "registry")
MatmulPrecision = Literal["highest", "high", "medium"]
"""``--ckpt_path`` values that Lightning resolves itself (not file paths)."""


TRAINER_FLAGS = frozenset(inspect.signature(Trainer.__init__).parameters) - {"self"}
_FIRST_FLAG = re.compile(r"`(?:Trainer\()?(?P<flag>\w+)")


class TrainerFlagError(ValueError):
    """A Trainer flag that Lightning refused as it built the Trainer (one line, status 2)."""


class OneLineParser(OneLineErrors, LightningArgumentParser):
    """The LightningCLI parser with a bad config or flag reported on one line (status 2),
    like every other user error; the usage stays behind ``--help``; abbreviated flags are
    refused (:class:`~.errors.OneLineErrors`)."""


class LoggedConfig(SaveConfigCallback):
    """Saves the resolved config beside the run (as LightningCLI does) and logs it to every
    attached logger too, under ``config``: the trainer settings and the seed with the model
    and data, so a W&B or TensorBoard run records how it was made."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = json.loads(self.parser.dump(self.config, skip_none=False, format="json"))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})


class SafeCheckpointCLI(LightningCLI):
    """A LightningCLI that checks before it runs: a ``--ckpt_path`` file is read as data
    first (one clear error for a missing, truncated or foreign file) and loads with
    ``weights_only=True`` unless the user sets ``--weights_only`` (a planted pickle never
    runs, whatever torch's default); a fit's output folders are writable."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--float32_matmul_precision", type=MatmulPrecision, default=None,
            help="torch.set_float32_matmul_precision for this run, restored after it: 'high' "
                 "lets float32 matmuls and the fused population kernels use TF32 on a GPU "
                 "(unset: leave torch's setting as it is)")

    def _run_subcommand(self, subcommand: str) -> None:
        precision = self.config[subcommand].get("float32_matmul_precision")
        before = torch.get_float32_matmul_precision()
        if precision:
            torch.set_float32_matmul_precision(precision)
        try:
            super()._run_subcommand(subcommand)
        finally:
            torch.set_float32_matmul_precision(before)

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """LightningCLI's core arguments, the module's and the data's before the Trainer's:
        ``--help`` lists the options of this package first, Lightning's ~60 flags after."""
        parser.add_lightning_class_args(self._model_class, "model",
                                        subclass_mode=self.subclass_mode_model)
        parser.add_lightning_class_args(self._datamodule_class, "data",
                                        subclass_mode=self.subclass_mode_data)
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({f"trainer.{k}": v for k, v in self.trainer_defaults.items()
                             if k != "callbacks"})

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if kwargs.get("weights_only", False) is None:
            kwargs["weights_only"] = True
        return kwargs

    def _parse_ckpt_path(self) -> None:
        """The first hook after parsing: settle the run's folders
        (``${trainer.default_root_dir}`` in logger and callback arguments; ``--ckpt_path
        last`` becomes the newest run's ``last.ckpt``; see ``run_folders``). LightningCLI
        then reads the checkpoint's hyper-parameters into the config: read it as data first,
        so that a bad file is one clear error."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        check_trainer_flags(config["trainer"])  # before the model and data are built
        settle_root(config["trainer"])
        if str(config.get("ckpt_path")) == "last":
            config["ckpt_path"] = self._last_checkpoint(config, subcommand)
        ckpt = config.get("ckpt_path")
        self.checkpoint_hparams: dict[str, Any] = {}
        if ckpt and str(ckpt) not in CHECKPOINT_KEYWORDS:
            self.checkpoint_hparams = dict(read_checkpoint(ckpt)["hyper_parameters"] or {})
        given = config.get("model")
        given = given.clone() if hasattr(given, "clone") else given
        super()._parse_ckpt_path()
        if self.checkpoint_hparams:
            defaults = self._parser(subcommand).get_defaults().get("model")
            changed = changed_model_settings(given, defaults, self.checkpoint_hparams,
                                             DATA_TO_MODEL)
            if changed:
                raise ValueError(
                    f"--ckpt_path {ckpt} runs the checkpoint's model, but "
                    f"{'; '.join(changed)} differs from it; leave the setting out to resume, "
                    "or start a new run without --ckpt_path")

    @staticmethod
    def _last_checkpoint(config: Any, subcommand: str) -> str | None:
        """``--ckpt_path last``: the newest run's ``last.ckpt`` below the run root; a fit
        with none starts a new run, another subcommand has nothing to load."""
        root = run_root(config["trainer"])
        found = find_last_checkpoint(root)
        if found is None:
            if subcommand != "fit":
                raise ValueError(f"--ckpt_path last: no run below {root} has a "
                                 "checkpoints/last.ckpt (give the checkpoint's path)")
            rank_zero_info(f"--ckpt_path last: no earlier run below {root}; starting a new one")
            return None
        resume_run(config["trainer"], found)
        rank_zero_info(f"--ckpt_path last: {found}")
        return str(found)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer; Lightning's refusal of a flag is one line naming the Trainer
        (``MisconfigurationException``, ``ValueError``, and a ``TypeError`` that names a
        flag, e.g. ``--trainer.devices -1`` on a CPU). Any other error is a bug: kept."""
        try:
            return readable_progress_bar(super().instantiate_trainer(**kwargs))
        except (MisconfigurationException, ValueError) as err:
            raise TrainerFlagError(f"trainer flags: {one_line(err)}") from err
        except TypeError as err:
            flag = _FIRST_FLAG.search(str(err))
            if flag is None or flag["flag"] not in TRAINER_FLAGS:
                raise
            raise TrainerFlagError(f"trainer.{flag['flag']}: {one_line(err)}") from err

    def before_fit(self) -> None:
        self.before_run()
        check_run_outputs(self.trainer)

    def before_validate(self) -> None:
        self.before_run()

    def before_test(self) -> None:
        self.before_run()

    def before_run(self) -> None:
        """Checks every subcommand makes before it runs (subclasses add theirs)."""


class PopulationCLI(SafeCheckpointCLI):
    """LightningCLI for population training; adds the ``population:`` writer section and
    links ``data.tasks`` to ``model.tasks`` so the task list is written once."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(PopulationWriter, "population")
        parser.link_arguments("data.tasks", "model.tasks", apply_on="parse")


class DynamoCLI(SafeCheckpointCLI):
    """LightningCLI for the meta-model; links the data module's sizes into the model, and
    with ``--ckpt_path`` refuses a checkpoint fitted on other members (the population's
    checksum) unless ``--allow_population_change true``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        for name in DATA_TO_MODEL:
            parser.link_arguments(f"data.{name}", f"model.{name}", apply_on="instantiate")
        parser.add_argument(
            "--allow_population_change", type=bool, default=False,
            help="with --ckpt_path: go on although the population's members changed since "
                 "the checkpoint was fitted (its checksum differs)")

    def before_fit(self) -> None:
        """Also refuse a decaying schedule over a run of no set length before the
        trajectories are computed (``configure_optimizers`` would, after them)."""
        check_schedule_length(self.model.hparams.optim.get("schedule", "none"),
                              self.trainer.max_epochs, self.trainer.max_steps)
        super().before_fit()

    def before_run(self) -> None:
        """Refuse a ``--ckpt_path`` fitted on other members now, before the trajectories of
        this population are computed (minutes at tens of members), not after."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        allow = bool(config.get("allow_population_change"))
        self.model.allow_population_change = allow
        recorded = getattr(self, "checkpoint_hparams", {}).get("population_checksum")
        check_population(recorded, self.datamodule.population_checksum,
                         self.datamodule.population_path, allow)


def readable_progress_bar(trainer: Trainer) -> Trainer:
    """``trainer`` with Lightning's default rich bar (none configured) replaced by
    :class:`~dynamo_lightning.callbacks.RunProgressBar`, whose epoch count a run limited by
    ``max_steps`` can read."""
    bar = trainer.progress_bar_callback
    if type(bar) is RichProgressBar:
        trainer.callbacks[trainer.callbacks.index(bar)] = RunProgressBar()
    return trainer


def dynamo_main(args: Sequence[str] | dict[str, Any]) -> DynamoCLI:
    """``dynamo <fit|validate|test> ...``; ``args`` may be a config dict ``{"fit": {...}}``.
    Either way the shared base ``DYNAMO_BASE`` lies below it (``subcommand_defaults``)."""
    quiet_known_warnings()
    guard_yaml_loading()
    return DynamoCLI(DynamoModule, TrajectoryDataModule, parser_class=OneLineParser,
                     auto_configure_optimizers=False, save_config_callback=LoggedConfig,
                     args=args if isinstance(args, dict) else list(args),
                     save_config_kwargs={"overwrite": True},
                     parser_kwargs={"prog": "dynamo",
                                    **subcommand_defaults(DYNAMO_BASE, DYNAMO_SUBCOMMANDS)})


def subcommand_defaults(base: Path, subcommands: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each subcommand parser's own kwargs (a fresh dict each: LightningCLI adds to them):
    ``base`` as its default config file (escaped: jsonargparse globs the name)."""
    return {name: {"default_config_files": [glob.escape(str(base))],
                   "usage": SHORT_USAGE.format(name=name)} for name in subcommands}


SHORT_USAGE = ("dynamo {name} [--config FILE ...] [--print_config] [--model.<option> VALUE ...]\n"
               "       [--data.<option> VALUE ...] [--trainer.<flag> VALUE ...] "
               "[--ckpt_path PATH]")
"""The usage line of a LightningCLI subcommand: jsonargparse's lists every one of the ~150
options (170 lines before the first description); the options follow it, the module's and
the data's first."""


def population_main(args: Sequence[str] | dict[str, Any]) -> PopulationCLI:
    """``dynamo population <fit|validate> ...``; ``args`` may also be a config dict
    ``{"fit": {...}}`` (how ``dynamo demo`` calls it)."""
    quiet_known_warnings()
    guard_yaml_loading()
    return PopulationCLI(PopulationModule, TaskDataModule, parser_class=OneLineParser,
                         auto_configure_optimizers=False, save_config_callback=LoggedConfig,
                         args=args if isinstance(args, dict) else list(args),
                         save_config_kwargs={"overwrite": True},
                         parser_kwargs={"prog": "dynamo population",
                                        **{name: {"usage": SHORT_USAGE.format(
                                            name=f"population {name}")}
                                           for name in ("fit", "validate")}})
