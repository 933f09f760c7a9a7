"""``Population.from_arrays``: PsychRNN-style weight arrays (post×pre) as ctrnn members.

A member built from arrays must compute what a plain numpy implementation of the same
equations computes, for both forms, every activation and with Dale's law; every malformed
input is refused with one message naming the member, the array and the expected shape.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynamo_lightning.population import Population

IN, H, OUT, B, T = 3, 8, 2, 4, 10
NUMPY_ACTIVATIONS = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh,
                     "softplus": lambda z: np.log1p(np.exp(z))}


def arrays(seed: int = 0, dale_ratio: float | None = None, autapses: bool = True
           ) -> dict[str, np.ndarray]:
    """Random float64 weights; with Dale, ``W_rec``'s columns carry the units' signs."""
    rng = np.random.default_rng(seed)
    w_rec = rng.normal(0, 1.2 / np.sqrt(H), (H, H))
    if dale_ratio is not None:
        sign = np.where(np.arange(H) < int(dale_ratio * H), 1.0, -1.0)
        w_rec = np.abs(w_rec) * sign[None, :]  # column j = presynaptic unit j
    if not autapses:
        np.fill_diagonal(w_rec, 0.0)
    return {"W_in": rng.normal(0, 1, (H, IN)), "W_rec": w_rec, "b_rec": rng.normal(0, 0.1, H),
            "W_out": rng.normal(0, 1, (OUT, H)), "b_out": rng.normal(0, 0.1, OUT)}


def numpy_run(spec: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The equations in numpy, column-vector convention: ``(outputs, states)`` [B, T, ·]."""
    f = NUMPY_ACTIVATIONS[spec.get("activation", "relu")]
    alpha, form = spec["alpha"], spec.get("form", "rate")
    w_in, w_rec, w_out = spec["W_in"], spec["W_rec"], spec["W_out"]
    b_rec, b_out = spec.get("b_rec", np.zeros(H)), spec["b_out"]
    state = np.zeros((x.shape[0], H))
    states = []
    for t in range(x.shape[1]):
        if form == "rate":
            drive = f(x[:, t] @ w_in.T + state @ w_rec.T + b_rec)
        else:
            drive = x[:, t] @ w_in.T + f(state) @ w_rec.T + b_rec
        state = (1 - alpha) * state + alpha * drive
        states.append(state)
    hidden = np.stack(states, axis=1)
    rates = hidden if form == "rate" else f(hidden)
    return rates @ w_out.T + b_out, hidden


def trials() -> np.ndarray:
    return np.random.default_rng(5).normal(0, 1.5, (B, T, IN))


@pytest.mark.parametrize("form", ["rate", "current"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "softplus"])
@pytest.mark.parametrize("dale", [False, True])
def test_member_from_arrays_equals_numpy_equations(form: str, activation: str,
                                                   dale: bool) -> None:
    spec = {**arrays(dale_ratio=0.75 if dale else None, autapses=not dale), "alpha": 0.2,
            "form": form, "activation": activation}
    if dale:
        spec.update(dale_ratio=0.75, autapses=False)
    pop = Population.from_arrays({"net": spec})
    member = pop["net"]
    assert member.architecture == "ctrnn" and member.config["form"] == form
    assert member.metadata == {"architecture": "ctrnn", "hidden_size": H, "source": "arrays"}
    x = trials()
    want_out, want_hidden = numpy_run(spec, x)
    traj = pop.trajectories(torch.from_numpy(x).float())
    np.testing.assert_allclose(traj.outputs[0].numpy(), want_out, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(traj.hidden[0].numpy(), want_hidden, atol=1e-5, rtol=1e-5)
    assert np.abs(want_hidden).max() > 0.1  # the dynamics did something


def test_tensors_dt_tau_and_omitted_b_rec_are_accepted() -> None:
    spec = arrays(seed=1)
    del spec["b_rec"]
    as_tensors = {k: torch.from_numpy(v) for k, v in spec.items()}
    pop = Population.from_arrays({"a": {**spec, "dt": 10, "tau": 50},
                                  "b": {**as_tensors, "alpha": 0.2, "noise_std": 0.1}},
                                 metadata={"b": {"task": "flipflop"}})
    assert pop["a"].config["alpha"] == pytest.approx(0.2) and pop["b"].config["noise_std"] == 0.1
    assert pop["b"].metadata["task"] == "flipflop"
    torch.testing.assert_close(pop["a"].state["bias_hh"], torch.zeros(H))
    traj = pop.trajectories(torch.from_numpy(trials()).float())
    want_out, _ = numpy_run({**spec, "alpha": 0.2}, trials())
    for k in range(2):
        np.testing.assert_allclose(traj.outputs[k].numpy(), want_out, atol=1e-5, rtol=1e-5)


def test_members_from_arrays_save_and_load(tmp_path) -> None:
    pop = Population.from_arrays({"d": {**arrays(dale_ratio=0.5), "alpha": 0.1,
                                        "dale_ratio": 0.5}})
    loaded = Population.load(pop.save(tmp_path / "pop"))
    assert loaded.checksum == pop.checksum and loaded["d"].config["dale_ratio"] == 0.5


def _with(**changes: object) -> dict:
    spec = {**arrays(), "alpha": 0.2}
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    return spec


def _nan_w_in() -> np.ndarray:
    w = arrays()["W_in"].copy()
    w[0, 0] = np.nan
    return w


REFUSED = {  # case → (spec, fragments the message must hold)
    "w_in_shape": (_with(W_in=np.zeros((H, IN, 1))),
                   ["W_in has shape [8, 3, 1]", "expected [H, I] = [8, I]"]),
    "w_in_rows": (_with(W_in=np.zeros((H - 1, IN))),
                  ["W_in has shape [7, 3]", "expected [H, I] = [8, 3]"]),
    "w_out_cols": (_with(W_out=np.zeros((OUT, H + 1))),
                   ["W_out has shape [2, 9]", "expected [O, H] = [2, 8]"]),
    "b_out_size": (_with(b_out=np.zeros(OUT + 1)),
                   ["b_out has shape [3]", "expected [O] = [2]"]),
    "b_rec_size": (_with(b_rec=np.zeros((H, 1))),
                   ["b_rec has shape [8, 1]", "expected [H] = [8]"]),
    "w_rec_square": (_with(W_rec=np.zeros((H, H - 1))),
                     ["W_rec has shape [8, 7]", "expected a square [H, H]"]),
    "nan": (_with(W_in=_nan_w_in()), ["W_in [8, 3] holds NaN or infinite"]),
    "unknown_key": (_with(W_inn=np.zeros(3)), ["unknown key(s) ['W_inn']", "W_in [H, I]"]),
    "missing": (_with(W_out=None), ["missing array(s) ['W_out']", "W_out [O, H]"]),
    "no_alpha": (_with(alpha=None), ["give alpha", "or dt and tau"]),
    "not_array": (_with(W_in="weights"), ["W_in must be a numpy array or a tensor [H, I]"]),
    "dale_signs": (_with(dale_ratio=0.75),
                   ["W_rec [8, 8] has signs that contradict dale_ratio=0.75",
                    "expected W_rec [H, H] = [post, pre] with columns 0..5 >= 0"]),
    "autapses": (_with(autapses=False), ["W_rec [8, 8] has a nonzero diagonal",
                                         "autapses=False"]),
    "activation": (_with(activation="sigmoid"), ["activation must be one of"]),
}


@pytest.mark.parametrize("case", REFUSED)
def test_bad_arrays_are_refused_naming_member_array_and_shape(case: str) -> None:
    spec, fragments = REFUSED[case]
    with pytest.raises(ValueError) as info:
        Population.from_arrays({"good": _with(), "bad-net": spec})
    message = str(info.value)
    assert message.startswith("member 'bad-net': ")
    for fragment in fragments:
        assert fragment in message


def test_dale_signs_that_agree_except_one_column_name_that_column() -> None:
    spec = {**arrays(dale_ratio=0.75), "alpha": 0.2, "dale_ratio": 0.75}
    spec["W_rec"][2, 7] = 0.5  # inhibitory unit 7 excites unit 2
    with pytest.raises(ValueError, match=r"presynaptic column\(s\) 7; expected"):
        Population.from_arrays({"net": spec})


@pytest.mark.parametrize("members, match", [
    ({}, "from_arrays takes a non-empty dict"),
    ({"a b": _with()}, "not a safe file name"),
    ({"a": [1, 2]}, "member 'a': expected a dict of arrays and options, got list"),
])
def test_bad_containers_are_refused(members: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Population.from_arrays(members)  # type: ignore[arg-type]
