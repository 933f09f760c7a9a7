"""Fixed-point finder: systems with known answers, groups, Newton, outliers, real networks."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import Tensor
from trained import trained_member

import dynamo_lightning as dl
from dynamo_lightning.analysis.fixed_points import (
    FixedPointSet,
    find_fixed_points,
    member_step_fn,
    meta_step_fn,
    sample_inits,
)
from dynamo_lightning.meta import MetaRNN
from dynamo_lightning.population.architectures import MemberNetwork, build

H_STAR = 0.9575040240  # the positive root of tanh(2h) = h


def bistable(h: Tensor, x: Tensor) -> Tensor:
    """Uncoupled units ``h' = tanh(2h)``: stable ±H_STAR, unstable 0 in every unit."""
    return torch.tanh(2 * h)


def grid(n: int, dims: int, low: float = -1.5, high: float = 1.5) -> Tensor:
    axes = torch.linspace(low, high, n)
    return torch.cartesian_prod(*[axes] * dims).reshape(-1, dims)


# ------------------------------------------------------------------- known answers
def test_linear_map_has_its_solved_fixed_point_and_eigenvalues() -> None:
    a = torch.tensor([[0.5, 0.2, 0.0], [0.0, -0.3, 0.1], [0.0, 0.0, 1.5]])
    b = torch.tensor([1.0, 2.0, 3.0])
    fps = find_fixed_points(lambda h, x: h @ a.T + b, torch.zeros(1), torch.randn(16, 3),
                            max_iters=50)
    assert len(fps) == 1 and fps.kind == ["saddle"] and not bool(fps.is_stable[0])
    torch.testing.assert_close(fps.points[0], torch.linalg.solve(torch.eye(3) - a, b))
    torch.testing.assert_close(fps.eigvals[0], torch.tensor([1.5, 0.5, -0.3]).to(fps.eigvals))
    assert fps.n_unstable.tolist() == [1] and fps.eigvals.dtype == torch.complex64
    assert fps.q[0] < 1e-8 and math.isnan(float(fps.distance_to_data[0]))


def test_jacobian_fn_replaces_torch_func() -> None:
    a = torch.tensor([[0.5, 0.1], [0.0, 0.2]])
    calls = []

    def jacobian(h: Tensor, x: Tensor) -> Tensor:
        calls.append(h.shape[0])
        return a.expand(h.shape[0], 2, 2)

    fps = find_fixed_points(lambda h, x: h @ a.T + 1.0, torch.zeros(1), torch.randn(4, 2),
                            max_iters=10, jacobian_fn=jacobian)
    # the hand-off's Newton step on all 4 rows, then the final steps on the 1 point left
    assert calls[0] == 4 and set(calls[1:]) == {1} and fps.kind == ["stable"]
    torch.testing.assert_close(fps.eigvals.abs()[0], torch.tensor([0.5, 0.2]))


def test_bistable_unit_has_two_stable_and_one_unstable_point() -> None:
    fps = find_fixed_points(bistable, torch.zeros(1), grid(31, 1))
    assert sorted(fps.kind) == ["stable", "stable", "unstable"]
    points = sorted(fps.points.flatten().tolist())
    torch.testing.assert_close(torch.tensor(points), torch.tensor([-H_STAR, 0.0, H_STAR]))
    slope = {round(p, 3): 2 * (1 - math.tanh(2 * p) ** 2) for p in points}
    for point, eig in zip(fps.points.flatten().tolist(), fps.eigvals.real.flatten().tolist(),
                          strict=True):
        assert eig == pytest.approx(slope[round(point, 3)], abs=1e-4)


def test_two_bistable_units_give_four_stable_four_saddles_one_source() -> None:
    with torch.no_grad():  # works with gradients disabled globally
        fps = find_fixed_points(bistable, torch.zeros(1), grid(13, 2))
    summary = fps.summary()
    assert (summary["stable"], summary["saddle"], summary["unstable"]) == (4, 4, 1)
    assert summary["total"] == len(fps) == 9 and summary["groups"][0]["total"] == 9
    assert fps.n_unstable[[k == "saddle" for k in fps.kind]].tolist() == [1] * 4
    assert fps.count("stable", group=0) == 4 and fps.count(group=0) == 9
    assert fps.points.abs().max() == pytest.approx(H_STAR, abs=1e-5)


def test_groups_keep_their_points_apart() -> None:
    # Group 0: h' = tanh(2h) (3 points); group 1: h' = tanh(h/2) (only 0). The shared point
    # at 0 is reported once per group, never merged across groups.
    inits = grid(21, 1).repeat(2, 1)
    groups = torch.arange(2).repeat_interleave(21)
    gains = torch.tensor([2.0, 0.5])[groups][:, None]
    fps = find_fixed_points(lambda h, x: torch.tanh(x * h), gains, inits, groups=groups)
    assert fps.group.tolist() == sorted(fps.group.tolist())
    assert [fps.count(group=g) for g in (0, 1)] == [3, 1]
    first, second = fps.split()
    assert isinstance(first, FixedPointSet) and first.num_groups == 2
    assert sorted(first.kind) == ["stable", "stable", "unstable"] and second.kind == ["stable"]
    assert second.points.abs().item() < 1e-4 and second.group.tolist() == [1]
    assert fps.summary()["groups"][1]["stable"] == 1


class RowLinear:
    """``h' = a_r h + b_r`` with row r's own (a_r, b_r): position-dependent, so it has
    ``subset``, and ``groups`` (one group per row) like ``meta_step_fn``'s."""

    def __init__(self, a: Tensor, b: Tensor) -> None:
        self.a, self.b, self.groups = a, b, torch.arange(a.shape[0])
        self.calls: list[int] = []

    def __call__(self, h: Tensor, x: Tensor) -> Tensor:
        self.calls.append(h.shape[0])
        return self.a[:, None] * h + self.b[:, None]

    def subset(self, rows: Tensor) -> RowLinear:
        part = RowLinear(self.a[rows], self.b[rows])
        part.calls = self.calls
        return part


def test_position_dependent_rows_use_subset_as_rows_converge() -> None:
    a = torch.tensor([0.0, 0.1, 0.5, 0.9, 0.97, -0.5, 0.3, 0.6])  # fast and slow rows
    b = torch.linspace(-1.0, 1.0, 8)
    step = RowLinear(a, b)
    fps = find_fixed_points(step, torch.zeros(1), torch.zeros(8, 1), tol=1e-12,
                            max_iters=3000, newton_steps=0)
    assert fps.group.tolist() == list(range(8)) and fps.num_groups == 8
    torch.testing.assert_close(fps.points[:, 0], b / (1 - a), atol=1e-4, rtol=0)
    torch.testing.assert_close(fps.eigvals.real[:, 0], a)
    assert min(step.calls[1:]) < 8  # converged rows left the batch


def test_newton_polish_lowers_q() -> None:
    inits = grid(9, 2)
    plain = find_fixed_points(bistable, torch.zeros(1), inits, tol=1e-4, newton_steps=0)
    polished = find_fixed_points(bistable, torch.zeros(1), inits, tol=1e-4, newton_steps=3)
    assert len(plain) == len(polished) == 9
    assert polished.q.max() < 1e-3 * plain.q.max()
    assert 0 < polished.iterations < plain.iterations  # Newton takes over from Adam


def test_outliers_far_from_the_reference_are_dropped_and_distances_reported() -> None:
    reference = torch.linspace(0.0, 1.0, 101)[:, None]  # mean 0.5, RMS radius ≈ 0.29
    kept = find_fixed_points(bistable, torch.zeros(1), grid(31, 1), reference=reference)
    assert sorted(kept.points.flatten().tolist()) == pytest.approx([0.0, H_STAR], abs=1e-5)
    assert kept.distance_to_data.max() < 0.01
    everything = find_fixed_points(bistable, torch.zeros(1), grid(31, 1), reference=reference,
                                   max_distance=None)
    far = everything.select(everything.points[:, 0] < 0)
    assert len(everything) == 3 and far.distance_to_data.item() == pytest.approx(H_STAR, 1e-4)
    per_group = find_fixed_points(bistable, torch.zeros(1), grid(31, 1),
                                  groups=torch.zeros(31, dtype=torch.long), reference=[reference])
    torch.testing.assert_close(per_group.points, kept.points)


def test_slow_points_are_kept_with_slow_tol() -> None:
    # h' = h + 0.01 (1 − h²)·h²: fixed points at 0 (marginal) and ±1; near 0, q ~ h⁴·1e-4.
    def creep(h: Tensor, x: Tensor) -> Tensor:
        return h + 1e-2 * (1 - h**2) * h**2

    inits = torch.linspace(-0.3, 0.3, 7)[:, None]
    fast = find_fixed_points(creep, torch.zeros(1), inits, tol=1e-14, max_iters=5,
                             newton_steps=0)
    slow = find_fixed_points(creep, torch.zeros(1), inits, tol=1e-14, max_iters=5,
                             newton_steps=0, slow_tol=1e-6)
    assert len(slow) > len(fast) and slow.count("slow") >= 4
    assert bool((slow.q[[k == "slow" for k in slow.kind]] >= 1e-14).all())


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="inits"):
        find_fixed_points(bistable, torch.zeros(1), torch.zeros(3))
    with pytest.raises(ValueError, match="x_const"):
        find_fixed_points(bistable, torch.zeros(2, 1), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="groups"):
        find_fixed_points(bistable, torch.zeros(1), torch.zeros(3, 1), groups=torch.zeros(2))
    with pytest.raises(ValueError, match="slow_tol"):
        find_fixed_points(bistable, torch.zeros(1), torch.zeros(3, 1), slow_tol=1e-9)
    with pytest.raises(ValueError, match="reference"):
        find_fixed_points(bistable, torch.zeros(1), torch.zeros(3, 1), reference=torch.zeros(4, 2))


def test_sample_inits_draws_noisy_data_states() -> None:
    data = torch.randn(5, 7, 3) * torch.tensor([1.0, 10.0, 0.0])
    g = torch.Generator().manual_seed(0)
    exact = sample_inits(data, 50, generator=g)
    assert exact.shape == (50, 3)
    assert bool((exact[:, None] == data.reshape(1, -1, 3)).all(-1).any(1).all())
    noisy = sample_inits(data, 2000, noise=0.5, generator=g)
    assert noisy[:, 2].abs().max() == 0  # no noise where the data does not vary
    assert noisy[:, 1].std() > 3 * noisy[:, 0].std()


# ------------------------------------------------------------------- networks
def test_gru_member_through_member_step_fn_leaves_parameters_alone() -> None:
    net = MemberNetwork(build("gru", input_size=3, output_size=3, hidden_size=8, seeds=[4]))
    net.requires_grad_(True)  # trainable parameters must still get no .grad
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    with torch.no_grad():
        hidden = net(torch.randn(4, 20, 3))[1]
    inits = sample_inits(hidden, 32, 0.1, torch.Generator().manual_seed(0))
    fps = find_fixed_points(member_step_fn(net), torch.zeros(3), inits, reference=hidden,
                            max_iters=300)
    assert len(fps) >= 1 and fps.eigvals.shape == (len(fps), 8)
    x = torch.zeros(len(fps), 3)
    torch.testing.assert_close(net.step(fps.points, x), fps.points, atol=1e-4, rtol=0)
    h = fps.points.clone().requires_grad_(True)
    member_step_fn(net)(h, x).sum().backward()  # called directly: gradients reach h only
    assert h.grad is not None
    for name, p in net.named_parameters():
        assert p.grad is None and p.requires_grad and torch.equal(p, before[name])


def test_lstm_member_eigenvalues_match_autograd_jacobian() -> None:
    net = MemberNetwork(build("lstm", input_size=2, output_size=1, hidden_size=4, seeds=[1]))
    fps = find_fixed_points(member_step_fn(net), torch.zeros(2), 0.1 * torch.randn(16, 8))
    assert len(fps) >= 1
    point = fps.points[0]
    jac = torch.autograd.functional.jacobian(lambda h: net.step(h[None], torch.zeros(1, 2))[0],
                                             point)
    expected = torch.linalg.eigvals(jac.double()).abs().sort(descending=True).values
    torch.testing.assert_close(fps.eigvals[0].abs().double(), expected, atol=1e-5, rtol=1e-4)


def test_meta_step_fn_runs_every_theta_in_one_batch() -> None:
    torch.manual_seed(0)
    meta = MetaRNN(3, 3, embedding_dim=2, hidden_size=8, cell="gru")
    thetas, n = torch.randn(3, 2), 24
    inits = 0.5 * torch.randn(3 * n, 8)
    step = meta_step_fn(meta, thetas, n)
    batched = find_fixed_points(step, torch.zeros(3), inits, max_iters=300)
    assert batched.num_groups == 3 and step.groups is not None
    for g, part in enumerate(batched.split()):
        alone = find_fixed_points(meta_step_fn(meta, thetas[g : g + 1], n), torch.zeros(3),
                                  inits[g * n : (g + 1) * n], max_iters=300)
        assert len(part) == len(alone) >= 1
        torch.testing.assert_close(part.points, alone.points, atol=1e-4, rtol=0)
    assert all(p.grad is None and p.requires_grad for p in meta.parameters())
    with pytest.raises(ValueError, match="rows"):
        step(inits[:5], torch.zeros(5, 3))


def test_trained_flipflop_gru_has_eight_stable_points() -> None:
    task = dl.tasks.get("flipflop", n_bits=3, seq_len=24, pulse_prob=0.1)
    net = trained_member("gru", task, hidden=16, steps=250, lr=3e-2, seed=0)
    g = torch.Generator().manual_seed(1)
    x, y = task.sample(64, generator=g)
    with torch.no_grad():
        outputs, hidden = net(x)
    assert task.metric(outputs, y) > 0.98
    fps = find_fixed_points(member_step_fn(net), torch.zeros(3), sample_inits(hidden, 256, 0.1, g),
                            max_iters=1500, reference=hidden)
    stable = fps.select(fps.is_stable)
    assert len(stable) == 8, fps.summary()
    corners = torch.unique(net.readout(stable.points).sign(), dim=0)
    assert corners.shape == (8, 3)  # one attractor per memory state
    assert fps.count("saddle") >= 3 and float(stable.distance_to_data.max()) < 0.5


def test_trained_integrator_gru_has_a_line_of_slow_points() -> None:
    task = dl.tasks.get("integrator", n_channels=1, seq_len=32)
    net = trained_member("gru", task, hidden=16, steps=250, lr=1e-2, seed=0)
    g = torch.Generator().manual_seed(1)
    x, y = task.sample(64, generator=g)
    with torch.no_grad():
        outputs, hidden = net(x)
    assert task.metric(outputs, y) > 0.9
    fps = find_fixed_points(member_step_fn(net), torch.zeros(1), sample_inits(hidden, 128, 0, g),
                            tol=1e-10, slow_tol=1e-5, max_iters=200, newton_steps=0,
                            dedupe_tol=0.02, reference=hidden)
    assert len(fps) >= 10 and fps.count("slow") >= 5
    top = fps.eigvals.abs()
    assert float((top[:, 0] - 1).abs().median()) < 0.03  # one marginal direction
    assert float(top[:, 1].median()) < 0.95  # the others contract
    centred = fps.points - fps.points.mean(0)
    spread = torch.linalg.svdvals(centred) ** 2
    assert spread[0] / spread.sum() > 0.8  # the points lie along a line
    readout = net.readout(fps.points).flatten()
    assert float(readout.max() - readout.min()) > 0.8  # ... that spans the integral's range


def test_helpers_reject_non_recurrent_modules() -> None:
    with pytest.raises(TypeError, match="step"):
        member_step_fn(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="thetas"):
        meta_step_fn(MetaRNN(1, 1, 2, hidden_size=4), torch.zeros(2), 3)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _meta_problem(device: str, thetas: int = 8, inits: int = 32):
    torch.manual_seed(0)
    meta = MetaRNN(3, 3, embedding_dim=2, hidden_size=16, cell="gru").to(device)
    theta = torch.randn(thetas, 2, generator=torch.Generator().manual_seed(1)).to(device)
    x, _ = dl.tasks.get("flipflop", n_bits=3).sample(8 * thetas)
    with torch.no_grad():
        hidden = meta(x.to(device), theta.repeat_interleave(8, 0))[1]
    refs = list(hidden.reshape(thetas, -1, hidden.shape[-1]))
    g = torch.Generator().manual_seed(2)
    init = torch.cat([sample_inits(r.cpu(), inits, 0.1, g) for r in refs]).to(device)
    return meta_step_fn(meta, theta, inits), init, refs


def _counting_calls(step) -> list[int]:
    """Count the Python-level calls of the meta-model's step (a graph replay makes none)."""
    meta, calls, original = step.module, [0], step.module.step

    def counted(*args: Tensor) -> Tensor:
        calls[0] += 1
        return original(*args)

    meta.step = counted
    return calls


@cuda
def test_cuda_graphs_find_what_the_eager_search_finds() -> None:
    _compare_graphed_and_eager("cuda", graphs_run=True)


@cuda
def test_a_second_gpu_in_the_same_process_still_finds_the_same_points() -> None:
    """Capturing on a GPU after another one ran autograd in this process fails in torch
    (each DDP rank has one GPU, where it works): the search must then run eagerly."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    _compare_graphed_and_eager("cuda:0", graphs_run=True)
    previous = torch.cuda.current_device()
    torch.cuda.set_device(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the capture's failure
            _compare_graphed_and_eager("cuda:1", graphs_run=False)
    finally:
        torch.cuda.set_device(previous)


def _compare_graphed_and_eager(device: str, graphs_run: bool) -> None:
    step, inits, refs = _meta_problem(device)
    calls = _counting_calls(step)
    zero = torch.zeros(3, device=device)
    for handoff in (1e-4, None):  # with the Newton hand-off (the default), and Adam alone
        calls[0] = 0
        graphed = find_fixed_points(step, zero, inits, reference=refs, max_iters=600,
                                    handoff=handoff)
        graphed_calls, calls[0] = calls[0], 0
        eager = find_fixed_points(step, zero, inits, reference=refs, max_iters=600,
                                  cuda_graphs=False, handoff=handoff)
        assert [len(p) for p in graphed.split()] == [len(p) for p in eager.split()]
        assert graphed.kind == eager.kind and graphed.iterations == eager.iterations
        torch.testing.assert_close(graphed.points, eager.points, atol=1e-4, rtol=0)
        if graphs_run:  # Newton's calls are Python's in both: the graph ran most of Adam
            assert calls[0] - graphed_calls > eager.iterations / 2, (calls, graphed_calls)


@cuda
def test_rows_on_a_gpu_that_is_not_current_run_eagerly() -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    step, inits, refs = _meta_problem("cuda:1")  # cuda:0 stays current
    calls = _counting_calls(step)
    found = find_fixed_points(step, torch.zeros(3, device="cuda:1"), inits, reference=refs,
                              max_iters=600)
    assert calls[0] > found.iterations and found.points.device == torch.device("cuda:1")


@cuda
def test_a_step_function_that_syncs_falls_back_to_eager_on_cuda() -> None:
    def syncing(h: Tensor, x: Tensor) -> Tensor:
        if not math.isfinite(float(h.sum())):  # a host sync: cannot be captured
            raise AssertionError("non-finite state")
        return bistable(h, x)

    inits = grid(9, 2).cuda()
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed"):
        found = find_fixed_points(syncing, torch.zeros(1, device="cuda"), inits)
    assert found.count("stable") == 4 and found.count("unstable") == 1


def test_a_search_reports_its_progress_to_the_stage_bar() -> None:
    from dynamo_lightning.analysis.fixed_point_search import search_progress

    def step(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(2.0 * h) + 0.0 * x.sum(-1, keepdim=True)

    with search_progress("fixed points", enabled=True) as bar:
        find_fixed_points(step, torch.zeros(1), torch.randn(16, 1), max_iters=200)
    assert bar.total == 200 and 0 < bar.n <= 200
    assert "unconverged" in str(bar.postfix)


def test_split_gives_each_groups_points_in_order_empty_groups_included() -> None:
    """One sort and views (not a mask per group) give what selecting each group gives, also
    for points not sorted by group and for groups without a point."""
    from dynamo_lightning.analysis.fixed_point_set import FixedPointSet

    group = torch.tensor([3, 0, 3, 1, 0, 3])
    count = len(group)
    fps = FixedPointSet(points=torch.arange(count * 2.0).view(count, 2), q=torch.rand(count),
                        eigvals=torch.randn(count, 2, dtype=torch.complex64),
                        is_stable=torch.tensor([True, False] * 3), n_unstable=torch.arange(count),
                        kind=["stable", "saddle", "unstable", "slow", "stable", "saddle"],
                        group=group, distance_to_data=torch.rand(count), num_groups=5,
                        iterations=7)
    parts = fps.split()
    assert [len(p) for p in parts] == [2, 1, 0, 3, 0]
    for g, part in enumerate(parts):
        expected = fps.select(group == g)
        assert part.kind == expected.kind and part.num_groups == 5 and part.iterations == 7
        for name in ("points", "q", "eigvals", "is_stable", "n_unstable", "group",
                     "distance_to_data"):
            assert torch.equal(getattr(part, name), getattr(expected, name)), (g, name)
