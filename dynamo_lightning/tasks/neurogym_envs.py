"""neurogym's environments as a trial source: made, checked, and drawn from one seed a trial.

The ``neurogym`` task (``tasks/neurogym.py``) uses neurogym's envs as they are; this module is
what it needs from them. neurogym is imported only when an env is made (the import takes
about 2.5 s), and a missing install is one :class:`NeurogymUnavailableError` that says how to
install it.

Every trial is a function of its own seed: ``env.seed(seed)`` then ``env.new_trial()``, as
neurogym's own ``ngym.Dataset`` drives an env, with nothing carried over from the trial
before. One piece of env state is not reset by seeding: an env that schedules several envs
(``ScheduleEnvs``, e.g. the two modalities of ``yang19.go-v0``) picks the next one from the
previous trial (with two, it alternates). Here each trial's env is picked from the caller's
draw instead, and set the way ``ScheduleEnvs.reset`` sets it (``set_i`` and ``next_i_env``).
Envs whose trials depend on earlier trials (trial-history tasks) therefore lose that history.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PROBE_TRIALS", "SEQ_LEN_MARGIN", "NeurogymUnavailableError", "Trial",
           "TrialSource", "longest_trial", "resolved_seq_len"]

PROBE_TRIALS = 500
"""Trials (seeds 0 … 499) drawn per env to find the longest when ``seq_len`` is None."""
SEQ_LEN_MARGIN = 10
"""Percent added to the longest probed trial (rounded up) when the probed lengths vary: a variable
length may have a rarer, longer trial than 500 draws showed. Envs whose probed trials all
have one length (fixed timing) get no margin."""
INSTALL_HINT = "pip install 'dynamo-lightning[neurogym]'"
_DEPRECATION = ".*to get variables from other wrappers is deprecated"
_NO_RENDER_MODES = ".*The environment creator metadata doesn't include `render_modes`"


class NeurogymUnavailableError(ValueError, ImportError):
    """neurogym is not installed (a ``ValueError``, so the CLI prints it as one line)."""


@dataclass(frozen=True)
class Trial:
    """One trial as the env made it.

    Attributes:
        ob: observations ``[T_trial, I]`` float32.
        gt: ground-truth actions ``[T_trial]`` int64 (0 = fixate).
        decision: the decision period's ``(start, end)`` step indices.
    """

    ob: np.ndarray
    gt: np.ndarray
    decision: tuple[int, int]


def _neurogym() -> Any:
    """The neurogym package, imported on first use."""
    try:
        return importlib.import_module("neurogym")
    except ImportError as err:
        raise NeurogymUnavailableError(
            f"the neurogym task needs neurogym, which is not installed ({err}); install it "
            f"with: {INSTALL_HINT}") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence gymnasium's warning about wrapper attributes, which neurogym's own wrappers
    trigger when they forward ``seed`` (it changes nothing)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION, category=UserWarning)
        yield


def known_env_ids() -> list[str]:
    """Every env id neurogym registers (native envs and collections such as ``yang19``)."""
    registration = importlib.import_module("neurogym.envs.registration")
    return list(registration.all_envs(psychopy=True, contrib=True, collections=True))


def make_env(env_id: str, dt: int | float, kwargs: dict[str, Any]) -> Any:
    """``neurogym.make(env_id, dt=dt, **kwargs)``, below gymnasium's own wrappers.

    Raises:
        NeurogymUnavailableError: neurogym is not installed.
        ValueError: an unknown id (naming close ones and how to list all), kwargs the env
            does not take, or an env that is not one of neurogym's trial envs.
    """
    ngym = _neurogym()
    known = known_env_ids()
    if env_id not in known:
        close = difflib.get_close_matches(env_id, known, n=5, cutoff=0.6)
        hint = f"close: {', '.join(close)}; " if close else ""
        raise ValueError(f"unknown neurogym env {env_id!r} ({hint}list all with: python -c "
                         "'from neurogym.envs.registration import all_envs; "
                         "print(all_envs(collections=True))')")
    try:
        with _quiet(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NO_RENDER_MODES)  # neurogym's envs
            made = ngym.make(env_id, dt=dt, **kwargs)
    except TypeError as err:
        raise ValueError(f"neurogym env {env_id!r} does not take the options "
                         f"{sorted(kwargs)} ({err})") from None
    core = importlib.import_module("neurogym.core")
    env = made
    while not isinstance(env, core.TrialEnv | core.TrialWrapper):
        if not hasattr(env, "env"):
            raise ValueError(f"neurogym env {env_id!r} is not a trial env (no new_trial)")
        env = env.env  # gymnasium's OrderEnforcing and the like
    return env


def _schedule(env: Any) -> Any:
    """The ``ScheduleEnvs`` wrapper in ``env``'s chain, or None."""
    block = importlib.import_module("neurogym.wrappers.block")
    while env is not None:
        if isinstance(env, block.ScheduleEnvs):
            return env
        env = getattr(env, "env", None)
    return None


def draw_trial(env: Any, seed: int, pick: float) -> Trial:
    """The trial of ``seed``: the env seeded, its scheduled env (if any) chosen by ``pick``
    in [0, 1) (uniform over the scheduled envs), then ``new_trial``."""
    env.seed(int(seed))
    schedule = _schedule(env)
    if schedule is not None:
        k = min(int(pick * len(schedule.envs)), len(schedule.envs) - 1)
        schedule.set_i(k)
        schedule.next_i_env = k  # what ScheduleEnvs.reset does: the next trial is env k's
    env.new_trial()
    task = env.unwrapped
    if "decision" not in task.start_ind:
        raise ValueError(f"neurogym env {type(task).__name__} has no 'decision' period "
                         f"(periods: {sorted(task.start_ind)}); the neurogym task scores "
                         "the decision period")
    ob, gt = np.asarray(task.ob, dtype=np.float32), np.asarray(task.gt, dtype=np.int64)
    if ob.ndim != 2 or gt.shape != ob.shape[:1]:
        raise ValueError(f"neurogym env {type(task).__name__} gives observations "
                         f"{ob.shape} and ground truth {gt.shape}; the neurogym task needs "
                         "[T, inputs] and [T] (a discrete action per step)")
    return Trial(ob, gt, (int(task.start_ind["decision"]), int(task.end_ind["decision"])))


class TrialSource:
    """One made env per id, drawn from by seed (see the module docstring).

    Args:
        env_ids: neurogym env ids.
        dt: the envs' time step (ms).
        kwargs: options passed to every env (JSON-normalised by the caller).

    Raises:
        ValueError: as :func:`make_env`; envs whose observation or action sizes differ.
    """

    def __init__(self, env_ids: list[str], dt: int | float, kwargs: dict[str, Any]) -> None:
        self.env_ids = list(env_ids)
        self.envs = [make_env(e, dt, kwargs) for e in self.env_ids]
        sizes = {e: (_size(env.observation_space, e), _actions(env.action_space, e))
                 for e, env in zip(self.env_ids, self.envs, strict=True)}
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{e} ({i} inputs, {a} actions)" for e, (i, a) in sizes.items())
            raise ValueError(f"neurogym envs differ in observation or action size: {listed}; "
                             "envs mixed in one task must share both")
        self.input_size, self.num_actions = sizes[self.env_ids[0]]

    def draw(self, index: int, seed: int, pick: float) -> Trial:
        """Env ``index``'s trial of ``seed`` (see :func:`draw_trial`)."""
        with _quiet():
            return draw_trial(self.envs[index], seed, pick)


def _size(space: Any, env_id: str) -> int:
    shape = getattr(space, "shape", None)
    if shape is None or len(shape) != 1:
        raise ValueError(f"neurogym env {env_id!r} has observations of shape {shape}; the "
                         "neurogym task needs a vector per step")
    return int(shape[0])


def _actions(space: Any, env_id: str) -> int:
    n = getattr(space, "n", None)
    if n is None:
        raise ValueError(f"neurogym env {env_id!r} has a non-discrete action space {space}; "
                         "the neurogym task classifies one action per step")
    return int(n)


@functools.cache
def longest_trial(env_id: str, dt: int | float, kwargs_json: str) -> tuple[int, bool]:
    """The longest of :data:`PROBE_TRIALS` trials (seeds 0, 1, …; scheduled envs in equal
    blocks) and whether the probed lengths varied; cached per process, as it is a fixed
    function of its arguments."""
    source = TrialSource([env_id], dt, json.loads(kwargs_json))
    lengths = {len(source.draw(0, seed, (seed + 0.5) / PROBE_TRIALS).gt)
               for seed in range(PROBE_TRIALS)}
    return max(lengths), len(lengths) > 1


def resolved_seq_len(env_ids: list[str], dt: int | float, kwargs: dict[str, Any]) -> int:
    """``seq_len`` for None: the longest probed trial over the envs, plus
    :data:`SEQ_LEN_MARGIN` (rounded up) for an env whose probed lengths vary."""
    text = json.dumps(kwargs, sort_keys=True)
    lengths = []
    for env_id in env_ids:
        longest, varies = longest_trial(env_id, dt, text)
        lengths.append(longest + -(-longest * SEQ_LEN_MARGIN // 100) if varies else longest)
    return max(lengths)
