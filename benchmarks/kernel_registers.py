"""Registers and spills of the fused recurrence kernels, compiled for an H100/H200 on a CPU.

The fused kernels (``population/architectures/fused_recurrence.py``) keep a member's
weights and a block of its states in registers for the whole time loop, so their speed
turns on whether ptxas fits them into 255 registers a thread: on an H200 a GRU backward
that spilled (4 warps a program) ran 12 times slower than one that did not. Triton ships
ptxas, so each kernel can be compiled for ``sm_90a`` here, without a GPU, and ptxas's
report read: registers a thread and bytes of spill stores and loads. That checks a kernel
change before it costs GPU time. It does not time anything; the GPU's own Triton may
compile differently (the results record this Triton's version).

Cases: each cell at each hidden size, forward and backward, with the launch settings the
kernels use for ``--batch`` rows (``_launch_config``), for every combination of the
backward's ``DW_OUTSIDE`` and the dots' precision (IEEE float32 or TF32).

Usage::

    python benchmarks/kernel_registers.py [--cells gru tanh lstm] [--hidden 32 64]
                                          # writes kernel_registers.json
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from itertools import product
from pathlib import Path

from common import finish, row

from dynamo_lightning.population.architectures import fused_recurrence as fr

ARCH = "sm_90a"
"""The H100/H200 (compute capability 9.0, with its accelerated features)."""


def ptxas() -> str:
    """The ptxas Triton itself uses for ``sm_90`` (its bundled one)."""
    from triton.backends.nvidia import compiler

    if hasattr(compiler, "get_ptxas"):  # Triton >= 3.4 picks per architecture
        return compiler.get_ptxas(90).path
    return compiler._path_to_binary("ptxas")[0]


def signature(kernel: object, constants: dict[str, object]) -> tuple[dict, dict]:
    """Triton's signature of ``kernel``: pointers (``*_ptr``) float32, other runtime
    arguments int32, constexprs from ``constants``."""
    types = {}
    for param in kernel.params:  # type: ignore[attr-defined]
        name = param.name
        types[name] = ("constexpr" if param.is_constexpr else
                       "*fp32" if name.endswith("_ptr") else "i32")
    return types, {name: constants[name] for name, kind in types.items() if kind == "constexpr"}


def usage(kernel: object, constants: dict[str, object], warps: int) -> dict[str, int]:
    """Registers and spill bytes of ``kernel`` compiled for ``ARCH`` with ``constants``."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    types, constexprs = signature(kernel, constants)
    compiled = triton.compile(ASTSource(fn=kernel, signature=types, constexprs=constexprs),
                              target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "kernel.ptx"
        source.write_text(compiled.asm["ptx"])
        report = subprocess.run([ptxas(), "-v", f"--gpu-name={ARCH}", str(source),
                                 "-o", os.devnull], capture_output=True, text=True, check=True)
    text = report.stdout + report.stderr
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    registers = re.search(r"Used (\d+) registers", text)
    if registers is None:
        raise RuntimeError(f"kernel_registers: no register count in ptxas's report:\n{text}")
    return {"registers": int(registers.group(1)),
            "spill stores": int(spills.group(1)) if spills else 0,
            "spill loads": int(spills.group(2)) if spills else 0}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="+", default=list(fr.CELLS), choices=list(fr.CELLS))
    parser.add_argument("--hidden", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--batch", type=int, default=64, help="trials a step (rows)")
    args = parser.parse_args(argv)
    if not fr.available():
        raise SystemExit(f"kernel_registers: {fr.unavailable_reason()}; install the kernels "
                         "extra (pip install -e '.[kernels]')")
    rows = []
    for cell, size in product(args.cells, args.hidden):
        config = fr._launch_config(args.batch, size, fr.STATES[cell])
        warps = config.pop("num_warps")
        base = {"CELL": fr.CELLS[cell], "GATES": fr.GATES[cell], "ACCUMULATE": False,
                **config}
        for dw_outside, tf32 in product((True, False), (False, True)):
            constants = {**base, "DW_OUTSIDE": dw_outside, "TF32": tf32}
            precision = "tf32" if tf32 else "ieee"
            launch = f"{config['BLOCK_B']} rows, {warps} warps"
            kernels = {"backward, dW " + ("outside" if dw_outside else "inside"):
                       fr._backward_kernel}
            if dw_outside:  # the forward has no DW_OUTSIDE: once per precision
                kernels["forward"] = fr._forward_kernel
            for what, kernel in kernels.items():
                counts = usage(kernel, constants, warps)
                case = f"{cell} H={size} {what}, {precision} ({launch})"
                rows += [row(case, metric, value, "bytes" if "spill" in metric else "")
                         for metric, value in counts.items()]
                print(f"{case:58s} {counts['registers']:4d} registers  "
                      f"{counts['spill stores']:5d} B spilled", flush=True)
    finish("kernel_registers", "cpu", rows, {})


if __name__ == "__main__":
    main()
