"""Eigenvalues over a thread pool: the same values as one serial call, in the same order."""

from __future__ import annotations

import pytest
import torch

from dynamo_lightning.analysis import eigenvalues as module
from dynamo_lightning.analysis.eigenvalues import PARALLEL_FROM, eigenvalues


@pytest.mark.parametrize("threads", [2, 3, 7])
def test_chunked_equals_one_serial_call(threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    pools: list[int] = []
    real = module.ThreadPoolExecutor

    def recording(workers: int):
        pools.append(workers)
        return real(workers)

    monkeypatch.setattr(module, "ThreadPoolExecutor", recording)
    matrices = torch.randn(PARALLEL_FROM + 37, 12, 12, generator=torch.Generator().manual_seed(0))
    values = eigenvalues(matrices.float(), threads=threads)
    assert pools == [threads]
    assert values.dtype == torch.complex128 and values.shape == (PARALLEL_FROM + 37, 12)
    assert torch.equal(values, torch.linalg.eigvals(matrices.double()))


def test_small_batches_and_one_thread_skip_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "ThreadPoolExecutor", None)  # would fail if called
    rotation = torch.tensor([[[0.0, -1.0], [1.0, 0.0]]])
    assert torch.allclose(eigenvalues(rotation).abs(), torch.ones(1, 2, dtype=torch.float64))
    many = PARALLEL_FROM * 2
    assert eigenvalues(torch.randn(many, 3, 3), threads=1).shape == (many, 3)
    assert eigenvalues(torch.zeros(0, 4, 4)).shape == (0, 4)


def test_not_square_is_refused() -> None:
    with pytest.raises(ValueError, match=r"square matrices \[M, H, H\], got \(2, 3, 4\)"):
        eigenvalues(torch.zeros(2, 3, 4))
