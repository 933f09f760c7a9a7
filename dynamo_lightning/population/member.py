"""One trained network of a population: its identity, description and weights."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from torch import Tensor

from dynamo_lightning.population import architectures
from dynamo_lightning.population.architectures import MemberNetwork
from dynamo_lightning.population.step_shapes import check_step_shapes

_SAFE_ID = re.compile(r"[A-Za-z0-9_.\-]+")


MAX_ID_LENGTH = 255 - len(".safetensors")
"""Longest member id whose weights file name fits 255 bytes (ids are ASCII)."""


def check_member_id(member_id: object) -> str | None:
    """Why ``member_id`` is not a safe file name, or None when it is.

    Ids name the weights file, so they may hold only letters, digits, ``-``, ``_`` and ``.``,
    must not be ``.`` or ``..`` and are at most :data:`MAX_ID_LENGTH` characters.
    """
    if not isinstance(member_id, str):
        return f"member id must be a string, got {type(member_id).__name__} {member_id!r}"
    if not _SAFE_ID.fullmatch(member_id) or member_id in {".", ".."}:
        return (f"member id {member_id!r} is not a safe file name "
                "(use letters, digits, '-', '_' and '.')")
    if len(member_id) > MAX_ID_LENGTH:
        return (f"member id {member_id[:24]!r}… is {len(member_id)} characters long; ids name "
                f"the weights file <id>.safetensors, so at most {MAX_ID_LENGTH} fit the "
                "file-name limit of common filesystems (255 bytes)")
    return None


def to_json(value: Any, what: str) -> Any:
    """A plain-JSON copy of ``value`` (numpy/torch scalars become Python numbers).

    Raises:
        ValueError: ``value`` holds something JSON cannot store; ``what`` names it.
    """

    def default(obj: Any) -> Any:
        if hasattr(obj, "tolist"):  # numpy scalars/arrays, torch tensors
            return obj.tolist()
        raise TypeError(f"{type(obj).__name__} {obj!r} is not JSON-serialisable")

    try:
        return json.loads(json.dumps(value, default=default))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what}: {err}") from None


@dataclass(eq=False)
class Member:
    """One frozen network of a population.

    Members are treated as immutable once they are in a ``Population`` (stacks and the
    compiled ``module`` are cached).

    Args:
        id: unique, file-name-safe identifier (letters, digits, ``-``, ``_``, ``.``).
        architecture: registered architecture name (``"gru"``, ``"cnn"``, ...).
        config: architecture constructor keywords (``input_size``, ``output_size``,
            ``hidden_size`` and options); stored as a JSON copy.
        metadata: JSON description; by convention at least ``architecture``, ``task``,
            ``task_config``, ``seed``, ``hidden_size`` and ``task_metric``.
        state: per-member parameters without the member axis, ``{name: Tensor[...]}``.

    Raises:
        ValueError: unsafe id, or a config/metadata that JSON cannot store.
    """

    id: str
    architecture: str
    config: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        problem = check_member_id(self.id)
        if problem:
            raise ValueError(problem)
        if not isinstance(self.config, dict) or not isinstance(self.metadata, dict):
            raise ValueError(f"member {self.id!r}: config and metadata must be dicts")
        self.config = to_json(self.config, f"config of member {self.id!r}")
        self.metadata = to_json(self.metadata, f"metadata of member {self.id!r}")
        bad = [name for name, t in self.state.items() if not isinstance(t, Tensor)]
        if bad:
            raise ValueError(f"member {self.id!r}: state entries {bad} are not tensors")

    @property
    def group_key(self) -> tuple[str, str]:
        """``(architecture, canonical JSON of config)``: members with equal keys stack."""
        return self.architecture, json.dumps(self.config, sort_keys=True)

    @cached_property
    def module(self) -> MemberNetwork:
        """This member alone as a frozen, eval-mode network (built once, on the CPU).

        ``module(x [B,T,I]) -> (outputs [B,S_out,O], hidden [B,S,H])``; recurrent members
        also have ``module.step(h [B,H], x [B,I]) -> h_next [B,H]``.
        """
        cls = architectures.get(self.architecture)
        return MemberNetwork(cls.from_member_states([self.state], **self.config))

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        """One time step of a recurrent member: ``h [B, state]``, ``x [B, I]`` → ``[B, state]``.

        Raises:
            TypeError: the member is feed-forward (it has no time steps).
            ValueError: ``h`` or ``x`` has the wrong shape (the message names both shapes).
        """
        net = self.module
        if not net.stack.recurrent:
            raise TypeError(f"member {self.id!r} is a feed-forward {self.architecture!r} "
                            "network: it has no step(); run it on whole inputs instead")
        check_step_shapes(f"member {self.id!r}", h, x, net.state_size, net.stack.input_size)
        return net.step(h, x)
