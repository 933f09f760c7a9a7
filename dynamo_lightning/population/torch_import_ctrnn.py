"""Users' continuous-time rate RNN modules (neurogym's tutorials) as ``ctrnn`` members.

A *CTRNN module* is what neurogym's CTRNN and EIRNN tutorials write: an ``nn.Module`` with
``input2h`` (``nn.Linear``), ``h2h`` (``nn.Linear``, or a Dale's-law module with ``weight``
and ``mask`` and/or ``effective_weight()``), ``alpha`` (or ``dt`` and ``tau``) and
``hidden_size``, run time-major (``[T, B, I]``, unless it sets ``batch_first = True``) and
returning ``(rates [T, B, H], final hidden)``. Its readout is an ``nn.Linear`` of the rates
(for a Dale network also of the excitatory rates only), given as a pair ``(ctrnn, readout)``
or as a net with ``.rnn`` and ``.fc`` whose own ``forward`` gives ``(outputs, rates)``.

The module's code is not read: its weights are relabelled into a ``ctrnn`` member (post×pre
arrays through ``array_import``; a time-major module becomes a batch-first member, which is
exact), and that member is checked against the module on a probe input, both in eval mode
with the module's recurrent noise off. The form (``"rate"``: the state is the rates;
``"current"``: the state is the currents ``v``, the rates ``f(v)``) and the activation are the
module's ``form``/``activation`` attributes where it declares them; otherwise each candidate
is tried and the first whose outputs, rates and final state all match to ``TOLERANCE`` is
kept. If none does, the module is refused, naming what differed.

Dale's law: ``h2h.mask`` (neurogym's ``EIRecLinear``: ``[post, pre]``, one sign per
presynaptic column, excitatory units first, a zero diagonal for no autapses) becomes the
member's ``dale_ratio`` and ``autapses``, so the signs survive further training. Recurrent
noise is training-only in members; it is recorded as ``noise_std`` in ctrnn's definition:
``_sigma_rec / sqrt(2α)`` (neurogym's per-step std) or ``sigma_rec`` as given.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynamo_lightning.checks import is_real, positive_int
from dynamo_lightning.population.architectures.ctrnn import ACTIVATIONS, FORMS, resolve_alpha
from dynamo_lightning.population.array_import import member_from_arrays
from dynamo_lightning.population.member import Member
from dynamo_lightning.population.torch_import_dale import recurrent_arrays

#: What a user's CTRNN module must have, for the messages.
CTRNN_ATTRIBUTES = ("input2h (nn.Linear), h2h (nn.Linear, or a module with weight and mask "
                    "or effective_weight()), alpha (or dt and tau), hidden_size")
#: Largest difference to the module's outputs, rates and final state that still matches.
TOLERANCE = 1e-5
#: Recurrent-noise attributes set to 0 for the probe (on a copy) and read for ``noise_std``.
NOISE_ATTRIBUTES = ("_sigma_rec", "sigma_rec", "noise_std")
PROBE_BATCH, PROBE_STEPS = 3, 16
_ACTIVATION_FUNCTIONS: dict[Callable[..., Any], str] = {
    torch.relu: "relu", F.relu: "relu", torch.tanh: "tanh", F.softplus: "softplus"}
_ACTIVATION_MODULES = {nn.ReLU: "relu", nn.Tanh: "tanh"}


class _Reference(NamedTuple):
    """The module's own computation on the probe, batch-first float32."""

    outputs: Tensor  # [B, T, O]
    rates: Any  # [B, T, H] (whatever the module returned first)
    final: Any  # [B, H] the final state (its first part if a tuple), or None


def is_ctrnn_module(module: object) -> bool:
    """Whether ``module`` looks like a CTRNN module (it has ``input2h`` and ``h2h``)."""
    return isinstance(module, nn.Module) and hasattr(module, "input2h") and hasattr(module, "h2h")


def member_from_ctrnn(member_id: str, rnn: nn.Module, readout: nn.Module,
                      net: nn.Module | None = None, metadata: object = None) -> Member:
    """A ``ctrnn`` member computing what ``rnn`` and ``readout`` (or ``net``) compute.

    Args:
        member_id: the member's id.
        rnn: the CTRNN module (see the module doc).
        readout: ``nn.Linear(H, O)`` of the rates, or ``nn.Linear(n_E, O)`` of the
            excitatory rates of a Dale network.
        net: the net holding both as ``.rnn``/``.fc``; its ``forward(x)`` gives the
            reference outputs (first element of a tuple). None: ``readout(rates)``.
        metadata: merged over ``architecture="ctrnn"``, ``hidden_size``, ``source="torch"``
            and ``torch_class``.

    Raises:
        ValueError: naming the member, the attribute or the mismatch.
    """
    where = f"member {member_id!r}"
    arrays, dale = _arrays(where, rnn)
    n_exc = dale.pop("n_exc", None)
    arrays["W_out"], arrays["b_out"] = _readout(where, readout, rnn.hidden_size, n_exc,
                                                prefix=net is not None)
    timing = _time_constant(where, rnn)
    alpha = resolve_alpha(timing.get("alpha"), timing.get("dt"), timing.get("tau"), where)
    options = {**timing, **dale, "noise_std": _noise_std(rnn, alpha)}
    probe = torch.randn(PROBE_BATCH, PROBE_STEPS, arrays["W_in"].shape[1],
                        generator=torch.Generator().manual_seed(0))
    reference = _reference(rnn, readout, net, probe)
    faults = []
    for activation in _declared_activations(where, rnn):
        for form in _declared_forms(where, rnn):
            member = member_from_arrays(
                member_id, {**arrays, **options, "form": form, "activation": activation},
                metadata, {"source": "torch", "torch_class": type(rnn).__name__},
                f"the {type(rnn).__name__} module")
            fault = _mismatch(member, reference, probe)
            if fault is None:
                return member
            faults.append(f"{form}/{activation}: {fault}")
    raise ValueError(f"{where}: no ctrnn member reproduces the {type(rnn).__name__} module on a "
                     f"probe input to {TOLERANCE:g} (both in eval mode, noise off; the "
                     "module run time-major [T, B, I] unless it sets batch_first=True): "
                     f"{'; '.join(faults)}; accepted: rate form h' = (1-α)h + α f(input2h(x) + "
                     "h2h(h)) or current form v' = (1-α)v + α(input2h(x) + h2h(f(v))), f relu, "
                     "tanh or softplus (declare form=/activation= on the module to try only those)")


# --------------------------------------------------------------------------- weights
def _arrays(where: str, rnn: nn.Module) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Post×pre ``W_in``, ``b_in``, ``W_rec``, ``b_rec``, and the Dale options."""
    hidden = getattr(rnn, "hidden_size", None)
    if hidden is None:
        raise ValueError(f"{where}: the {type(rnn).__name__} module has no hidden_size "
                         f"(a CTRNN module has {CTRNN_ATTRIBUTES})")
    positive_int("hidden_size", hidden, where)
    input2h = rnn.input2h
    if not isinstance(input2h, nn.Linear) or input2h.out_features != hidden:
        raise ValueError(f"{where}: input2h is {_describe(input2h)}, expected nn.Linear(I, "
                         f"{hidden}) (a CTRNN module has {CTRNN_ATTRIBUTES})")
    w_rec, b_rec, dale = recurrent_arrays(where, rnn.h2h, hidden, CTRNN_ATTRIBUTES)
    arrays = {"W_in": input2h.weight, "b_in": _bias(input2h.bias, hidden), "W_rec": w_rec,
              "b_rec": _bias(b_rec, hidden)}
    return {k: v.detach().to("cpu", torch.float32) for k, v in arrays.items()}, dale


def _readout(where: str, readout: nn.Module, hidden: int, n_exc: int | None,
             prefix: bool) -> tuple[Tensor, Tensor]:
    """``W_out [O, H]`` and ``b_out [O]``. A readout of fewer than H rates reads the first
    ones (zero columns for the rest): the excitatory ones of a Dale pair, or, in a net whose
    ``forward`` the probe checks, any first ``in_features`` units (``prefix``)."""
    fewer = (f", or nn.Linear({n_exc}, O) of the excitatory rates" if n_exc is not None
             else "")
    accepted = f"accepted: nn.Linear({hidden}, O) of the rates" + (
        f", or nn.Linear(k < {hidden}, O) of the first k rates" if prefix else fewer)
    if not isinstance(readout, nn.Linear):
        raise ValueError(f"{where}: the readout is a {type(readout).__name__}; {accepted}")
    size = readout.in_features
    if not (size in (hidden, n_exc) or (prefix and size < hidden)):
        raise ValueError(f"{where}: the readout has in_features={size} for hidden_size="
                         f"{hidden}; {accepted}")
    weight = readout.weight.detach().to("cpu", torch.float32)
    weight = torch.cat([weight, weight.new_zeros(readout.out_features, hidden - size)], 1)
    return weight, _bias(readout.bias, readout.out_features).detach().to("cpu", torch.float32)


def _bias(bias: Tensor | None, size: int) -> Tensor:
    return torch.zeros(size) if bias is None else bias


def _time_constant(where: str, rnn: nn.Module) -> dict[str, Any]:
    """``{"alpha": ...}``, or ``{"dt", "tau"}`` where the module has no ``alpha``."""
    if getattr(rnn, "alpha", None) is not None:
        return {"alpha": float(rnn.alpha) if is_real(rnn.alpha) else rnn.alpha}
    dt, tau = getattr(rnn, "dt", None), getattr(rnn, "tau", None)
    if dt is None or tau is None:
        raise ValueError(f"{where}: the {type(rnn).__name__} module has no alpha (nor dt and "
                         f"tau); a CTRNN module has {CTRNN_ATTRIBUTES}")
    return {"dt": dt, "tau": tau}


def _noise_std(rnn: nn.Module, alpha: float) -> float:
    """The module's recurrent noise as ctrnn's ``noise_std`` σ (0 without any)."""
    scaled = getattr(rnn, "_sigma_rec", None)
    if is_real(scaled):  # neurogym's EIRNN: sqrt(2α) σ, added to the state each step
        return float(scaled) / math.sqrt(2.0 * alpha)
    for name in NOISE_ATTRIBUTES[1:]:
        if is_real(getattr(rnn, name, None)):
            return float(getattr(rnn, name))
    return 0.0


# --------------------------------------------------------------------------- form, probe
def _declared_forms(where: str, rnn: nn.Module) -> tuple[str, ...]:
    form = getattr(rnn, "form", None)
    if form is None:
        return FORMS
    if form not in FORMS:
        raise ValueError(f"{where}: the module declares form={form!r}; ctrnn has "
                         f"{', '.join(map(repr, FORMS))}")
    return (form,)


def _declared_activations(where: str, rnn: nn.Module) -> tuple[str, ...]:
    """The declared activation's name, or all of them (a callable we cannot name)."""
    act = getattr(rnn, "activation", None)
    if isinstance(act, str):
        if act not in ACTIVATIONS:
            raise ValueError(f"{where}: the module declares activation={act!r}; ctrnn has "
                             f"{', '.join(map(repr, ACTIVATIONS))}")
        return (act,)
    name = next((n for cls, n in _ACTIVATION_MODULES.items() if isinstance(act, cls)), None)
    if name is None and callable(act) and not isinstance(act, nn.Module):
        name = _ACTIVATION_FUNCTIONS.get(act)
    return (name,) if name else tuple(ACTIVATIONS)


@torch.no_grad()
def _reference(rnn: nn.Module, readout: nn.Module, net: nn.Module | None,
               probe: Tensor) -> _Reference:
    """Run a frozen, noise-free copy of the user's modules on ``probe [B, T, I]``, in the
    layout the module expects (time-major unless it says ``batch_first``)."""
    if net is not None:
        net = copy.deepcopy(net).cpu().eval()
        rnn, readout = net.rnn, net.fc
    else:
        rnn, readout = (m.cpu().eval() for m in copy.deepcopy((rnn, readout)))
    for module in (*(net or rnn).modules(), *readout.modules()):
        for name in NOISE_ATTRIBUTES:
            if is_real(getattr(module, name, None)):
                setattr(module, name, 0.0)
    time_major = not getattr(rnn, "batch_first", False)
    x = (probe.transpose(0, 1) if time_major else probe).to(rnn.input2h.weight.dtype)
    result = rnn(x)
    rates, final = (result[0], result[1] if len(result) > 1 else None) if isinstance(
        result, tuple | list) else (result, None)
    if net is not None:
        outputs = net(x)
        outputs = outputs[0] if isinstance(outputs, tuple | list) else outputs
    else:  # all rates, or the excitatory ones for a readout of those
        outputs = readout(rates[..., : readout.in_features])
    final = final[0] if isinstance(final, tuple | list) else final

    def batch_first(t: object) -> object:
        if not isinstance(t, Tensor):
            return t
        return (t.transpose(0, 1) if time_major else t).float()

    return _Reference(batch_first(outputs), batch_first(rates),
                      final.float() if isinstance(final, Tensor) else final)


@torch.no_grad()
def _mismatch(member: Member, reference: _Reference, probe: Tensor) -> str | None:
    """What of ``member``'s run on ``probe`` differs from the module's, or None."""
    outputs, hidden = member.module(probe)
    rates = hidden
    if member.config["form"] == "current":
        rates = ACTIVATIONS[member.config["activation"]](hidden)
    checks = [("outputs", outputs, reference.outputs),
              ("rates (the module's first output)", rates, reference.rates)]
    if reference.final is not None:
        checks.append(("final state", hidden[:, -1], reference.final))
    for name, ours, theirs in checks:
        if not isinstance(theirs, Tensor) or theirs.shape != ours.shape:
            got = tuple(theirs.shape) if isinstance(theirs, Tensor) else type(theirs).__name__
            return f"{name} {got}, expected {tuple(ours.shape)}"
        if not torch.allclose(ours, theirs, atol=TOLERANCE, rtol=TOLERANCE):
            return f"{name} differ by up to {float((ours - theirs).abs().max()):.2g}"
    return None


def _describe(module: object) -> str:
    if isinstance(module, nn.Linear):
        return f"nn.Linear({module.in_features}, {module.out_features})"
    return f"a {type(module).__name__}"
