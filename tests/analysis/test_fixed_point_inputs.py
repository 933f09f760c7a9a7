"""find_fixed_points' boundary: state sizes, non-finite inputs and initial states, row counts,
and the step functions' own checks (member_step_fn, meta_step_fn), all named at the call."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import Tensor

from dynamo_lightning.analysis.fixed_points import (
    find_fixed_points,
    member_step_fn,
    meta_step_fn,
)
from dynamo_lightning.analysis.interpolation import fixed_points_at, interpolate_path
from dynamo_lightning.meta import MetaRNN
from dynamo_lightning.module import DynamoModule
from dynamo_lightning.population.architectures import MemberNetwork, build

H_STAR = 0.9575040240  # the positive root of tanh(2h) = h
NAN, INF = math.nan, math.inf


def bistable(h: Tensor, x: Tensor) -> Tensor:
    """Uncoupled units ``h' = tanh(2h)``: stable ±H_STAR, unstable 0 in every unit."""
    return torch.tanh(2 * h)


def gru_member(hidden: int = 32) -> MemberNetwork:
    return MemberNetwork(build("gru", input_size=3, output_size=3, hidden_size=hidden,
                               seeds=[4]))


class RowLinear:
    """``h' = a_r h + b_r``, row r's own map: position-dependent, so it has ``subset``."""

    def __init__(self, a: Tensor, b: Tensor) -> None:
        self.a, self.b, self.groups = a, b, torch.arange(a.shape[0])

    def __call__(self, h: Tensor, x: Tensor) -> Tensor:
        return self.a[:, None] * h + self.b[:, None]

    def subset(self, rows: Tensor) -> RowLinear:
        return RowLinear(self.a[rows], self.b[rows])


# ------------------------------------------------------------------- state sizes
def test_a_member_given_inits_of_another_state_size_names_both_sizes() -> None:
    with pytest.raises(ValueError, match=r"inits must be \[M, 32\].*got \(8, 16\)"):
        find_fixed_points(member_step_fn(gru_member(32)), torch.zeros(3), torch.randn(8, 16))


def test_an_lstm_members_state_is_h_and_c() -> None:
    lstm = MemberNetwork(build("lstm", input_size=2, output_size=1, hidden_size=4, seeds=[1]))
    with pytest.raises(ValueError, match=r"inits must be \[M, 8\].*got \(6, 4\)"):
        find_fixed_points(member_step_fn(lstm), torch.zeros(2), torch.randn(6, 4))


def test_the_meta_model_given_inits_of_another_state_size_names_both_sizes() -> None:
    meta = MetaRNN(3, 3, embedding_dim=2, hidden_size=8, cell="gru")
    step = meta_step_fn(meta, torch.randn(2, 2), 4)
    with pytest.raises(ValueError, match=r"inits must be \[M, 8\].*got \(8, 5\)"):
        find_fixed_points(step, torch.zeros(3), torch.randn(8, 5))


def test_a_plain_function_is_probed_once_on_one_row_without_gradients() -> None:
    calls: list[tuple[int, bool]] = []

    def widening(h: Tensor, x: Tensor) -> Tensor:
        calls.append((h.shape[0], torch.is_grad_enabled()))
        return torch.cat([h, h], dim=1)

    with pytest.raises(ValueError, match=r"maps one row of inits \[1, 16\] to \(1, 32\)"):
        find_fixed_points(widening, torch.zeros(3), torch.randn(8, 16))
    assert calls == [(1, False)]


def test_a_plain_function_that_fails_inside_torch_is_named_with_the_sizes() -> None:
    weight = torch.randn(16, 16)
    with pytest.raises(ValueError, match=r"step_fn failed on one row of inits \(8, 12\)") as err:
        find_fixed_points(lambda h, x: torch.tanh(h @ weight.T), torch.zeros(3),
                          torch.randn(8, 12))
    assert isinstance(err.value.__cause__, RuntimeError)


def test_the_probe_changes_nothing_for_right_sizes() -> None:
    grid = torch.linspace(-1.5, 1.5, 31)[:, None]
    fps = find_fixed_points(bistable, torch.zeros(1), grid)
    torch.testing.assert_close(fps.points.flatten().sort().values,
                               torch.tensor([-H_STAR, 0.0, H_STAR]))
    assert len(find_fixed_points(bistable, torch.zeros(1), torch.zeros(0, 2))) == 0


def test_step_functions_called_directly_name_the_state_size() -> None:
    with pytest.raises(ValueError, match=r"h must be \[M, 32\].*got \(4, 16\)"):
        member_step_fn(gru_member(32))(torch.zeros(4, 16), torch.zeros(4, 3))
    meta = MetaRNN(3, 3, embedding_dim=2, hidden_size=8, cell="gru")
    with pytest.raises(ValueError, match=r"h must be \[M, 8\].*got \(4, 5\)"):
        meta_step_fn(meta, torch.zeros(2, 2), 2)(torch.zeros(4, 5), torch.zeros(4, 3))


def test_meta_step_fn_checks_its_thetas_and_row_count() -> None:
    meta = MetaRNN(3, 3, embedding_dim=2, hidden_size=8, cell="gru")
    with pytest.raises(ValueError, match=r"thetas must be \[G>=1, 2\].*got \(2, 3\)"):
        meta_step_fn(meta, torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match=r"thetas must be finite.*row\(s\) \[1\]"):
        meta_step_fn(meta, torch.tensor([[0.0, 0.0], [NAN, 0.0]]), 4)
    with pytest.raises(ValueError, match="n_per_group must be a positive integer, got 0"):
        meta_step_fn(meta, torch.zeros(2, 2), 0)
    with pytest.raises(ValueError, match=r"step_fn runs 8 rows .* got inits \(6, 8\)"):
        find_fixed_points(meta_step_fn(meta, torch.zeros(2, 2), 4), torch.zeros(3),
                          torch.zeros(6, 8))


# ------------------------------------------------------------------- non-finite values
@pytest.mark.parametrize("x_const", [torch.tensor([0.0, NAN, 0.0]),
                                     torch.tensor([INF, 0.0, 0.0]),
                                     torch.zeros(4, 3).index_fill_(0, torch.tensor([2]), NAN)])
def test_a_non_finite_constant_input_is_refused(x_const: Tensor) -> None:
    with pytest.raises(ValueError, match="x_const must be finite"):
        find_fixed_points(member_step_fn(gru_member(8)), x_const, torch.zeros(4, 8))


@pytest.mark.parametrize("fill", [NAN, INF, -INF])
def test_inits_without_a_finite_row_are_refused(fill: float) -> None:
    with pytest.raises(ValueError, match=r"no finite row: all 5 rows of inits \(5, 2\)"):
        find_fixed_points(bistable, torch.zeros(1), torch.full((5, 2), fill))


def test_non_finite_init_rows_are_dropped_with_a_warning_naming_how_many() -> None:
    grid = torch.linspace(-1.5, 1.5, 31)[:, None]
    inits = torch.cat([grid[:10], torch.tensor([[NAN], [INF]]), grid[10:]])
    with pytest.warns(RuntimeWarning, match="2 of 33 rows of inits hold NaN/Inf"):
        fps = find_fixed_points(bistable, torch.zeros(1), inits)
    clean = find_fixed_points(bistable, torch.zeros(1), grid)
    torch.testing.assert_close(fps.points, clean.points)
    assert fps.kind == clean.kind


def test_dropped_rows_take_their_groups_and_position_dependent_rows_along() -> None:
    a = torch.tensor([0.0, 0.5, 0.9, -0.5])
    b = torch.tensor([1.0, -1.0, 0.5, 2.0])
    inits = torch.tensor([[0.0], [NAN], [0.0], [0.0]])
    with pytest.warns(RuntimeWarning, match="1 of 4 rows"):
        fps = find_fixed_points(RowLinear(a, b), torch.zeros(4, 1).index_fill_(0, torch.tensor(
            [1]), 7.0), inits, tol=1e-12, max_iters=3000)
    assert fps.num_groups == 4 and fps.group.tolist() == [0, 2, 3]
    kept = torch.tensor([0, 2, 3])
    torch.testing.assert_close(fps.points[:, 0], (b / (1 - a))[kept], atol=1e-4, rtol=0)


def test_a_meta_step_fn_search_drops_non_finite_rows_of_one_theta() -> None:
    torch.manual_seed(0)
    meta = MetaRNN(3, 3, embedding_dim=2, hidden_size=8, cell="gru")
    thetas, n = torch.randn(2, 2), 12
    inits = 0.5 * torch.randn(2 * n, 8)
    spoiled = inits.clone()
    spoiled[n : n + 3] = NAN  # three of θ₁'s rows
    with pytest.warns(RuntimeWarning, match="3 of 24 rows"):
        found = find_fixed_points(meta_step_fn(meta, thetas, n), torch.zeros(3), spoiled,
                                  max_iters=300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = find_fixed_points(meta_step_fn(meta, thetas[:1], n), torch.zeros(3),
                                  inits[:n], max_iters=300)
    assert found.num_groups == 2 and found.count(group=1) >= 1
    torch.testing.assert_close(found.split()[0].points, first.points, atol=1e-4, rtol=0)


# ------------------------------------------------------------------- θ's of the meta-model
def _module() -> DynamoModule:
    torch.manual_seed(0)
    return DynamoModule(num_members=2, input_size=3, output_size=3, num_components=2,
                        meta={"hidden_size": 4})


@pytest.mark.parametrize("bad", [NAN, INF])
def test_non_finite_thetas_are_refused_by_fixed_points_at_and_interpolate_path(
        bad: float) -> None:
    module = _module()
    thetas = torch.tensor([[0.0, 0.0], [bad, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match=r"thetas must be finite.*row\(s\) \[1\]"):
        fixed_points_at(module, thetas)
    with pytest.raises(ValueError, match=r"thetas must be finite.*row\(s\) \[1\]"):
        interpolate_path(module, thetas, fixed_points=False)
