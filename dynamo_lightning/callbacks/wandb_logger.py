"""A WandbLogger that runs offline unless W&B credentials are present.

Used by ``configs/logger/wandb.yaml`` so that the same config works on a laptop without an
account (the run is written under ``<save_dir>/wandb/offline-run-*``; upload it later with
``wandb sync``) and on a machine that has run ``wandb login`` or sets ``WANDB_API_KEY``.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

__all__ = ["DynamoWandbLogger", "wandb_credentials_available"]

_DEFAULT_HOST = "https://api.wandb.ai"


class DynamoWandbLogger(WandbLogger):
    """:class:`~lightning.pytorch.loggers.WandbLogger` whose ``offline`` default is decided at
    run time: offline unless an API key is available, so no run ever blocks on a login prompt.

    Args:
        project: W&B project name.
        offline: ``True``/``False`` to force a mode; ``None`` (default) runs online only when
            :func:`wandb_credentials_available` finds a key (``WANDB_API_KEY`` or the netrc
            entry that ``wandb login`` writes). No network call is made to decide.
        log_model: Store checkpoints as W&B artifacts of type ``model`` (``True``: the
            checkpoints at the end of a successful fit; ``"all"``: each as it is written;
            ``False``: none). Offline too: the artifact is part of the offline run and
            uploaded by ``wandb sync`` (Lightning's own ``WandbLogger`` refuses this). The
            checkpoint files stay in the run's folder either way.
        save_dir: Folder that holds the ``wandb/`` run directory and, per run,
            ``<save_dir>/<run id>/`` (its config copy, checkpoints, figures and tables; see
            ``save_dir``).
        log_population: Also store the population directory the run was fitted on as a W&B
            artifact (type ``population``, named by its checksum), once per run. Works offline
            too: the artifact is uploaded with ``wandb sync``.
        **kwargs: Everything else :class:`~lightning.pytorch.loggers.WandbLogger` accepts
            (``name``, ``entity``, ``tags``, ``group``, ...).

    Example::

        trainer = Trainer(logger=DynamoWandbLogger(save_dir="runs/flipflop"))
    """

    def __init__(
        self,
        project: str = "dynamo-lightning",
        offline: bool | None = None,
        log_model: Literal["all"] | bool = False,
        save_dir: str | Path = ".",
        log_population: bool = False,
        **kwargs: Any,
    ) -> None:
        self._log_population = log_population
        self._population_logged = False
        if offline is None:
            offline = not wandb_credentials_available()
            if offline:
                rank_zero_info("W&B: no API key found, logging offline (upload later with "
                               "`wandb sync`)")
        # WandbLogger refuses log_model offline; W&B itself keeps offline artifacts for sync.
        # An absolute folder: W&B's service process, started once per Python process, reads
        # a relative one against its own working directory, not the caller's (the tests ran
        # the README's W&B line in a scratch folder and found runs/.../wandb in the repo).
        super().__init__(project=project, offline=offline, log_model=False,
                         save_dir=str(Path(save_dir).expanduser().resolve()), **kwargs)
        self._log_model = log_model


    @property
    def save_dir(self) -> str | None:
        """This run's own folder, ``<save_dir>/<run id>``: what Lightning takes for the run's
        log dir (the config copy) and the callbacks for their figures and tables, so two runs
        sharing ``save_dir`` never overwrite each other's files (W&B's own files stay in
        ``<save_dir>/wandb/``). Asking for it starts the W&B run on rank 0."""
        base = self._save_dir
        if base is None or rank_zero_only.rank != 0:
            return base
        _ = self.experiment  # the run's id names the folder
        return str(Path(base) / str(self.version))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Log hyperparameters; with ``log_population``, also the population as an artifact."""
        super().log_hyperparams(params, *args, **kwargs)
        values = params if isinstance(params, dict) else vars(params)
        path = values.get("population_path")
        if not (self._log_population and path and not self._population_logged):
            return
        import wandb

        checksum = str(values.get("population_checksum") or "unknown")
        artifact = wandb.Artifact(f"population-{checksum[:16]}", type="population",
                                  metadata={"path": str(path), "checksum": checksum})
        artifact.add_dir(str(path))
        self.experiment.log_artifact(artifact)
        self._population_logged = True


def wandb_credentials_available() -> bool:
    """Whether W&B has an API key: ``WANDB_API_KEY`` is set, or the netrc file (``NETRC`` or
    ``~/.netrc``) has an entry for the W&B host (``WANDB_BASE_URL``, default api.wandb.ai).

    Reads only local files; never contacts the server.
    """
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL", _DEFAULT_HOST)).netloc
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc")).expanduser()
    try:
        entry = netrc.netrc(path).authenticators(host) if host else None
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])
