"""Eigenvalues of many small general matrices, in float64 on the CPU, on every core.

Why: the fixed-point search classifies each point by the eigenvalues of its Jacobian, and a
report at scale has tens of thousands of points (10,000 members: 21,149 meta-model points of
128 units). ``torch.linalg.eigvals`` of a batch runs LAPACK's ``geev`` matrix by matrix on one
core (6.4 ms per 128 × 128 matrix on a 2-core Xeon, whatever ``torch.set_num_threads``
says); it releases the GIL, so a thread pool over chunks of the batch runs one chunk per
core. Each matrix's eigenvalues are computed by the same routine either way: the result does
not depend on the chunking. CUDA's general eigensolver (MAGMA's hybrid ``geev``) syncs with
the host per matrix, and took several times the CPU's time on an H200.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

PARALLEL_FROM = 64
"""Fewest matrices worth a thread pool (below, one call: the pool's start-up would cost more
than it saves)."""


def eigenvalues(matrices: Tensor, threads: int | None = None) -> Tensor:
    """Eigenvalues of ``matrices [M, H, H]`` as complex128 ``[M, H]`` on ``matrices``' device,
    computed in float64 on the CPU, split over ``threads`` (default
    ``torch.get_num_threads()``) cores."""
    if matrices.dim() != 3 or matrices.shape[-1] != matrices.shape[-2]:
        raise ValueError(f"eigenvalues: expected square matrices [M, H, H], got "
                         f"{tuple(matrices.shape)}")
    host = matrices.detach().to("cpu", torch.float64)
    threads = max(1, threads or torch.get_num_threads())
    if threads == 1 or len(host) < PARALLEL_FROM:
        values = torch.linalg.eigvals(host)
    else:
        with ThreadPoolExecutor(threads) as pool:
            values = torch.cat(list(pool.map(torch.linalg.eigvals,
                                             host.chunk(threads))))
    return values.to(matrices.device)
