"""Peak-memory estimates of each stage, from shapes alone (float32; within about 2× of what
the stage allocates: ``tests/test_memory_estimates.py`` measures them)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dynamo_lightning.memory import budget
from dynamo_lightning.memory.budget import (
    Estimate,
    add_term,
    check_fits,
    lead,
    skipped,
)

FLOAT = 4  # bytes of a float32
ADAM = 4  # parameter, gradient and Adam's two moments
RECURRENT_SAVED_PER_GATE = 3.0
"""Floats a recurrent step keeps for its backward, per gate and unit (2.2-3.1 saved tensors,
and the backward's own)."""
FEED_FORWARD_SAVED = 4.0
"""Saved activations of a CNN stack per unit of ``channels × input pixels`` (measured 3.9)."""
SEQ_LEN = 1000
"""A long task: ``seq_len`` is named as the setting to lower only when far above this (it is
the task's, the batch and the widths are the run's)."""
CHUNK_COPIES = 5
"""Copies of a chunk's states the trajectory build holds at once: the stacked run, its gates,
the per-member cut and the projections' float64 update (measured)."""
META_SAVED = {"vanilla": 5.5, "gru": 14.0, "lstm": 20.0, ("lstm", "concat"): 34.0}
"""Floats a meta-RNN step keeps per sample and unit, forward and backward (measured; an LSTM
with ``concat`` conditioning runs torch's LSTM, which keeps more)."""


# ----------------------------------------------------------------------------- stacks
@dataclass(frozen=True)
class StackShape:
    """What the estimates need of one stack's members (read from a meta-device build)."""

    parameters: int  # per member
    state_size: int
    hidden_size: int
    output_size: int
    gates: int = 1
    recurrent: bool = True


def stack_shape(build: Callable[[], Any]) -> StackShape | None:
    """The shape of the stack ``build()`` returns, built on torch's meta device (no memory
    allocated); None if it cannot be built there (the real build then says why)."""
    import torch

    try:
        with torch.device("meta"):
            stack = build()
        count = sum(math.prod(shape) for shape in stack.parameter_shapes().values())
        return StackShape(int(count), int(stack.state_size), int(stack.hidden_size),
                          int(stack.output_size), int(getattr(stack, "gates", 1)),
                          bool(getattr(stack, "recurrent", True)))
    except Exception:  # a probe only: the real construction reports any fault itself
        return None


def check_construction(owner: str, shapes: Mapping[str, Sequence[int]], members: int,
                       hidden_size: int) -> None:
    """Before an ``Architecture`` allocates its parameters ``[members, *shape]``: each
    member is drawn, then all are stacked (2 × the parameters). Builds on the meta device
    are not checked."""
    nbytes = 2 * FLOAT * members * sum(math.prod(shape) for shape in shapes.values())
    if nbytes < budget.CHECKED_FROM:  # read now: tests lower it
        return
    import torch

    if torch.get_default_device().type == "meta":
        return
    noun = "member" if members == 1 else "members"
    check_fits(nbytes, f"hidden_size {hidden_size} ({members} {owner} {noun})")


def population_training(stacks: Sequence[tuple[StackShape, int, int, int]],
                        batch_size: int | None = None, val_batch_size: int | None = None
                        ) -> Estimate:
    """Population training's peak: ``stacks`` holds ``(shape, members, seq_len,
    input_size)`` per group; without a batch size, the parameters' part only."""
    terms: dict[str, float] = {}
    width = max(s.hidden_size for s, *_ in stacks)
    members = sum(g for _, g, *_ in stacks)
    seeds = (f"model.seeds ({members} members)", members, 64)
    params = sum(s.parameters * g for s, g, *_ in stacks)
    add_term(terms, lead((f"model.hidden_sizes {width}", width**2, 64**2), seeds),
             ADAM * FLOAT * params)
    if batch_size is None:
        return Estimate(terms)
    steps = max(t for *_, t, _ in stacks)
    train = batch_size * sum(_step_units(s, t, i) * g for s, g, t, i in stacks)
    val = (val_batch_size or 0) * sum((s.state_size + s.output_size) * t * g
                                      for s, g, t, _ in stacks)
    batch, name, typical = (batch_size, "data.batch_size", 64) if train >= val else (
        val_batch_size or 0, "data.val_batch_size", 256)
    add_term(terms, lead((f"{name} {batch}", batch, typical), (f"task seq_len {steps}", steps,
                                                                SEQ_LEN),
                         (f"model.hidden_sizes {width}", width, 128), seeds),
             FLOAT * max(train, val))
    return Estimate(terms)


def _step_units(shape: StackShape, seq_len: int, input_size: int) -> float:
    """Floats one trial of one member keeps for the backward (activations and outputs)."""
    out = (shape.state_size + shape.output_size) * seq_len
    if shape.recurrent:
        saved = (RECURRENT_SAVED_PER_GATE * shape.gates + 0.5) * shape.hidden_size * seq_len
    else:  # seq_len × input_size is the image: every stage keeps maps of its pixels
        saved = FEED_FORWARD_SAVED * shape.hidden_size * seq_len * input_size
    return saved + out + seq_len * input_size


# ----------------------------------------------------------------------------- DYNAMO
def dynamo_fit(num_members: int, num_components: int, meta_parameters: int, meta_hidden: int,
               meta_state: int, meta_saved: float, stages: int = 1,
               batch: tuple[int, int, int, int, int] | None = None) -> Estimate:
    """A DYNAMO fit's peak: the meta-model (``meta_parameters``), θ and the alignment maps
    ``[N, stages, k, H̃]`` with their gradients and Adam states; with ``batch = (M, S, T,
    I, O)`` also a step's activations (``meta_saved`` floats per sample, step and unit of
    ``meta_hidden``; :data:`META_SAVED`)."""
    terms: dict[str, float] = {}
    hidden = f"model.meta.hidden_size {meta_hidden}"
    add_term(terms, hidden, ADAM * FLOAT * meta_parameters)
    align = num_members * stages * num_components * (meta_state + 1)
    add_term(terms, lead((hidden, meta_hidden, 64),
                         (f"population size {num_members}", num_members, 1024),
                         (f"data.num_components {num_components}", num_components, 8)),
             ADAM * FLOAT * align)
    if batch is not None:
        m, s, t, i, o = batch
        per_step = meta_saved * meta_hidden + meta_state + 2 * (i + num_components + o)
        add_term(terms, lead((f"data.members_per_batch {m}", m, 8),
                             (f"data.samples_per_member {s}", s, 32),
                             (f"task seq_len {t}", t, SEQ_LEN), (hidden, meta_hidden, 64)),
                 FLOAT * m * s * t * per_step)
    return Estimate(terms)


def trajectory_data(num_members: int, trials: Mapping[str, int], seq_len: int,
                    input_size: int, output_size: int, num_components: int, state_size: int,
                    cached: bool = True, chunk_trials: int = 1) -> Estimate:
    """The trajectory data's build: the drawn trials (inputs and targets of every split),
    the population run on ``chunk_trials`` trials at a time (states and outputs, stacked
    per group, then cut), the projections' float64 moments ``[N, H, H]`` and, cached, every
    split's hidden and output arrays (the largest twice while it is concatenated)."""
    terms: dict[str, float] = {}
    n_train, n_all = trials.get("train", 0), sum(trials.values())
    steps, train = (f"task seq_len {seq_len}", seq_len, SEQ_LEN), (
        f"data.train_trials {n_train}", n_train, 1024)
    members = (f"population size {num_members}", num_members, 1024)
    add_term(terms, lead(train, steps), FLOAT * n_all * seq_len * (input_size + output_size))
    add_term(terms, steps[0], CHUNK_COPIES * FLOAT * num_members * chunk_trials * seq_len
             * (state_size + output_size))
    add_term(terms, lead(members, (f"member state size {state_size}", state_size, 128)),
             2 * 8 * num_members * state_size**2)
    if cached:
        per_trial = FLOAT * num_members * seq_len * (num_components + output_size)
        components = (f"data.num_components {num_components}", num_components, 8)
        add_term(terms, lead(train, steps, members, components),
                 per_trial * (n_all + max(trials.values(), default=0)))
    return Estimate(terms)


def analysis(num_members: int, seq_len: int, meta_state: int, meta_output: int,
             member_state: int, theta_counts: Mapping[str, int],
             options: Mapping[str, Any]) -> Estimate:
    """The report's peak: the meta-model's states and outputs on its trials at every θ it
    evaluates and keeps (the members' θ on ``fixed_point_trials``; interpolations and the
    topology grid on ``trials``: ``theta_counts`` ``{"pairs": P × steps, "grid": R²}``), the
    fixed-point searches (Adam over ``θ's × inits × H̃``) and the baselines' member states."""
    terms: dict[str, float] = {}
    width = meta_state + meta_output
    steps = (f"task seq_len {seq_len}", seq_len, SEQ_LEN)
    fp_trials = int(options.get("fixed_point_trials", 64))
    add_term(terms, lead((f"population size {num_members}", num_members, 1024), steps),
             2 * FLOAT * num_members * fp_trials * seq_len * (width + member_state))
    trials = int(options.get("trials", 256))
    grid = (f"--grid_resolution {options.get('grid_resolution', 0)}",
            theta_counts.get("grid", 0), 49)
    add_term(terms, lead((f"--trials {trials}", trials, 256), steps, grid),
             2 * FLOAT * sum(theta_counts.values()) * trials * seq_len * width)
    inits = int(options.get("inits_per_member", 128))
    add_term(terms, f"--inits_per_member {inits}", 16 * FLOAT * num_members * inits * meta_state)
    similarity = int(options.get("similarity_trials", 64))
    add_term(terms, lead((f"--similarity_trials {similarity}", similarity, 64), steps),
             3 * FLOAT * num_members * similarity * seq_len * member_state)
    return Estimate(terms)


def groups_estimate(groups: Iterable[Any], tasks: Mapping[str, Any],
                    build: Callable[..., Any], batch_size: int | None = None,
                    val_batch_size: int | None = None) -> Estimate | None:
    """:func:`population_training` of a grid's groups (``architecture``, ``config``,
    ``seeds``, ``task.label``; ``build(name, num_members=1, **config)`` makes a stack);
    None when a group cannot be probed."""
    stacks = []
    for group in groups:
        shape = stack_shape(lambda g=group: build(g.architecture, num_members=1, seeds=[0],
                                                  **g.config))
        if shape is None:
            return None
        task = tasks[group.task.label]
        stacks.append((shape, len(group.seeds), int(task.seq_len), int(task.input_size)))
    return population_training(stacks, batch_size, val_batch_size) if stacks else None


def check_population_training(groups: Iterable[Any], tasks: Mapping[str, Any],
                              build: Callable[..., Any], batch_size: int | None = None,
                              val_batch_size: int | None = None, device: Any = "cpu") -> None:
    """Refuse a population grid whose training does not fit (:func:`groups_estimate`)."""
    if skipped():
        return
    estimate = groups_estimate(groups, tasks, build, batch_size, val_batch_size)
    if estimate is not None:
        estimate.check(device)
