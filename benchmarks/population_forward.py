"""Stacked population forward vs per-member loops.

N GRU members (default: the issue's N=64, H=64, T=100, B=128, I=3) run three ways on the
same inputs, each checked against the others before it is timed:

- ``stacked``: one ``GRU`` stack, parameters ``[N, ...]``, one batched matmul per step;
- ``loop_members``: a Python loop over the members' own ``MemberNetwork``s, the naive form a
  user would write;
- ``loop_torch_gru``: a loop over N ``torch.nn.GRU`` modules (torch's own sequence kernel,
  cuDNN on CUDA) with the members' weights copied in, plus the linear readout.

Forward passes run under ``torch.no_grad()`` at each batch size of ``--sweep`` (the win of
stacking grows as per-member work shrinks); a training step (forward + backward of a
per-member MSE) compares the stack with a loop of one-member stacks at ``--batch``.
``stacked_previous`` is the stack's forward as ``recurrent.py`` ran it before: one einsum
for the whole sequence's input projections (a ``[T, N, B, 3H]`` temporary, 630 MB at the
defaults) and the states stacked at the end.

Usage::

    python benchmarks/population_forward.py                   # CPU, writes population_forward.json
    python benchmarks/population_forward.py --device cuda     # writes population_forward_cuda.json
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
from common import finish, row, time_calls

from dynamo_lightning.population.architectures import MemberNetwork, build
from dynamo_lightning.population.architectures.gru import GRU

OUTPUT_SIZE = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=128, help="batch of the training step")
    parser.add_argument("--sweep", type=str, default="8,32,128",
                        help="comma-separated batch sizes of the forward comparison")
    parser.add_argument("--inputs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile of the GRU cell (compile time included)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    args.sweep = sorted({int(b) for b in args.sweep.split(",")} | {args.batch})
    return args


class Forms:
    """The same N members as a stack, as MemberNetworks and as torch.nn.GRU modules."""

    def __init__(self, args: argparse.Namespace) -> None:
        device = torch.device(args.device)
        self.stack = build("gru", num_members=args.members, seeds=list(range(args.members)),
                           input_size=args.inputs, output_size=OUTPUT_SIZE,
                           hidden_size=args.hidden).to(device)
        states = [self.stack.member_state(i) for i in range(args.members)]
        config = self.stack.config()
        self.members = [MemberNetwork(GRU.from_member_states([s], **config).to(device))
                        for s in states]
        self.trainable = [GRU.from_member_states([s], **config).to(device) for s in states]
        self.torch_grus = [torch_gru(s, args).to(device) for s in states]
        self.readouts = [(s["readout_weight"].to(device), s["readout_bias"].to(device))
                         for s in states]

    def stacked(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.stack(x)

    def loop_members(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [m(x) for m in self.members]
        return torch.stack([o for o, _ in outs]), torch.stack([h for _, h in outs])

    def loop_torch_gru(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = [gru(x)[0] for gru in self.torch_grus]
        outputs = [h @ w + b for h, (w, b) in zip(hidden, self.readouts, strict=True)]
        return torch.stack(outputs), torch.stack(hidden)


def torch_gru(state: dict[str, torch.Tensor], args: argparse.Namespace) -> torch.nn.GRU:
    """``torch.nn.GRU`` holding one member's weights (ours are stored transposed)."""
    gru = torch.nn.GRU(args.inputs, args.hidden, batch_first=True)
    with torch.no_grad():
        gru.weight_ih_l0.copy_(state["weight_ih"].T)
        gru.weight_hh_l0.copy_(state["weight_hh"].T)
        gru.bias_ih_l0.copy_(state["bias_ih"])
        gru.bias_hh_l0.copy_(state["bias_hh"])
    return gru.requires_grad_(False).eval()


def previous_forward(stack: GRU, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The stack's forward as ``recurrent.py`` ran it before its CPU chunking: one einsum
    projects the whole sequence (a ``[T, N, B, 3H]`` temporary), states stacked at the end."""
    u = torch.einsum("bti,gij->tgbj", x, stack.weight_ih) + stack.bias_ih[None, :, None, :]
    h = stack.initial_state(x.shape[0])
    states = []
    for u_t in u:
        h = stack.cell(h, u_t)
        states.append(h)
    hidden = torch.stack(states, dim=2)
    return stack.readout(hidden), hidden


def check_agree(forms: Forms, x: torch.Tensor) -> float:
    """Largest difference of the other forms' results from the stack's (asserted small).

    On CUDA, cuDNN's GRU computes in TF32 by default (``torch.backends.cudnn.allow_tf32``),
    hence the looser bound there.
    """
    with torch.no_grad():
        ref_out, ref_hid = forms.stacked(x)
        worst = 0.0
        for form in (forms.loop_members, forms.loop_torch_gru):
            out, hid = form(x)
            worst = max(worst, (hid - ref_hid).abs().max().item(),
                        (out - ref_out).abs().max().item())
        worst = max(worst, (previous_forward(forms.stack, x)[1] - ref_hid).abs().max().item())
    if worst > (1e-4 if x.device.type == "cpu" else 5e-3):
        raise AssertionError(f"forms disagree: max |difference| {worst:.2e}")
    return worst


def forward_rows(forms: Forms, args: argparse.Namespace, batch: int,
                 rows: list[dict[str, Any]], ratios: dict[str, float]) -> None:
    x = torch.randn(batch, args.steps, args.inputs, device=args.device)
    cases: dict[str, Callable[[], object]] = {
        "stacked": lambda: forms.stacked(x),
        "loop_members": lambda: forms.loop_members(x),
        "loop_torch_gru": lambda: forms.loop_torch_gru(x),
    }
    if batch == args.batch:
        cases["stacked_previous"] = lambda: previous_forward(forms.stack, x)
    with torch.no_grad():
        times = time_calls(cases, args.repeats, args.warmup)
    for case, seconds in times.items():
        rows.append(row(f"B={batch} {case}", "forward", seconds * 1e3, "ms"))
        print(f"  B={batch} {case}: {seconds * 1e3:.1f} ms", flush=True)
    for case in cases:
        if case != "stacked":
            ratios[f"forward B={batch}: {case} / stacked"] = times[case] / times["stacked"]


def training_rows(forms: Forms, args: argparse.Namespace, rows: list[dict[str, Any]],
                  ratios: dict[str, float]) -> None:
    """Forward + backward of the sum of per-member MSE losses, stacked vs a member loop."""
    n, batch = args.members, args.batch
    x = torch.randn(batch, args.steps, args.inputs, device=args.device)
    y = torch.randn(n, batch, args.steps, OUTPUT_SIZE, device=args.device)

    def stacked() -> None:
        outputs, _ = forms.stack(x)
        ((outputs - y) ** 2).mean(dim=(1, 2, 3)).sum().backward()
        forms.stack.zero_grad(set_to_none=True)

    def loop() -> None:
        losses = [((m(x)[0][0] - y[i]) ** 2).mean() for i, m in enumerate(forms.trainable)]
        torch.stack(losses).sum().backward()
        for m in forms.trainable:
            m.zero_grad(set_to_none=True)

    times = time_calls({"stacked": stacked, "loop_members": loop}, args.repeats, args.warmup)
    for case, seconds in times.items():
        rows.append(row(f"B={batch} {case}", "train_step", seconds * 1e3, "ms"))
        print(f"  train B={batch} {case}: {seconds * 1e3:.1f} ms", flush=True)
    ratios[f"train B={batch}: loop_members / stacked"] = times["loop_members"] / times["stacked"]


def compile_rows(forms: Forms, args: argparse.Namespace, rows: list[dict[str, Any]],
                 ratios: dict[str, float]) -> None:
    """torch.compile of the GRU cell: its compile time and its steady forward."""
    x = torch.randn(args.batch, args.steps, args.inputs, device=args.device)
    compiled = GRU.from_member_states(
        [forms.stack.member_state(i) for i in range(args.members)], **forms.stack.config()
    ).to(args.device)
    compiled.cell = torch.compile(compiled.cell, dynamic=False)  # type: ignore[method-assign]
    with torch.no_grad():
        start = time.perf_counter()
        compiled(x)
        first = time.perf_counter() - start
        times = time_calls({"compiled": lambda: compiled(x), "eager": lambda: forms.stacked(x)},
                           args.repeats, args.warmup)
    steady, eager = times["compiled"], times["eager"]
    rows.append(row(f"B={args.batch} stacked_compiled_cell", "first_call", first, "s"))
    rows.append(row(f"B={args.batch} stacked_compiled_cell", "forward", steady * 1e3, "ms"))
    ratios[f"forward B={args.batch}: stacked / stacked_compiled_cell"] = eager / steady


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(0)
    forms = Forms(args)
    x = torch.randn(8, args.steps, args.inputs, device=args.device)
    print(f"forms agree (max |difference| {check_agree(forms, x):.1e}); timing "
          f"N={args.members} H={args.hidden} T={args.steps} on {args.device}", flush=True)
    rows: list[dict[str, Any]] = []
    ratios: dict[str, float] = {}
    for batch in args.sweep:
        forward_rows(forms, args, batch, rows, ratios)
    training_rows(forms, args, rows, ratios)
    if args.compile:
        compile_rows(forms, args, rows, ratios)
    finish("population_forward", args.device, rows, ratios)


if __name__ == "__main__":
    main()
