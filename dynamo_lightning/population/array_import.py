"""Networks given as weight arrays (PsychRNN, numpy, another framework) as ``ctrnn`` members.

Arrays follow the post×pre convention of PsychRNN and ``torch.nn.Linear`` (row = receiving
unit): ``W_in [H, I]``, ``W_rec [H, H]``, ``W_out [O, H]``, ``b_rec [H]``, ``b_out [O]``, and
optionally ``b_in [H]`` (an input bias, as ``nn.Linear`` has; default zeros) — ``b_rec`` may
be omitted too. The ``ctrnn`` architecture stores them transposed (input-major, ``x @ W``).
With Dale's law ``W_rec`` holds the *effective* weights: column ``j`` (presynaptic unit
``j``) must be ≥ 0 for the ``int(dale_ratio · H)`` excitatory units and ≤ 0 for the rest;
the member keeps ``|W_recᵀ| · sign``, which equals ``W_recᵀ``. Every fault is refused with
one ``ValueError`` naming the member, the array, its shape and the expected one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dynamo_lightning.population.architectures.ctrnn import CTRNN
from dynamo_lightning.population.import_metadata import check_import, merge_metadata
from dynamo_lightning.population.member import Member

#: Array keys and their shapes in words; ``b_in`` and ``b_rec`` may be omitted (zeros).
ARRAYS = {"W_in": "[H, I]", "W_rec": "[H, H]", "b_in": "[H]", "b_rec": "[H]",
          "W_out": "[O, H]", "b_out": "[O]"}
OPTIONAL_ARRAYS = ("b_in", "b_rec")
#: Option keys, passed on to the ``ctrnn`` architecture (``alpha``, or ``dt`` and ``tau``).
OPTIONS = ("alpha", "dt", "tau", "activation", "form", "dale_ratio", "autapses", "noise_std")


def members_from_arrays(members: Mapping[str, Mapping[str, Any]],
                        metadata: Mapping[str, Mapping[str, Any]] | None = None) -> list[Member]:
    """One ``ctrnn`` member per ``{id: {array or option: value}}`` entry, in order.

    Args:
        members: ``{id: {"W_in", "W_rec", "W_out", "b_out", ["b_rec", "b_in"], "alpha" (or
            "dt" and "tau"), [activation, form, dale_ratio, autapses, noise_std]}}``;
            arrays are numpy arrays or tensors (see the module doc for their shapes).
        metadata: optional ``{id: dict}``, merged over ``architecture="ctrnn"``,
            ``hidden_size`` and ``source="arrays"``.

    Raises:
        ValueError: naming the member, the array or key and what is valid.
    """
    metadata = check_import(members, metadata, "from_arrays", "{'W_in': ..., 'alpha': ...}")
    return [member_from_arrays(member_id, spec, metadata.get(member_id))
            for member_id, spec in members.items()]


def member_from_arrays(member_id: str, spec: Mapping[str, Any], metadata: object = None,
                       defaults: Mapping[str, Any] | None = None,
                       source: str = "its arrays") -> Member:
    """One ``ctrnn`` member from ``spec`` (see ``members_from_arrays``).

    Args:
        member_id: the member's id.
        spec: arrays and options.
        metadata: the user's metadata dict, or None.
        defaults: metadata defaults besides ``architecture`` and ``hidden_size`` (default
            ``{"source": "arrays"}``).
        source: what the arrays came from, in words, for metadata that contradicts them.

    Raises:
        ValueError: naming the member, the array or key and what is valid.
    """
    where = f"member {member_id!r}"
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a dict of arrays and options, got "
                         f"{type(spec).__name__}")
    unknown = sorted(set(spec) - set(ARRAYS) - set(OPTIONS), key=str)
    missing = [k for k in ARRAYS if k not in spec and k not in OPTIONAL_ARRAYS]
    if unknown or missing:
        raise ValueError(f"{where}: {_keys_fault(unknown, missing)} (arrays: "
                         f"{', '.join(f'{k} {s}' for k, s in ARRAYS.items())}, b_in and b_rec "
                         f"optional; options: {', '.join(OPTIONS)})")
    if "alpha" not in spec and not ("dt" in spec and "tau" in spec):
        raise ValueError(f"{where}: give alpha (= dt/tau, in (0, 1]), or dt and tau")
    arrays = {k: _tensor(where, k, spec[k]) for k in ARRAYS if k in spec}
    sizes = _check_shapes(where, arrays)
    hidden = sizes["H"]
    arrays.setdefault("b_in", torch.zeros(hidden))
    arrays.setdefault("b_rec", torch.zeros(hidden))
    state = {"weight_ih": arrays["W_in"].T, "weight_hh": arrays["W_rec"].T,
             "bias_ih": arrays["b_in"], "bias_hh": arrays["b_rec"],
             "readout_weight": arrays["W_out"].T, "readout_bias": arrays["b_out"]}
    state = {k: v.contiguous() for k, v in state.items()}
    options = {k: spec[k] for k in OPTIONS if k in spec}
    try:
        stack = CTRNN.from_member_states([state], input_size=sizes["I"],
                                         output_size=sizes["O"], hidden_size=hidden, **options)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    _check_recurrent_signs(where, arrays["W_rec"], stack)
    meta = merge_metadata(member_id, {"architecture": "ctrnn", "hidden_size": hidden,
                                      **(defaults or {"source": "arrays"})}, metadata, source)
    return Member(member_id, "ctrnn", stack.config(), meta, state)


def _keys_fault(unknown: list[str], missing: list[str]) -> str:
    parts = [f"unknown key(s) {unknown}"] if unknown else []
    return "; ".join([*parts, *([f"missing array(s) {missing}"] if missing else [])])


def _tensor(where: str, name: str, value: object) -> Tensor:
    """``value`` (a numpy array, tensor or nested list of reals) as a float32 CPU copy."""
    if isinstance(value, Tensor):
        t = value.detach()
    elif isinstance(value, np.ndarray | list | tuple):
        try:
            t = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {name} is not a numeric array ({err})") from None
    else:
        raise ValueError(f"{where}: {name} must be a numpy array or a tensor "
                         f"{ARRAYS[name]}, got {type(value).__name__}")
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{where}: {name} must hold real numbers, got dtype {t.dtype}")
    t = t.to("cpu", torch.float32).clone()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{where}: {name} {_shape(t)} holds NaN or infinite values (or ones "
                         "beyond float32's range); a member's weights must be finite")
    return t


def _check_shapes(where: str, arrays: dict[str, Tensor]) -> dict[str, int]:
    """``{"H", "I", "O"}`` read from ``W_rec``, ``W_in`` and ``W_out``, every array checked
    against them; a ValueError names the first that does not fit."""
    w_rec, w_in, w_out = arrays["W_rec"], arrays["W_in"], arrays["W_out"]
    if w_rec.dim() != 2 or w_rec.shape[0] != w_rec.shape[1] or w_rec.shape[0] == 0:
        raise ValueError(f"{where}: W_rec has shape {_shape(w_rec)}, expected a square "
                         "[H, H] with H >= 1")
    hidden = w_rec.shape[0]
    inputs = w_in.shape[1] if w_in.dim() == 2 and w_in.shape[1] > 0 else "I"
    outputs = w_out.shape[0] if w_out.dim() == 2 and w_out.shape[0] > 0 else "O"
    expected = {"W_in": (hidden, inputs), "W_out": (outputs, hidden), "b_in": (hidden,),
                "b_rec": (hidden,), "b_out": (outputs,)}
    for name, shape in expected.items():
        if name in arrays and tuple(arrays[name].shape) != shape:
            words = ", ".join(map(str, shape))
            raise ValueError(f"{where}: {name} has shape {_shape(arrays[name])}, expected "
                             f"{ARRAYS[name]} = [{words}] (H = {hidden} from W_rec "
                             f"{_shape(w_rec)}, I from W_in, O from W_out)")
    return {"H": hidden, "I": int(inputs), "O": int(outputs)}


def _check_recurrent_signs(where: str, w_rec: Tensor, stack: CTRNN) -> None:
    """Refuse a ``W_rec [post, pre]`` that the member would not reproduce: a nonzero
    diagonal without autapses, or a presynaptic column whose sign contradicts Dale's law."""
    hidden = w_rec.shape[0]
    if not stack.options["autapses"] and bool(w_rec.diagonal().ne(0).any()):
        raise ValueError(f"{where}: W_rec {_shape(w_rec)} has a nonzero diagonal but "
                         "autapses=False; expected W_rec [H, H] with a zero diagonal (or "
                         "autapses=True)")
    n_exc = stack.excitatory_size
    if n_exc is None:
        return
    wrong = torch.cat([w_rec[:, :n_exc].lt(0).any(0), w_rec[:, n_exc:].gt(0).any(0)])
    if bool(wrong.any()):
        columns = wrong.nonzero().flatten().tolist()
        shown = ", ".join(map(str, columns[:8])) + (", ..." if len(columns) > 8 else "")
        raise ValueError(
            f"{where}: W_rec {_shape(w_rec)} has signs that contradict dale_ratio="
            f"{stack.options['dale_ratio']!r} in presynaptic column(s) {shown}; expected "
            f"W_rec [H, H] = [post, pre] with columns 0..{n_exc - 1} >= 0 (excitatory) and "
            f"{n_exc}..{hidden - 1} <= 0 (inhibitory)")


def _shape(t: Tensor) -> str:
    return f"[{', '.join(map(str, t.shape))}]"
