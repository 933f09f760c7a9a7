"""One DYNAMO training step against a bare cuDNN GRU doing the same recurrent work.

A ``DynamoModule`` step (meta-GRU with ``concat`` conditioning — θ appended to the input, so
cuDNN runs the sequence — the per-member alignment maps, the output head, the three loss
terms, backward and Adam) on a member-major batch of M members × S trials × T steps, against
``torch.nn.GRU`` of the same input (I + d) and hidden size H̃ on the same B = M·S sequences
with a linear head and an MSE loss, forward + backward + Adam: the floor any meta-RNN step
of that shape can reach with cuDNN. Each in fp32 (TF32 off and on) and under ``bf16``
autocast, at H̃ ∈ ``--hidden``.

Achieved FLOP/s counts the recurrent matmuls and the alignment and head matmuls
(forward 2·B·T·[3H̃(I + d + H̃) + H̃k + (H̃ + d)O], backward twice that) and is set against
the card's matmul peak measured in the same run (an 8192² matmul in each precision).

Usage::

    python benchmarks/meta_step.py --device cuda          # writes meta_step_cuda.json
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable

import torch
from common import finish, row, time_call
from torch import nn

from dynamo_lightning.module import DynamoModule

MEMBERS, IN, OUT, K, D = 1024, 3, 3, 8, 2  # members, input, output, components, θ dims


def dynamo_step(hidden: int, m: int, s: int, t: int, device: str) -> Callable[[], None]:
    module = DynamoModule(num_members=MEMBERS, input_size=IN, output_size=OUT, num_components=K,
                          embedding_dim=D, meta={"hidden_size": hidden},
                          optim={"schedule": "none"}).to(device)
    optimizer = module.configure_optimizers()
    g = torch.Generator(device="cpu").manual_seed(0)
    batch = {"member": torch.randperm(MEMBERS, generator=g)[:m].sort().values.to(device),
             "inputs": torch.randn(m, s, t, IN, generator=g).to(device),
             "hidden": torch.randn(m, s, t, K, generator=g).to(device),
             "outputs": torch.randn(m, s, t, OUT, generator=g).to(device)}

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        module.losses(batch)["loss"].backward()
        optimizer.step()
    return step


def cudnn_step(hidden: int, m: int, s: int, t: int, device: str) -> Callable[[], None]:
    rnn = nn.GRU(IN + D, hidden, batch_first=True).to(device)
    head = nn.Linear(hidden, OUT).to(device)
    optimizer = torch.optim.Adam([*rnn.parameters(), *head.parameters()])
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(m * s, t, IN + D, generator=g).to(device)
    y = torch.randn(m * s, t, OUT, generator=g).to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out, _ = rnn(x)
        nn.functional.mse_loss(head(out), y).backward()
        optimizer.step()
    return step


def flops(hidden: int, b: int, t: int) -> float:
    forward = 2 * b * t * (3 * hidden * (IN + D + hidden) + hidden * K + (hidden + D) * OUT)
    return 3 * forward


def matmul_peak(dtype: torch.dtype, device: str) -> float:
    a = torch.randn(8192, 8192, device=device, dtype=dtype)
    b = torch.randn(8192, 8192, device=device, dtype=dtype)
    seconds = time_call(lambda: a @ b, repeats=10, warmup=3)
    return 2 * 8192**3 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--members", type=int, default=64, help="M, members per batch")
    parser.add_argument("--samples", type=int, default=32, help="S, trials per member")
    parser.add_argument("--steps", type=int, default=64, help="T, time steps")
    args = parser.parse_args()
    device, rows, ratios = args.device, [], {}
    modes = {"fp32": (False, None), "tf32": (True, None), "bf16": (True, torch.bfloat16)}
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        peaks = {"fp32": matmul_peak(torch.float32, device)}
        torch.backends.cuda.matmul.allow_tf32 = True
        peaks["tf32"] = matmul_peak(torch.float32, device)
        peaks["bf16"] = matmul_peak(torch.bfloat16, device)
        for mode, value in peaks.items():
            rows.append(row("matmul 8192²", f"peak {mode}", value / 1e12, "TFLOP/s"))
    else:
        modes = {"fp32": (False, None)}
        peaks = {}
    b, t = args.members * args.samples, args.steps
    for hidden in args.hidden:
        for mode, (tf32, dtype) in modes.items():
            if device == "cuda":
                torch.backends.cuda.matmul.allow_tf32 = tf32
                torch.backends.cudnn.allow_tf32 = tf32
            times = {}
            for name, build in (("dynamo", dynamo_step), ("cudnn GRU", cudnn_step)):
                step = build(hidden, args.members, args.samples, t, device)

                def run(step: Callable[[], None] = step, dtype: torch.dtype | None = dtype
                        ) -> None:
                    with (torch.autocast(device, dtype=dtype) if dtype is not None
                          else contextlib.nullcontext()):
                        step()
                times[name] = time_call(run, repeats=20, warmup=5)
                rate = flops(hidden, b, t) / times[name]
                case = f"H̃={hidden} {mode} {name}"
                rows += [row(case, "step", times[name] * 1e3, "ms"),
                         row(case, "achieved", rate / 1e12, "TFLOP/s")]
                if mode in peaks:
                    rows.append(row(case, "of matmul peak", 100 * rate / peaks[mode], "%"))
            ratios[f"H̃={hidden} {mode}: dynamo / cudnn time"] = (times["dynamo"]
                                                                 / times["cudnn GRU"])
    finish("meta_step", device, rows, ratios)


if __name__ == "__main__":
    main()
