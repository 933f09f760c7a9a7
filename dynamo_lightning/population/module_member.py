"""Any recurrent ``nn.Module`` as a population member, through a small protocol.

A network that no architecture reproduces can still join a population if it has
``input_size`` and ``hidden_size`` (ints), ``step(h [B, H], x [B, I]) -> h_next [B, H]``,
``readout(h [B, ..., H]) -> y [B, ..., O]`` and optionally ``initial_state(batch_size) ->
[B, H]`` (default zeros): ``PROTOCOL``. ``from_torch`` then makes a ``ModuleMember`` of it,
holding a frozen (eval-mode, no-gradient) CPU copy, so that later training of the original
changes nothing.

Such a member has the registered, unlisted architecture ``"module"``: a stack of exactly one
member whose ``forward`` is a Python loop over time calling the module's ``step``. Members
with one module cannot be stacked, so each is its own group, but it runs like any other
(``Population.trajectories``, ``member.module(x)``, ``member.module.step`` for fixed points).
Its config is JSON like every member's and names the module by a token that is valid only in
this process (a weak registry ``_NETWORKS`` that the member keeps alive). A population
directory is data and never runs code, so saving one refuses it (``save_refusal``).
"""

from __future__ import annotations

import copy
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from dynamo_lightning.checks import positive_int
from dynamo_lightning.population.architectures import Architecture, register_architecture
from dynamo_lightning.population.import_metadata import merge_metadata
from dynamo_lightning.population.member import Member
from dynamo_lightning.population.step_shapes import check_step_shapes

#: The recurrent-module protocol, for the messages.
PROTOCOL = ("input_size and hidden_size (ints), step(h [B, H], x [B, I]) -> h_next [B, H], "
            "readout(h [B, ..., H]) -> y [B, ..., O], optionally initial_state(batch_size) "
            "-> [B, H]")
_REQUIRED = ("input_size", "hidden_size", "step", "readout")
#: Token → the member's frozen module; entries go when their member does.
_NETWORKS: weakref.WeakValueDictionary[str, nn.Module] = weakref.WeakValueDictionary()


@dataclass(eq=False)
class ModuleMember(Member):
    """A member that runs a user's module (``architecture="module"``); ``network`` is its
    frozen copy, kept alive here (``config["network"]`` only names it)."""

    network: nn.Module | None = field(default=None, repr=False)


@register_architecture("module", listed=False)
class ModuleArchitecture(Architecture):
    """A "stack" of one member that runs a user's module (see the module doc).

    Args:
        input_size, output_size, hidden_size: the module's sizes.
        num_members: must be 1 (user modules do not stack).
        seeds: unused (nothing is initialised).
        network: the token of a module registered by ``member_from_module`` in this process.

    Raises:
        ValueError: ``num_members`` is not 1, or no module has the token (a config read from
            anywhere but this process's ``from_torch``).
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int,
                 num_members: int = 1, seeds: Sequence[int] | None = None, *,
                 network: str = "") -> None:
        super().__init__(input_size, output_size, hidden_size, num_members, seeds,
                         network=network)
        if num_members != 1:
            raise ValueError(f"architecture 'module' holds exactly one user module per stack, "
                             f"got num_members={num_members}")
        source = _NETWORKS.get(network)
        if source is None:
            raise ValueError(f"architecture 'module': no user module {network!r} in this "
                             "process; 'module' members are made by Population.from_torch and "
                             "cannot be saved, loaded or trained")
        self.network = copy.deepcopy(source)  # own copy: .to()/.eval() of a stack stay local
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    @classmethod
    def save_refusal(cls, member: Member) -> str:
        """Why ``member`` cannot be written to a population directory, and what to do."""
        kind = member.metadata.get("torch_class", "torch module")
        return (f"member {member.id!r} runs a user's {kind} (architecture 'module'), and a "
                "population directory is data that never runs code, so it cannot be saved; "
                "to save it, convert it to a built-in architecture (Population.from_torch of "
                "an nn.RNN/GRU/LSTM or a CTRNN module, or Population.from_arrays) or register "
                "an architecture plugin (dl.register_architecture) and build the member from "
                "its weights")

    @classmethod
    def from_member_states(cls, states: Sequence[dict[str, Tensor]],
                           **config: Any) -> ModuleArchitecture:
        if len(states) != 1 or states[0]:
            raise ValueError("architecture 'module' stacks exactly one member with no tensors")
        return cls(num_members=1, **config)

    @property
    def state_size(self) -> int:
        return self.hidden_size

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def init_member(self, generator: torch.Generator) -> dict[str, Tensor]:
        return {}

    def initial_state(self, batch_size: int) -> Tensor:
        """``[1, B, H]``: the module's ``initial_state``, else zeros."""
        make = getattr(self.network, "initial_state", None)
        h = make(batch_size) if callable(make) else torch.zeros(batch_size, self.hidden_size,
                                                                dtype=self._dtype())
        return h.to(self._anchor.device).unsqueeze(0)

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        """``h [1, B, H]``, ``x [B, I]`` or ``[1, B, I]`` → ``[1, B, H]``."""
        check_step_shapes("module member", h, x, self.hidden_size, self.input_size, members=1)
        return self.network.step(h[0], x[0] if x.dim() == 3 else x).unsqueeze(0)

    def readout(self, h: Tensor) -> Tensor:
        """Outputs ``[1, ..., O]`` of states ``h [1, ..., H]``."""
        return self.network.readout(h[0]).unsqueeze(0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x [B, T, I]`` or ``[1, B, T, I]`` → outputs ``[1, B, T, O]``, hidden
        ``[1, B, T, H]``: the module's ``step`` in a Python loop over time."""
        x, shared = self._input_batch(x)
        x = x if shared else x[0]
        h = self.initial_state(x.shape[0])[0]
        states = []
        for t in range(x.shape[1]):
            h = self.network.step(h, x[:, t])
            states.append(h)
        hidden = torch.stack(states, dim=1)
        return self.network.readout(hidden).unsqueeze(0), hidden.unsqueeze(0)

    def _dtype(self) -> torch.dtype:
        first = next((p for p in self.network.parameters() if p.is_floating_point()), None)
        return torch.get_default_dtype() if first is None else first.dtype


def member_from_module(member_id: str, module: nn.Module, metadata: object = None,
                       hint: str = "") -> ModuleMember:
    """A member running a frozen copy of ``module``, which follows ``PROTOCOL``.

    The protocol is checked on a probe (two trials, one and three steps): the shapes of
    ``initial_state``, ``step`` and ``readout`` must be the documented ones.

    Args:
        member_id: the member's id.
        module: the user's module.
        metadata: merged over ``architecture="module"``, ``hidden_size``,
            ``source="torch"`` and ``torch_class``.
        hint: appended to the message when the protocol is incomplete (other accepted forms).

    Raises:
        ValueError: naming the member, the missing attribute(s) or the wrong shape, and the
            protocol.
    """
    where = f"member {member_id!r}"
    missing = [name for name in _REQUIRED if not hasattr(module, name)
               or (name in ("step", "readout") and not callable(getattr(module, name)))]
    if missing:
        raise ValueError(f"{where}: {type(module).__name__} lacks {', '.join(missing)} of the "
                         f"recurrent-module protocol ({PROTOCOL}){hint}")
    inputs = positive_int("input_size", module.input_size, where)
    hidden = positive_int("hidden_size", module.hidden_size, where)
    try:
        network = copy.deepcopy(module)
    except (TypeError, RuntimeError, copy.Error) as err:
        raise ValueError(f"{where}: a member holds a frozen copy of its module, but "
                         f"copy.deepcopy({type(module).__name__}) failed: {err}") from None
    network = network.cpu().requires_grad_(False).eval()
    outputs = _probe(where, network, inputs, hidden)
    token = f"{member_id}-{uuid.uuid4().hex}"
    _NETWORKS[token] = network
    config = {"input_size": inputs, "output_size": outputs, "hidden_size": hidden,
              "network": token}
    meta = merge_metadata(member_id, {"architecture": "module", "hidden_size": hidden,
                                      "source": "torch", "torch_class": type(module).__name__},
                          metadata, f"the {type(module).__name__} module")
    return ModuleMember(member_id, "module", config, meta, {}, network=network)


@torch.no_grad()
def _probe(where: str, network: nn.Module, inputs: int, hidden: int) -> int:
    """The output size ``O``, after checking each protocol call's shape on a probe."""
    make = getattr(network, "initial_state", None)
    h = torch.zeros(2, hidden)
    if callable(make):
        h = _expect(where, "initial_state(2)", make(2), (2, hidden))
    x = torch.randn(2, inputs, generator=torch.Generator().manual_seed(0)).to(h.dtype)
    h = _expect(where, f"step(h [2, {hidden}], x [2, {inputs}])", network.step(h, x),
                (2, hidden))
    y = network.readout(h)
    size = y.shape[-1] if isinstance(y, Tensor) and y.dim() == 2 else "O"
    _expect(where, f"readout(h [2, {hidden}])", y, (2, size))
    _expect(where, f"readout(h [2, 3, {hidden}])",
            network.readout(h[:, None].expand(2, 3, hidden).contiguous()), (2, 3, size))
    declared = getattr(network, "output_size", size)
    if declared != size:
        raise ValueError(f"{where}: the module says output_size={declared!r} but readout "
                         f"gives {size} outputs")
    return int(size)


def _expect(where: str, call: str, got: object, expected: tuple[int | str, ...]) -> Tensor:
    """``got`` if it is a tensor of shape ``expected``, else a ValueError naming ``call``."""
    if not isinstance(got, Tensor) or tuple(got.shape) != expected:
        shape = list(got.shape) if isinstance(got, Tensor) else type(got).__name__
        raise ValueError(f"{where}: {call} gave {shape}, expected "
                         f"[{', '.join(map(str, expected))}] (the recurrent-module protocol: "
                         f"{PROTOCOL})")
    return got
