"""The search behind find_fixed_points: the Newton hand-off keeps every attractor that Adam
alone finds, stalled rows leave early, and Newton polishing finishes rows Adam circles."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor
from trained import trained_member

import dynamo_lightning as dl
from dynamo_lightning.analysis.fixed_point_search import adam, polish
from dynamo_lightning.analysis.fixed_points import (
    FixedPointSet,
    find_fixed_points,
    member_step_fn,
    sample_inits,
)
from dynamo_lightning.population.architectures import MemberNetwork

H_STAR = 0.9575040240  # the positive root of tanh(2h) = h


class SlowBits:
    """``bits`` slow bistable units ``u' = u + ε (tanh 2u − u)`` and ``dims − bits`` fast
    ones ``u' = u / 2``, seen through a random rotation: 2^bits attractors at the corners
    ``±H_STAR`` (|λ| = 1 − 0.83 ε, as slow as a trained GRU's), 3^bits fixed points in all."""

    def __init__(self, bits: int, dims: int, eps: float, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.rotation = torch.linalg.qr(torch.randn(dims, dims, generator=g))[0]
        self.bits, self.eps = bits, eps

    def __call__(self, h: Tensor, x: Tensor) -> Tensor:
        u = h @ self.rotation.T
        slow, fast = u[:, : self.bits], u[:, self.bits :]
        nxt = torch.cat([slow + self.eps * (torch.tanh(2 * slow) - slow), 0.5 * fast], 1)
        return nxt @ self.rotation

    def points(self, values: tuple[float, ...]) -> Tensor:
        """The fixed points whose slow coordinates take ``values``, in state coordinates."""
        slow = torch.tensor(list(itertools.product(values, repeat=self.bits)))
        fast = torch.zeros(slow.shape[0], self.rotation.shape[0] - self.bits)
        return torch.cat([slow, fast], 1) @ self.rotation

    def states(self, n: int, g: torch.Generator) -> Tensor:
        """Trajectory-like states: near the corners and on the way between them."""
        corners = torch.tensor(list(itertools.product([-H_STAR, H_STAR], repeat=self.bits)))
        a, b = (corners[torch.randint(len(corners), (n,), generator=g)] for _ in range(2))
        slow = a + torch.rand(n, 1, generator=g) ** 3 * (b - a)
        fast = 0.05 * torch.randn(n, self.rotation.shape[0] - self.bits, generator=g)
        return torch.cat([slow, fast], 1) @ self.rotation


def _found(points: Tensor, among: FixedPointSet | Tensor, atol: float = 1e-3) -> Tensor:
    """Which of ``points`` have a point of ``among`` within ``atol``."""
    among = among.points if isinstance(among, FixedPointSet) else among
    if among.shape[0] == 0:
        return torch.zeros(points.shape[0], dtype=torch.bool)
    return torch.cdist(points, among).min(1).values < atol


def test_every_slow_attractor_is_found_as_by_adam_alone() -> None:
    system = SlowBits(bits=3, dims=12, eps=0.005)  # |λ| ≈ 0.996 at the attractors
    g = torch.Generator().manual_seed(1)
    states = system.states(2048, g)
    inits = states[:256] + 0.05 * torch.randn(256, 12, generator=g)
    fast = find_fixed_points(system, torch.zeros(1), inits, reference=states)
    exhaustive = find_fixed_points(system, torch.zeros(1), inits, reference=states,
                                   handoff=None, max_iters=20_000)
    attractors = system.points((-H_STAR, H_STAR))
    assert bool(_found(attractors, exhaustive).all())  # the reference finds all 8 ...
    assert bool(_found(attractors, fast.select(fast.is_stable)).all())  # ... and so do we
    assert fast.count("stable") == exhaustive.count("stable") == 8
    assert bool(_found(fast.points, system.points((-H_STAR, 0.0, H_STAR))).all())  # all real
    assert fast.iterations < exhaustive.iterations / 4


def _trained_vanilla() -> MemberNetwork:
    """A 3-bit flip-flop tanh RNN of 24 units, trained with plain Adam (a few seconds)."""
    task = dl.tasks.get("flipflop", n_bits=3, seq_len=24, pulse_prob=0.1)
    return trained_member("vanilla", task, hidden=24, steps=400, lr=1e-2, seed=0)


def test_a_trained_vanilla_rnn_keeps_the_exhaustive_searchs_attractors() -> None:
    net = _trained_vanilla()
    task = dl.tasks.get("flipflop", n_bits=3, seq_len=24, pulse_prob=0.1)
    g = torch.Generator().manual_seed(1)
    x, y = task.sample(64, generator=g)
    with torch.no_grad():
        outputs, hidden = net(x)
    assert task.metric(outputs, y) > 0.95
    inits = sample_inits(hidden, 512, 0.1, g)
    fast = find_fixed_points(member_step_fn(net), torch.zeros(3), inits, reference=hidden)
    exhaustive = find_fixed_points(member_step_fn(net), torch.zeros(3), inits,
                                   reference=hidden, handoff=None, max_iters=20_000)
    stable = exhaustive.select(exhaustive.is_stable)
    assert len(stable) == 8, exhaustive.summary()
    assert bool(_found(stable.points, fast.select(fast.is_stable)).all())
    assert fast.count("stable") == len(stable)
    assert fast.iterations < exhaustive.iterations


def test_a_row_in_a_minimum_of_q_above_zero_stalls_out_early() -> None:
    # h' = h + h² + 0.01 has no fixed point; q has a minimum of 5e-5 at 0 (a "ghost").
    def ghost(h: Tensor, x: Tensor) -> Tensor:
        return h + h**2 + 0.01

    inits = torch.linspace(-0.5, 0.3, 9)[:, None]
    h, iterations, stalled = adam(ghost, torch.zeros(9, 1), inits.clone(), 1e-8, 5000, 1e-2)
    assert bool(stalled.all()) and iterations < 1000
    assert h.abs().max() < 0.05  # they stalled at the minimum, not on the way there
    fps = find_fixed_points(ghost, torch.zeros(1), inits)
    assert len(fps) == 0 and fps.iterations < 1000


def test_polish_finishes_rows_near_a_root_and_gives_up_on_the_rest() -> None:
    def bistable(h: Tensor, x: Tensor) -> Tensor:
        return torch.tanh(2 * h)

    h = torch.tensor([[0.90], [1.02], [-0.93]])  # where Adam would circle the roots
    polished, q = polish(bistable, None, torch.zeros(3, 1), h, 1e-12)
    torch.testing.assert_close(polished[:, 0], torch.tensor([H_STAR, H_STAR, -H_STAR]))
    assert bool((q < 1e-12).all()) and h[0, 0] == 0.90  # its input is left alone

    calls: list[int] = []

    def ghost_jacobian(h: Tensor, x: Tensor) -> Tensor:
        calls.append(h.shape[0])
        return (1 + 2 * h)[:, :, None]

    near_ghost = torch.tensor([[1e-3], [-2e-3]])  # q ≈ 5e-5 and no root to go to
    _, q = polish(lambda h, x: h + h**2 + 0.01, ghost_jacobian, torch.zeros(2, 1),
                  near_ghost, 1e-12)
    assert bool((q > 4e-5).all()) and calls == [2]  # one step that failed: stop


def test_handoff_none_is_adam_alone() -> None:
    def bistable(h: Tensor, x: Tensor) -> Tensor:
        return torch.tanh(2 * h)

    inits = torch.linspace(-1.5, 1.5, 31)[:, None]
    alone = find_fixed_points(bistable, torch.zeros(1), inits, handoff=None)
    handed = find_fixed_points(bistable, torch.zeros(1), inits)
    torch.testing.assert_close(alone.points, handed.points, atol=1e-5, rtol=0)
    assert alone.kind == handed.kind and handed.iterations < alone.iterations
