"""Networks users bring: ``torch.nn`` modules as population members, and back.

A single-layer ``torch.nn.RNN`` (tanh or relu), ``torch.nn.GRU`` or ``torch.nn.LSTM`` plus an
``nn.Linear`` readout of its hidden units is exactly one of our recurrent members: our
stacked cells follow torch's equations and gate order, and store the same weights transposed
(input-major, ``x @ W``). Converting is therefore a relabelling of tensors, and the member
computes what the original computes, to float rounding. A time-major module
(``batch_first=False``, as neurogym's tutorials build them) has the same weights: its member
takes the same inputs batch-first (``[B, T, I]``, the population's convention), which is
exact, and its metadata records ``time_major: true``.

Anything our cells cannot reproduce (several layers, two directions, an LSTM projection,
a readout that is not a linear map of ``h``) is refused with one
``ValueError`` that names the member and the fault, rather than converted approximately.
Weights are stored as float32 on the CPU, like every member. The other networks
``members_from_torch`` takes each have their own module: a ``torch.nn.Sequential`` CNN
becomes a ``cnn`` member (``torch_import_cnn``), a continuous-time RNN module written as
neurogym's tutorials write it a ``ctrnn`` member (``torch_import_ctrnn``), and any other
module that follows the recurrent-module protocol a ``module`` member that runs the module
itself (``module_member``; it cannot be saved).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dynamo_lightning.population.import_metadata import check_import, merge_metadata
from dynamo_lightning.population.member import Member
from dynamo_lightning.population.module_member import member_from_module
from dynamo_lightning.population.torch_import_cnn import member_from_sequential
from dynamo_lightning.population.torch_import_ctrnn import (
    CTRNN_ATTRIBUTES,
    is_ctrnn_module,
    member_from_ctrnn,
)

#: torch's ``RNNBase.mode`` → our registered architecture.
ARCHITECTURE_OF_MODE = {"RNN_TANH": "vanilla", "RNN_RELU": "relu", "GRU": "gru", "LSTM": "lstm"}
#: The accepted torch classes, for the messages.
ACCEPTED = ("torch.nn.RNN (nonlinearity 'tanh' or 'relu'), torch.nn.GRU or torch.nn.LSTM, "
            "single-layer (batch-first or time-major); or a CTRNN module with input2h and "
            "h2h")
#: The forms ``members_from_torch`` takes, for the messages.
FORMS = ("(rnn, readout), a net with .rnn (a CTRNN module) and .fc, an nn.Sequential CNN, "
         "or a module with the recurrent-module protocol")


def members_from_torch(members: Mapping[str, Any],
                       metadata: Mapping[str, Mapping[str, Any]] | None = None,
                       input_size: int | None = None) -> list[Member]:
    """Members computing exactly what the given torch networks compute.

    Args:
        members: ``{id: network}``, each network one of:

            - ``(rnn, readout)``: ``rnn`` as in ``ACCEPTED``, ``readout`` an
              ``nn.Linear(hidden_size, O)`` applied to ``rnn(x)[0]``;
            - ``(ctrnn, readout)`` or a net with ``.rnn`` (a CTRNN module) and ``.fc``, as
              neurogym's tutorials write them (``torch_import_ctrnn``): a ``ctrnn`` member;
            - a ``torch.nn.Sequential`` CNN (``torch_import_cnn.ACCEPTED_SEQUENTIAL``);
            - any module with the recurrent-module protocol (``module_member.PROTOCOL``): a
              ``module`` member running a frozen copy of it (not saveable).

            Input and output sizes are read from the modules and may differ between members
            (they then form groups).
        metadata: optional ``{id: dict}``, merged over the defaults ``architecture``,
            ``hidden_size``, ``source="torch"`` and ``torch_class``.
        input_size: image width of ``Sequential`` CNNs that pool adaptively (unused else).

    Returns:
        One ``Member`` per id, in the mapping's order.

    Raises:
        ValueError: naming the member id, the fault and what is accepted.
    """
    metadata = check_import(members, metadata, "from_torch", "(rnn, readout)")
    return [_finite(_member(member_id, network, input_size, metadata.get(member_id)))
            for member_id, network in members.items()]


def _finite(member: Member) -> Member:
    """``member`` if its weights are finite: NaN weights give NaN trajectories, and the
    fit would fail on them much later with nothing naming the member."""
    bad = [name for name, t in member.state.items()
           if isinstance(t, torch.Tensor) and t.is_floating_point()
           and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"from_torch: member {member.id!r} has NaN or infinite weights in "
                         f"{', '.join(bad)}; retrain it or leave it out")
    return member


def _member(member_id: str, network: object, input_size: int | None,
            metadata: Mapping[str, Any] | None) -> Member:
    """One member from whichever form ``network`` has (see ``members_from_torch``)."""
    if isinstance(network, nn.Sequential):
        return member_from_sequential(member_id, network, input_size, metadata)
    if isinstance(network, tuple | list):
        if len(network) != 2:
            raise ValueError(f"member {member_id!r}: expected a pair (rnn, readout), got a "
                             f"{type(network).__name__} of {len(network)}")
        if is_ctrnn_module(network[0]):
            return member_from_ctrnn(member_id, network[0], network[1], metadata=metadata)
        return member_from_torch(member_id, network[0], network[1], metadata)
    if not isinstance(network, nn.Module):
        raise ValueError(f"member {member_id!r}: expected {FORMS}, got "
                         f"{type(network).__name__}")
    inner, readout = getattr(network, "rnn", None), getattr(network, "fc", None)
    if is_ctrnn_module(inner) and isinstance(readout, nn.Module):
        return member_from_ctrnn(member_id, inner, readout, net=network, metadata=metadata)
    hint = ""
    if inner is not None and readout is not None:
        hint = (f"; its .rnn is a {type(inner).__name__}, not a CTRNN module "
                f"({CTRNN_ATTRIBUTES}): for a torch.nn.RNN/GRU/LSTM pass (net.rnn, net.fc)")
    elif is_ctrnn_module(network):
        hint = "; a CTRNN module needs its readout: pass (ctrnn, readout)"
    return member_from_module(member_id, network, metadata,
                              hint or f" (or pass one of {FORMS})")


def member_from_torch(member_id: str, rnn: nn.Module, readout: nn.Module,
                      metadata: Mapping[str, Any] | None = None) -> Member:
    """One member from ``rnn`` and its ``readout`` (see ``members_from_torch``).

    Missing biases (``bias=False``) become zeros, which computes the same thing.

    Raises:
        ValueError: naming ``member_id``, the fault and what is accepted.
    """
    architecture = _check_rnn(member_id, rnn)
    _check_readout(member_id, readout, rnn.hidden_size)
    meta = _metadata(member_id, rnn, architecture, metadata)
    if not rnn.batch_first:
        meta.setdefault("time_major", True)
    config = {"input_size": rnn.input_size, "output_size": readout.out_features,
              "hidden_size": rnn.hidden_size}
    gate_units = rnn.weight_ih_l0.shape[0]

    def bias(t: Tensor | None, size: int) -> Tensor:
        return torch.zeros(size) if t is None else t

    state = {
        "weight_ih": rnn.weight_ih_l0.T,  # torch [gH, I] -> ours [I, gH]
        "weight_hh": rnn.weight_hh_l0.T,  # [gH, H] -> [H, gH]
        "bias_ih": bias(getattr(rnn, "bias_ih_l0", None), gate_units),
        "bias_hh": bias(getattr(rnn, "bias_hh_l0", None), gate_units),
        "readout_weight": readout.weight.T,  # [O, H] -> [H, O]
        "readout_bias": bias(readout.bias, readout.out_features),
    }
    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in state.items()}
    return Member(member_id, architecture, config, meta, state)


def to_torch(member: Member) -> tuple[nn.RNNBase, nn.Linear]:
    """The inverse of ``from_torch``: a recurrent member as ``(rnn, readout)`` torch modules.

    ``readout(rnn(x)[0])`` equals ``member.module(x)[0]`` for ``x [B, T, I]``; for an LSTM
    ``rnn(x)[0]`` is the ``h`` half of the member's ``[h, c]`` state. Returns fresh float32
    modules on the CPU (``batch_first=True``), so they can be trained further.

    Raises:
        ValueError: the member's architecture has no torch equivalent.
    """
    if not isinstance(member, Member):
        raise TypeError(f"to_torch takes a Member, got {type(member).__name__}")
    known = {arch: mode for mode, arch in ARCHITECTURE_OF_MODE.items()}
    if member.architecture not in known:
        raise ValueError(f"to_torch: member {member.id!r} has architecture "
                         f"{member.architecture!r}, which has no torch.nn module "
                         f"(convertible: {', '.join(known)})")
    size, inputs = member.config["hidden_size"], member.config["input_size"]
    mode = known[member.architecture]
    if mode.startswith("RNN_"):
        rnn: nn.RNNBase = nn.RNN(inputs, size, nonlinearity=mode[4:].lower(), batch_first=True)
    else:
        rnn = getattr(nn, mode)(inputs, size, batch_first=True)
    readout = nn.Linear(size, member.config["output_size"])
    s = member.state
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(s["weight_ih"].T)
        rnn.weight_hh_l0.copy_(s["weight_hh"].T)
        rnn.bias_ih_l0.copy_(s["bias_ih"])
        rnn.bias_hh_l0.copy_(s["bias_hh"])
        readout.weight.copy_(s["readout_weight"].T)
        readout.bias.copy_(s["readout_bias"])
    return rnn, readout


# --------------------------------------------------------------------------- checks
def _check_rnn(member_id: str, rnn: nn.Module) -> str:
    """The architecture ``rnn`` converts to, or a ValueError saying why it cannot."""
    where = f"member {member_id!r}"
    base = next((c for c in (nn.RNN, nn.GRU, nn.LSTM) if isinstance(rnn, c)), None)
    if base is None:
        raise ValueError(f"{where}: unsupported module {type(rnn).__name__} "
                         f"(accepted: {ACCEPTED})")
    if type(rnn).forward is not base.forward:
        raise ValueError(f"{where}: {type(rnn).__name__} overrides {base.__name__}.forward, so "
                         f"its computation is unknown (accepted: plain {ACCEPTED})")
    faults = []
    if rnn.num_layers != 1:
        faults.append(f"num_layers={rnn.num_layers} (only 1 layer; convert each layer's "
                      "network separately)")
    if rnn.bidirectional:
        faults.append("bidirectional=True (only forward-in-time networks have a step map)")
    if getattr(rnn, "proj_size", 0):
        faults.append(f"proj_size={rnn.proj_size} (LSTM projections are not supported)")
    if rnn.mode not in ARCHITECTURE_OF_MODE:
        faults.append(f"mode {rnn.mode!r}")
    if faults:
        raise ValueError(f"{where}: {type(rnn).__name__} has {'; '.join(faults)} "
                         f"(accepted: {ACCEPTED})")
    return ARCHITECTURE_OF_MODE[rnn.mode]


def _check_readout(member_id: str, readout: nn.Module, hidden_size: int) -> None:
    if not isinstance(readout, nn.Linear):
        raise ValueError(f"member {member_id!r}: the readout is a {type(readout).__name__}; "
                         f"accepted: an nn.Linear({hidden_size}, O) of the hidden state")
    if readout.in_features != hidden_size:
        raise ValueError(f"member {member_id!r}: the readout has in_features="
                         f"{readout.in_features} but the RNN's hidden_size is {hidden_size}; "
                         f"accepted: an nn.Linear({hidden_size}, O) of the hidden state")


def _metadata(member_id: str, rnn: nn.RNNBase, architecture: str,
              extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults describing the conversion, with the user's ``extra`` merged over them."""
    defaults = {"architecture": architecture, "hidden_size": rnn.hidden_size,
                "source": "torch", "torch_class": type(rnn).__name__}
    return merge_metadata(member_id, defaults, extra, f"the {type(rnn).__name__} module")
