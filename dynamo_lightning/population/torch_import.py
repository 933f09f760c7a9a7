"""Networks users bring: plain ``torch.nn`` recurrent modules as population members, and back.

A single-layer, ``batch_first`` ``torch.nn.RNN`` (tanh or relu), ``torch.nn.GRU`` or
``torch.nn.LSTM`` plus an ``nn.Linear`` readout of its hidden units is exactly one of our
recurrent members: our stacked cells follow torch's equations and gate order, and store the
same weights transposed (input-major, ``x @ W``). Converting is therefore a relabelling of
tensors, and the member computes what the original computes, to float rounding.

Anything our cells cannot reproduce (several layers, two directions, an LSTM projection,
time-major inputs, a readout that is not a linear map of ``h``) is refused with one
``ValueError`` that names the member and the fault, rather than converted approximately.
Weights are stored as float32 on the CPU, like every member. A ``torch.nn.Sequential`` CNN
(conv/ReLU stages and a linear head) becomes a ``cnn`` member (``torch_import_cnn``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dynamo_lightning.population.member import Member, check_member_id
from dynamo_lightning.population.torch_import_cnn import member_from_sequential

#: torch's ``RNNBase.mode`` → our registered architecture.
ARCHITECTURE_OF_MODE = {"RNN_TANH": "vanilla", "RNN_RELU": "relu", "GRU": "gru", "LSTM": "lstm"}
#: The accepted torch classes, for the messages.
ACCEPTED = ("torch.nn.RNN (nonlinearity 'tanh' or 'relu'), torch.nn.GRU or torch.nn.LSTM, "
            "single-layer, batch_first=True")
#: Metadata keys that are facts of the modules: a metadata dict may repeat them, not contradict.
_DERIVED = ("architecture", "hidden_size")


def members_from_torch(members: Mapping[str, tuple[nn.Module, nn.Module] | nn.Sequential],
                       metadata: Mapping[str, Mapping[str, Any]] | None = None,
                       input_size: int | None = None) -> list[Member]:
    """Members computing exactly what the given torch networks compute.

    Args:
        members: ``{id: (rnn, readout)}``; ``rnn`` as in ``ACCEPTED``, ``readout`` an
            ``nn.Linear(hidden_size, O)`` applied to ``rnn(x)[0]``, or ``{id: sequential}``: a
            ``torch.nn.Sequential`` CNN (``torch_import_cnn.ACCEPTED_SEQUENTIAL``). Input and
            output sizes are read from the modules and may differ between members (they
            then form groups).
        metadata: optional ``{id: dict}``, merged over the defaults ``architecture``,
            ``hidden_size``, ``source="torch"`` and ``torch_class``.
        input_size: image width of ``Sequential`` CNNs that pool adaptively (unused else).

    Returns:
        One ``Member`` per id, in the mapping's order.

    Raises:
        ValueError: naming the member id, the fault and what is accepted.
    """
    if not isinstance(members, Mapping) or not members:
        raise ValueError("from_torch takes a non-empty dict {id: (rnn, readout)}, got "
                         f"{type(members).__name__} {members!r:.80}")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be None or a dict {{id: dict}}, got "
                         f"{type(metadata).__name__}")
    unknown = sorted(set(metadata) - set(members), key=str)
    if unknown:
        raise ValueError(f"metadata given for unknown member id(s) {unknown} "
                         f"(member ids: {list(members)})")
    result = []
    for member_id, pair in members.items():
        problem = check_member_id(member_id)
        if problem:
            raise ValueError(problem)
        if isinstance(pair, nn.Sequential):
            result.append(member_from_sequential(member_id, pair, input_size,
                                                 metadata.get(member_id)))
            continue
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"member {member_id!r}: expected a pair (rnn, readout) or an "
                             f"nn.Sequential CNN, got {type(pair).__name__}")
        result.append(member_from_torch(member_id, pair[0], pair[1], metadata.get(member_id)))
    return result


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
    if not rnn.batch_first:
        faults.append("batch_first=False (build it with batch_first=True, inputs [B, T, I])")
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
    if extra is None:
        return defaults
    if not isinstance(extra, Mapping):
        raise ValueError(f"member {member_id!r}: metadata must be a dict, got "
                         f"{type(extra).__name__}")
    for key in _DERIVED:
        if key in extra and extra[key] != defaults[key]:
            raise ValueError(f"member {member_id!r}: metadata says {key}={extra[key]!r} but "
                             f"the {type(rnn).__name__} module gives {defaults[key]!r}")
    return {**defaults, **extra}
