"""The population's training step as one CUDA graph, its groups on parallel streams.

A stacked recurrent group runs a handful of small kernels per time step (a batched matmul
and the gate arithmetic), forward and backward: a 30-member grid launches some ten thousand
kernels per step, each a few microseconds of work, so eager PyTorch on a GPU is bound by
launching them from Python (about 3 steps/s on an H200). Captured once as a CUDA graph,
a step is one launch; and since the groups are independent, each group is captured on its
own stream, so the graph runs their chains side by side instead of one after another.

What is captured: every group's forward, its summed member loss, the backward into the
parameters' ``.grad`` (static tensors the graph rewrites at each replay) and the per-member
gradient clip. The optimiser's step stays outside (Lightning counts it, checkpoints it, and
Adam's state needs no static addresses). Replays compute exactly what the eager step does,
on the same inputs (they are copied into the graph's static input tensors first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

Batch = dict[str, tuple[Tensor, Tensor]]
GroupLoss = Callable[[int, Tensor, Tensor], Tensor]
"""``(group index, x, y) -> that group's summed member loss`` (a scalar)."""

WARMUP_STEPS = 3
"""Eager forward/backward passes on a side stream before capture, as CUDA graphs require
(cuBLAS workspaces and autograd's lazily made buffers exist before the capture starts)."""


class GraphedStep:
    """Replays forward + loss + backward (+ ``after_backward``) of all groups as one graph.

    Args:
        stacks: the groups' stacked modules (their parameters receive the gradients).
        labels: each group's task label (the key of its ``(x, y)`` in a batch).
        group_loss: computes one group's loss from its inputs and targets.
        after_backward: called per group inside the capture after the backward, on that
            group's stream (the per-member gradient clip); may be None.
        example: a batch with the shapes every later batch has.

    Raises:
        RuntimeError: no CUDA, or the parameters are not on one CUDA device.
    """

    def __init__(self, stacks: Sequence[nn.Module], labels: Sequence[str], group_loss: GroupLoss,
                 after_backward: Callable[[nn.Module], object] | None, example: Batch) -> None:
        params = [p for stack in stacks for p in stack.parameters()]
        devices = {p.device for p in params}
        if len(devices) != 1 or next(iter(devices)).type != "cuda":
            raise RuntimeError(f"GraphedStep needs every parameter on one CUDA device, found "
                               f"{sorted(map(str, devices))}")
        self.device = next(iter(devices))
        self.stacks, self.labels = list(stacks), list(labels)
        self.params = params
        self.static: Batch = {label: (x.to(self.device).clone(), y.to(self.device).clone())
                              for label, (x, y) in example.items()}
        self.graph = torch.cuda.CUDAGraph()
        self.streams = [torch.cuda.Stream(self.device) for _ in self.stacks]
        self.total: Tensor
        self._warm_up(group_loss)
        self._capture(group_loss, after_backward)

    def accepts(self, batch: Batch) -> bool:
        """Whether ``batch`` has the captured shapes and dtypes (else run it eagerly)."""
        return batch.keys() == self.static.keys() and all(
            x.shape == sx.shape and y.shape == sy.shape and x.dtype == sx.dtype
            and y.dtype == sy.dtype
            for (x, y), (sx, sy) in zip(batch.values(), self.static.values(), strict=True))

    def __call__(self, batch: Batch) -> Tensor:
        """Copy ``batch`` in, replay; returns the total loss (a static tensor: read it, or
        clone it to keep it past the next replay). The gradients are in ``.grad``."""
        for label, (x, y) in batch.items():
            sx, sy = self.static[label]
            sx.copy_(x, non_blocking=True)
            sy.copy_(y, non_blocking=True)
        self.graph.replay()
        for p, grad in zip(self.params, self.grads, strict=True):
            p.grad = grad  # an eager step in between (zero_grad) may have unbound them
        return self.total

    def _run_groups(self, group_loss: GroupLoss,
                    after_backward: Callable[[nn.Module], object] | None) -> list[Tensor]:
        """Each group's forward/backward on its own stream, joined back to the current one."""
        origin = torch.cuda.current_stream(self.device)
        losses = []
        for index, (stack, label, stream) in enumerate(
                zip(self.stacks, self.labels, self.streams, strict=True)):
            stream.wait_stream(origin)
            with torch.cuda.stream(stream):
                x, y = self.static[label]
                loss = group_loss(index, x, y)
                loss.backward()
                if after_backward is not None:
                    after_backward(stack)
                losses.append(loss.detach())
        for stream in self.streams:
            origin.wait_stream(stream)
        return losses

    def _warm_up(self, group_loss: GroupLoss) -> None:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                for p in self.params:
                    p.grad = None
                self._run_groups(group_loss, None)
        torch.cuda.current_stream(self.device).wait_stream(side)
        torch.cuda.synchronize(self.device)

    def _capture(self, group_loss: GroupLoss,
                 after_backward: Callable[[nn.Module], object] | None) -> None:
        for p in self.params:  # the capture's backward allocates .grad in the graph's pool,
            p.grad = None      # so each replay overwrites them (no zeroing needed)
        with torch.cuda.graph(self.graph):
            self.total = torch.stack(self._run_groups(group_loss, after_backward)).sum()
        torch.cuda.synchronize(self.device)
        self.grads = [p.grad for p in self.params]  # the tensors every replay writes
