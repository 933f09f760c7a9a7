"""neurogym's cognitive tasks (e.g. the 20 ``yang19.*`` envs of Yang et al. 2019) as a task.

The envs are neurogym's own, used as they are (``neurogym_envs.py`` makes them and draws
trials); this module pads the trials of one or several envs to one length and scores them.
Needs the ``neurogym`` extra: ``pip install 'dynamo-lightning[neurogym]'``.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dynamo_lightning.checks import optional_positive_int, positive_real
from dynamo_lightning.tasks.base import Split, Task, new_generator
from dynamo_lightning.tasks.neurogym_envs import TrialSource, resolved_seq_len
from dynamo_lightning.tasks.registry import register

__all__ = ["DECISION", "DEFAULT_DT", "PAD", "POST", "PRE", "NeurogymTask", "trial_outcomes"]

DEFAULT_DT = 100
"""neurogym's own default time step (ms) of its envs, the yang19 ones included."""
PRE, DECISION, POST, PAD = 0, 1, 2, -1
"""Period codes of ``targets[..., 1]``: before the decision period (the network must
fixate), the decision period, real steps after it, and padding (class −1 too)."""
_SPLITS: tuple[str, ...] = get_args(Split)
_SEED_DRAWS = 2**32 // len(_SPLITS)
"""Per-trial seeds are ``3·d + split`` with ``d < 2³²/3``: within numpy's seed range, and
the three splits' seed sets are disjoint."""


@register("neurogym")
class NeurogymTask(Task):
    """Trials of one neurogym env, or of several mixed into one input distribution.

    Each trial comes from one env (drawn uniformly when ``env`` lists several) and its own
    seed, both drawn from the generator (see ``sample``); it is padded with zero inputs to
    ``seq_len`` steps. ``sample_with_ids`` says which env drew each trial (its index in
    ``env``), and :attr:`sub_tasks` holds one single-env task per env, configured as a member
    trained on that env alone would be, so each member can be scored on its own env.

    Targets are ``[batch, seq_len, 2]`` int64: ``[..., 0]`` the env's ground-truth action
    (0 = fixate, 1 … 16 = choice directions in yang19; −1 on padded steps) and ``[..., 1]`` the
    period code (:data:`PRE`, :data:`DECISION`, :data:`POST`, :data:`PAD`). ``step_mask`` is
    ``targets[..., 0] >= 0``. Outputs are logits ``[batch, seq_len, actions]``.

    Args:
        env: a neurogym env id (``neurogym.envs.registration.all_envs(collections=True)``
            lists them) or a list of ids that share observation and action sizes.
        dt: time step in ms, passed to every env (default 100, neurogym's own).
        seq_len: steps every trial is padded to. None: the longest of 500 probed trials per
            env, plus 10 % (rounded up) for an env whose probed lengths vary
            (``neurogym_envs.resolved_seq_len``). A trial longer than ``seq_len`` is never
            cut: ``sample`` raises a ``ValueError`` naming it.
        **env_kwargs: options passed to every env (``neurogym.make(env, dt=dt, **kwargs)``),
            JSON-serialisable (tuples become lists, as a manifest stores them).

    Raises:
        ValueError: a bad ``env`` (unknown ids name close ones), ``dt`` or ``seq_len``; envs
            whose sizes differ; env options the env does not take; neurogym not installed
            (``NeurogymUnavailableError``, which says how to install it).
    """

    output_kind = "classification"
    metric_name = "decision_accuracy"

    def __init__(self, env: str | list[str], dt: int | float = DEFAULT_DT,
                 seq_len: int | None = None, **env_kwargs: Any) -> None:
        env_ids = _env_ids(env)
        dt = positive_real("dt", dt, "neurogym")
        dt = int(dt) if dt.is_integer() else dt
        seq_len = optional_positive_int("seq_len", seq_len, "neurogym")
        try:
            kwargs = json.loads(json.dumps(env_kwargs, allow_nan=False))
        except (TypeError, ValueError) as err:
            raise ValueError(f"neurogym: env options must be JSON-serialisable, got "
                             f"{env_kwargs!r} ({err})") from None
        super().__init__(env=env_ids[0] if len(env_ids) == 1 else env_ids, dt=dt,
                         seq_len=seq_len, **kwargs)
        self.env_ids, self.dt, self.env_kwargs = env_ids, dt, kwargs
        self._source: TrialSource | None = TrialSource(env_ids, dt, kwargs)  # checks the envs
        self.input_size = self._source.input_size
        self.output_size = self._source.num_actions
        self.seq_len = seq_len if seq_len is not None else resolved_seq_len(env_ids, dt, kwargs)

    @property
    def source(self) -> TrialSource:
        """The made envs (remade after unpickling: they are not pickled)."""
        if self._source is None:
            self._source = TrialSource(self.env_ids, self.dt, self.env_kwargs)
        return self._source

    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        state["_source"] = None
        state.pop("sub_tasks", None)  # the cached property: rebuilt on use
        return state

    # ------------------------------------------------------------------ trials
    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               split: Split = "train") -> tuple[Tensor, Tensor]:
        """``x [batch, seq_len, input]`` float32 and targets ``[batch, seq_len, 2]``."""
        x, y, _ = self.sample_with_ids(batch_size, generator, split)
        return x, y

    def sample_with_ids(self, batch_size: int, generator: torch.Generator | None = None,
                        split: Split = "train") -> tuple[Tensor, Tensor, Tensor]:
        """Trials, targets and each trial's env index ``[batch]``.

        From the generator, in this order: each trial's env index, its seed ``d``, and a
        uniform number that picks a scheduled env (a modality of ``yang19.go-v0``). The trial
        is neurogym's for seed ``3·d + split`` (train 0, val 1, test 2: disjoint streams), so
        the same generator state gives the same batch whatever was drawn before.

        Raises:
            ValueError: an unknown split, or a trial longer than ``seq_len``.
        """
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        g = new_generator(generator)
        ids = torch.randint(len(self.env_ids), (batch_size,), generator=g)
        seeds = torch.randint(_SEED_DRAWS, (batch_size,), generator=g) * len(_SPLITS)
        seeds += _SPLITS.index(split)
        picks = torch.rand(batch_size, generator=g, dtype=torch.float64)
        x = np.zeros((batch_size, self.seq_len, self.input_size), dtype=np.float32)
        y = np.full((batch_size, self.seq_len, 2), PAD, dtype=np.int64)
        for b, (index, seed, pick) in enumerate(zip(ids.tolist(), seeds.tolist(),
                                                    picks.tolist(), strict=True)):
            trial = self.source.draw(index, seed, pick)
            steps = len(trial.gt)
            if steps > self.seq_len:
                raise ValueError(f"a trial of {self.env_ids[index]} (seed {seed}) has {steps} "
                                 f"steps, more than seq_len={self.seq_len}; set seq_len to "
                                 "at least that (trials are never cut)")
            start, end = trial.decision
            x[b, :steps], y[b, :steps, 0] = trial.ob, trial.gt
            y[b, :start, 1], y[b, start:end, 1], y[b, end:steps, 1] = PRE, DECISION, POST
        return torch.from_numpy(x), torch.from_numpy(y), ids

    def step_mask(self, targets: Tensor, task_ids: Tensor | None = None) -> Tensor:
        """``[batch, seq_len]`` bool, True on a trial's own steps (not padding)."""
        _check_targets(targets)
        return targets[..., 0] >= 0

    # ------------------------------------------------------------------ sub-tasks
    @functools.cached_property
    def sub_tasks(self) -> dict[str, Task]:  # type: ignore[override]
        """``{env id: single-env task}``, each configured as a member trained on that env
        alone records it (same ``dt``, ``seq_len`` and options); ``{"neurogym": self}``
        for one env."""
        if len(self.env_ids) == 1:
            return {self.name: self}
        return {e: NeurogymTask(e, dt=self.dt, seq_len=self._config["seq_len"],
                                **self.env_kwargs) for e in self.env_ids}

    def own_sub_task(self, metadata: dict[str, Any]) -> int | None:
        """The env a member was trained on alone (its metadata's ``task`` and full
        ``task_config`` match one sub-task's), else None (a member of the whole list, or
        of another task)."""
        if len(self.env_ids) == 1 or metadata.get("task") != self.name:
            return None
        config = metadata.get("task_config")
        matches = [j for j, task in enumerate(self.sub_tasks.values())
                   if task.config() == config]
        return matches[0] if len(matches) == 1 else None

    # ------------------------------------------------------------------ scoring
    def loss(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> Tensor:
        """Cross-entropy over every real step (padding left out), as neurogym's
        supervised-learning example trains; no host sync, so the step can be captured."""
        self._check_outputs(outputs, targets)
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]),
                               targets[..., 0].reshape(-1), ignore_index=PAD)

    @torch.no_grad()
    def metric(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> float:
        """Fraction of trials decided correctly (:func:`trial_outcomes`); NaN for none."""
        self._check_outputs(outputs, targets)
        if targets.shape[0] == 0:
            return math.nan
        return trial_outcomes(outputs, targets).float().mean().item()

    def _check_outputs(self, outputs: Tensor, targets: Tensor) -> None:
        _check_targets(targets)
        if (outputs.ndim != 3 or outputs.shape[:2] != targets.shape[:2]
                or outputs.shape[-1] != self.output_size):
            raise ValueError(f"outputs must be logits [batch, steps, {self.output_size}] with "
                             f"one step per target step {tuple(targets.shape[:2])}, got "
                             f"{tuple(outputs.shape)}")


def trial_outcomes(outputs: Tensor, targets: Tensor) -> Tensor:
    """Whether each trial was decided correctly, ``[batch]`` bool, as neurogym's envs judge it.

    The action at each step is the arg-max logit. A trial is correct iff the network fixated
    (action 0) on every step before the decision period and, in the decision period, its first
    non-fixation action equals the ground truth at that step (an env's ``performance`` in its
    ``_step``; fixating through the whole decision period is wrong). One exception to the
    envs: a no-go trial (ground truth 0 through the decision period, e.g. a non-match of
    ``yang19.dms-v0``) is correct iff the network fixates through it too. The envs score such
    a trial 0 whatever the network does, so a perfect network would score 50 % there.

    Args:
        outputs: logits ``[batch, steps, actions]``.
        targets: ``[batch, steps, 2]`` (see :class:`NeurogymTask`).
    """
    action = outputs.argmax(-1)
    truth, period = targets[..., 0], targets[..., 1]
    moved = action != 0
    held = ~(moved & (period == PRE)).any(1)
    in_decision = period == DECISION
    chose = moved & in_decision
    responded = chose.any(1)
    first = chose.long().argmax(1, keepdim=True)  # the first True (0 when none)
    hit = responded & (action.gather(1, first) == truth.gather(1, first)).squeeze(1)
    no_go = ~((truth != 0) & in_decision).any(1)
    return held & torch.where(no_go, ~responded, hit)


def _check_targets(targets: Tensor) -> None:
    if targets.ndim != 3 or targets.shape[-1] != 2 or targets.is_floating_point():
        raise ValueError(f"neurogym targets must be int64 [batch, steps, 2] (action, period), "
                         f"got {tuple(targets.shape)} {targets.dtype}")


def _env_ids(env: object) -> list[str]:
    """``env`` as a non-empty list of distinct id strings."""
    ids = [env] if isinstance(env, str) else env
    if (not isinstance(ids, list | tuple) or not ids
            or not all(isinstance(e, str) and e for e in ids)):
        raise ValueError(f"neurogym: env must be an env id or a non-empty list of ids, got "
                         f"{env!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"neurogym: env lists an id more than once: {list(ids)}")
    return list(ids)
