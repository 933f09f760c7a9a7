"""The fused recurrence kernels compute what the plain cell loop computes, forward and every
gradient, and only run where they are asked for and apply.

The kernel tests need Triton. On a CPU they run under Triton's interpreter, which must be
switched on (``TRITON_INTERPRET=1``) before the kernels are defined, so one test re-runs them
in a subprocess with it set; with CUDA they run the compiled kernels in this process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor

import dynamo_lightning as dl
from dynamo_lightning.population.architectures import fused_recurrence
from dynamo_lightning.population.datamodule import TaskDataModule
from dynamo_lightning.population.graphed_step import GraphedStep
from dynamo_lightning.population.training import PopulationModule, clip_per_member

CELLS = {"gru": "gru", "vanilla": "tanh", "relu": "relu", "lstm": "lstm"}
SHAPES = [  # (G, B, T, H): H < 16; B over one block (several programs a member, which add
    # their gradients) with H not a power of two, and with H above 32; one batch row; one step
    (2, 5, 4, 7),
    (3, 70, 3, 20),
    (1, 40, 2, 33),
    (2, 1, 3, 5),
    (2, 6, 1, 9),
]
INTERPRETED = fused_recurrence.interpreting()
KERNEL_DEVICE = "cpu" if INTERPRETED else "cuda"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
kernels = pytest.mark.skipif(
    not (INTERPRETED or torch.cuda.is_available()),
    reason="runs with CUDA, or on a CPU in test_kernels_under_the_triton_interpreter")
TASKS = [{"name": "flipflop", "config": {"n_bits": 2, "seq_len": 12}},
         {"name": "integrator", "config": {"n_channels": 2, "seq_len": 12}}]


def stack_of(architecture: str, shape: tuple[int, int, int, int], device: str = "cpu"):
    members, _, _, size = shape
    return dl.architectures.build(architecture, num_members=members, seeds=range(members),
                                  input_size=3, output_size=2, hidden_size=size).to(device)


def plain_hidden(stack, u: Tensor) -> Tensor:
    """The plain path's states ``[G, B, T, state]`` (the LSTM's ``[h, c]``): the stack's own
    ``cell`` stepped over ``u [G, B, T, gH]``."""
    h = stack.initial_state(u.shape[1])
    states = []
    for t in range(u.shape[2]):
        h = stack.cell(h, u[:, :, t])
        states.append(h)
    return torch.stack(states, dim=2)


def projected(stack, x: Tensor, shared: bool = True) -> Tensor:
    """The fused path's ``u [G, B, T, gH]``, checked against the plain path's projections."""
    u = stack._project_rows(x, shared)
    torch.testing.assert_close(u, stack._project(x, shared).transpose(1, 2))
    return u


@pytest.fixture(params=[True, False], ids=["dw_outside", "dw_inside"])
def dw_outside(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways of computing dW_hh: matmuls after the backward kernel, or inside it."""
    monkeypatch.setattr(fused_recurrence, "DW_OUTSIDE", request.param)
    return request.param


# ------------------------------------------------------------------ kernels (Triton)
@pytest.fixture(scope="module")
def triton_ok() -> None:
    """Triton importable, and (interpreted) an interpreter that runs a loop over a runtime
    bound: Triton's interpreter before the fix of triton-lang/triton#9171 cannot under
    numpy >= 2.4."""
    triton = pytest.importorskip("triton")
    if not INTERPRETED:
        return
    import triton.language as tl

    @triton.jit
    def count(out_ptr, steps):
        total = 0.0
        for _ in range(steps):
            total += 1.0
        tl.store(out_ptr, total)

    out = torch.zeros(1)
    try:
        count[(1,)](out, 3)
    except Exception as err:
        pytest.skip(f"Triton {triton.__version__}'s interpreter cannot run a loop here "
                    f"({err}); a newer Triton can")


@kernels
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "G{}-B{}-T{}-H{}".format(*s))
@pytest.mark.parametrize("architecture", list(CELLS))
def test_kernel_matches_the_plain_cell_loop(triton_ok, dw_outside: bool, architecture: str,
                                            shape: tuple[int, int, int, int]) -> None:
    torch.manual_seed(0)
    _, batch, steps, _ = shape
    stack = stack_of(architecture, shape, KERNEL_DEVICE)
    x = torch.randn(batch, steps, 3, device=KERNEL_DEVICE)
    u = projected(stack, x).detach().requires_grad_()
    params = (u, stack.weight_hh, stack.bias_hh)
    expected = plain_hidden(stack, u)
    cotangent = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, params, cotangent)
    # Non-contiguous weights and inputs: the Function makes them contiguous.
    weight_t = stack.weight_hh.transpose(1, 2).contiguous().transpose(1, 2)
    hidden = fused_recurrence.fused_recurrence(u.transpose(1, 2).contiguous().transpose(1, 2),
                                               weight_t, stack.bias_hh, CELLS[architecture])
    torch.testing.assert_close(hidden, expected, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(hidden, params, cotangent)
    for name, got, want in zip(("u", "weight_hh", "bias_hh"), grads, expected_grads,
                               strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5,
                                   msg=lambda m, n=name: f"{n}: {m}")


@kernels
@pytest.mark.parametrize("cotangent_on", ["h", "c", "last_step"])
@pytest.mark.parametrize("shape", [(2, 5, 4, 7), (2, 70, 3, 12)],
                         ids=lambda s: "G{}-B{}-T{}-H{}".format(*s))
def test_lstm_kernel_carries_h_and_c_gradients(triton_ok, dw_outside: bool,
                                               shape: tuple[int, int, int, int],
                                               cotangent_on: str) -> None:
    """The LSTM's state is [h, c]: the kernel writes both (c in the last H columns) and
    carries dL/dh and dL/dc back through time, each alone and from the last step only."""
    torch.manual_seed(4)
    _, batch, steps, size = shape
    stack = stack_of("lstm", shape, KERNEL_DEVICE)
    u = projected(stack, torch.randn(batch, steps, 3, device=KERNEL_DEVICE))
    u = u.detach().requires_grad_()
    params = (u, stack.weight_hh, stack.bias_hh)
    expected = plain_hidden(stack, u)
    assert expected.shape[-1] == 2 * size
    cotangent = torch.randn_like(expected)
    if cotangent_on == "h":
        cotangent[..., size:] = 0
    elif cotangent_on == "c":
        cotangent[..., :size] = 0
    else:
        cotangent[:, :, :-1] = 0
    hidden = fused_recurrence.fused_recurrence(u, stack.weight_hh, stack.bias_hh, "lstm")
    torch.testing.assert_close(hidden, expected, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(hidden, params, cotangent)
    for name, got, want in zip(("u", "weight_hh", "bias_hh"), grads,
                               torch.autograd.grad(expected, params, cotangent), strict=True):
        assert want.abs().max() > 0, name  # every gradient is exercised
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5,
                                   msg=lambda m, n=name: f"{n}: {m}")


@kernels
@pytest.mark.parametrize("architecture", ["gru", "vanilla", "lstm"])
def test_kernel_in_tf32_stays_close_to_the_plain_loop(triton_ok, architecture: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """TF32 dots (what ``torch.set_float32_matmul_precision("high")`` asks for on CUDA): the
    same states and gradients to TF32's 10-bit mantissa."""
    monkeypatch.setattr(fused_recurrence, "uses_tf32", lambda device: True)
    torch.manual_seed(2)
    stack = stack_of(architecture, (2, 20, 6, 24), KERNEL_DEVICE)
    u = projected(stack, torch.randn(20, 6, 3, device=KERNEL_DEVICE))
    u = u.detach().requires_grad_()
    params = (u, stack.weight_hh, stack.bias_hh)
    expected = plain_hidden(stack, u)
    cotangent = torch.randn_like(expected)
    hidden = fused_recurrence.fused_recurrence(u, stack.weight_hh, stack.bias_hh,
                                               CELLS[architecture])
    torch.testing.assert_close(hidden, expected, rtol=1e-2, atol=1e-2)
    for got, want in zip(torch.autograd.grad(hidden, params, cotangent),
                         torch.autograd.grad(expected, params, cotangent), strict=True):
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (2, 1, 4, 3), (2, 5, 1, 3), (1, 1, 1, 2)],
                         ids=lambda s: "G{}-B{}-T{}-H{}".format(*s))
@pytest.mark.parametrize("state", [1, 2], ids=["h", "h_of_h_c"])
def test_state_products_pair_each_state_with_the_next_steps_gradient(
        shape: tuple[int, int, int, int], state: int) -> None:
    """dW_hh after the backward kernel: Σ_{b,t} h_{t-1}ᵀ g_t from h_{-1} = 0, also for a
    column slice of a wider gradient (the GRU's r and z columns of du), and for h, the first
    H columns of the LSTM's state [h, c] (a strided view)."""
    torch.manual_seed(3)
    members, batch, steps, size = shape
    hidden = torch.randn(members, batch, steps, state * size, dtype=torch.float64)
    grad = torch.randn(members, batch, steps, 3 * size, dtype=torch.float64)[..., : 2 * size]
    h = hidden[..., :size]
    previous = torch.cat([torch.zeros_like(h[:, :, :1]), h[:, :, :-1]], dim=2)
    expected = torch.einsum("gbti,gbtj->gij", previous, grad)
    got = fused_recurrence._state_products(hidden, grad, size)
    torch.testing.assert_close(got, expected)
    if state == 1:
        torch.testing.assert_close(fused_recurrence._state_products(hidden, grad), expected)


def test_the_lstms_state_counts_twice_in_a_programs_tile() -> None:
    """h and c are both held per row, so an LSTM program takes half the rows (at H=32 its
    backward spilled ten times as much with 64; see ``_launch_config``)."""
    pytest.importorskip("triton")
    if not fused_recurrence.available():
        pytest.skip(str(fused_recurrence.unavailable_reason()))
    config = fused_recurrence._launch_config
    assert config(64, 32) == {"BLOCK_B": 64, "BLOCK_H": 32, "num_warps": 8}
    assert config(64, 32, 2) == {"BLOCK_B": 32, "BLOCK_H": 32, "num_warps": 8}
    assert config(64, 16, 2) == {"BLOCK_B": 64, "BLOCK_H": 16, "num_warps": 8}
    assert config(64, 64, 2) == {"BLOCK_B": 16, "BLOCK_H": 64, "num_warps": 8}
    assert config(5, 7, 2) == {"BLOCK_B": 16, "BLOCK_H": 16, "num_warps": 4}


def test_tf32_follows_torchs_float32_matmul_precision() -> None:
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert not fused_recurrence.uses_tf32(torch.device("cuda", 0))
        torch.set_float32_matmul_precision("high")
        assert fused_recurrence.uses_tf32(torch.device("cuda", 0))
        assert not fused_recurrence.uses_tf32(torch.device("cpu"))  # the interpreter: IEEE
    finally:
        torch.set_float32_matmul_precision(before)


@kernels
@pytest.mark.parametrize("shared", [True, False], ids=["shared_x", "x_per_member"])
@pytest.mark.parametrize("architecture", list(CELLS))
def test_fused_forward_returns_what_the_plain_forward_returns(
        triton_ok, dw_outside: bool, architecture: str, shared: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A stack whose ``fused`` flag is set runs its cell's kernel (the LSTM's too, though
    the trainer does not fuse it by default): the same outputs, states and gradients of x
    and every parameter."""
    kernel, cells = fused_recurrence.fused_recurrence, []

    def recorded(*args: object) -> Tensor:
        cells.append(args[-1])
        return kernel(*args)

    monkeypatch.setattr(fused_recurrence, "fused_recurrence", recorded)
    torch.manual_seed(1)
    stack = stack_of(architecture, (3, 9, 5, 12), KERNEL_DEVICE)
    x = torch.randn(*[3] * (not shared), 9, 5, 3, device=KERNEL_DEVICE, requires_grad=True)
    results = []
    for fused in (False, True):
        stack.fused = fused
        stack.zero_grad()
        x.grad = None
        outputs, hidden = stack(x)
        (outputs.square().sum() + hidden.sum()).backward()
        results.append((outputs, hidden, [x.grad.clone()]
                        + [p.grad.clone() for p in stack.parameters()]))
    assert cells == [CELLS[architecture]]  # the plain forward, then the kernel
    (out0, hid0, grads0), (out1, hid1, grads1) = results
    assert hid1.shape[-1] == stack.state_size
    torch.testing.assert_close(hid1, hid0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out1, out0, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads1, grads0, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@kernels
def test_bad_arguments_are_named(triton_ok) -> None:
    stack = stack_of("gru", (2, 4, 3, 5), KERNEL_DEVICE)
    u = stack._project_rows(torch.randn(4, 3, 3, device=KERNEL_DEVICE), shared=True)
    w, b = stack.weight_hh, stack.bias_hh
    with pytest.raises(ValueError, match="unknown cell 'ugrnn'"):
        fused_recurrence.fused_recurrence(u, w, b, "ugrnn")
    with pytest.raises(ValueError, match=r"lstm with G=2, H=5 needs weight_hh \[2,5,20\]"):
        fused_recurrence.fused_recurrence(u, w, b, "lstm")
    with pytest.raises(TypeError, match=r"weight_hh is torch\.float64"):
        fused_recurrence.fused_recurrence(u, w.double(), b, "gru")
    with pytest.raises(ValueError, match=r"tanh with G=2, H=5 needs weight_hh \[2,5,5\]"):
        fused_recurrence.fused_recurrence(u, w, b, "tanh")
    wide = stack_of("vanilla", (1, 4, 3, fused_recurrence.MAX_HIDDEN + 1), KERNEL_DEVICE)
    with pytest.raises(ValueError, match="above MAX_HIDDEN"):
        fused_recurrence.fused_recurrence(
            wide._project_rows(torch.randn(4, 3, 3, device=KERNEL_DEVICE), shared=True),
            wide.weight_hh, wide.bias_hh, "tanh")


@kernels
def test_a_population_runs_its_fusable_stacks_fused(triton_ok, tmp_path: Path) -> None:
    """``use_fused_kernels``: GRU, tanh and LSTM stacks at the fused widths run the kernel, a
    GRU and an LSTM wider than their limits run plain, and the trajectories are the plain
    population's; the DYNAMO data module turns it on for its own population."""
    torch.manual_seed(2)
    parts = []
    for name, size in (("gru", 12), ("vanilla", 9), ("lstm", 6),
                       ("gru", fused_recurrence.FASTER_UP_TO["gru"] + 1),
                       ("lstm", fused_recurrence.FASTER_UP_TO["lstm"] + 1)):
        stack = dl.architectures.build(name, num_members=2, seeds=[0, 1], input_size=2,
                                       output_size=2, hidden_size=size)
        metadata = [{"task": "flipflop", "task_config": {"n_bits": 2, "seq_len": 6}}] * 2
        parts.append(dl.Population.from_stack(name, stack, [f"{name}{size}-{i}" for i in (0, 1)],
                                              metadata))
    path = dl.Population.concat(parts).save(tmp_path / "population")
    x = torch.randn(5, 6, 2)
    plain = dl.Population.load(path, device=KERNEL_DEVICE).trajectories(x)
    fused = dl.Population.load(path, device=KERNEL_DEVICE).use_fused_kernels()
    flags = [(type(stack).__name__, stack.hidden_size, stack.fused)
             for _, stack in fused.groups()]
    assert flags == [("GRU", 12, True), ("VanillaRNN", 9, True), ("LSTM", 6, True),
                     ("GRU", fused_recurrence.FASTER_UP_TO["gru"] + 1, False),
                     ("LSTM", fused_recurrence.FASTER_UP_TO["lstm"] + 1, False)]
    got = fused.trajectories(x)
    for a, b in zip([*got.hidden, *got.outputs], [*plain.hidden, *plain.outputs], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    fused.use_fused_kernels(False)
    assert not any(stack.fused for _, stack in fused.groups())
    data = dl.TrajectoryDataModule(str(path), members_per_batch=2, samples_per_member=2,
                                   train_trials=4, val_trials=2, test_trials=2)
    population = data._population.to(KERNEL_DEVICE)
    assert [stack.fused for _, stack in population.groups()] == [True, True, True, False, False]


@kernels
def test_a_population_fuses_lstm_stacks_only_where_the_map_allows(
        triton_ok, monkeypatch: pytest.MonkeyPatch) -> None:
    """``use_fused_kernels`` fuses LSTM stacks up to ``FASTER_UP_TO["lstm"]`` and leaves them
    plain where the map has no "lstm"; the fused trajectories (``[h, c]``) are the plain ones."""
    torch.manual_seed(5)
    stack = stack_of("lstm", (2, 5, 6, 6))
    metadata = [{"task": "flipflop", "task_config": {"n_bits": 2, "seq_len": 6}}] * 2
    population = dl.Population.from_stack("lstm", stack, ["a", "b"], metadata)
    population = population.to(KERNEL_DEVICE)
    x = torch.randn(5, 6, 3)
    plain = population.trajectories(x)
    monkeypatch.delitem(fused_recurrence.FASTER_UP_TO, "lstm")
    population.use_fused_kernels()
    assert [s.fused for _, s in population.groups()] == [False]
    monkeypatch.undo()
    population.use_fused_kernels()
    assert [s.fused for _, s in population.groups()] == [True]
    got = population.trajectories(x)
    assert got.hidden[0].shape[-1] == 12  # [h, c]
    for a, b in zip([*got.hidden, *got.outputs], [*plain.hidden, *plain.outputs], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_population_on_the_cpu_runs_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    stack = stack_of("gru", (2, 3, 4, 5))
    metadata = [{"task": "flipflop", "task_config": {"n_bits": 2}}] * 2
    population = dl.Population.from_stack("gru", stack, ["a", "b"], metadata)
    population.use_fused_kernels()
    assert [s.fused for _, s in population.groups()] == [False]  # no CUDA, no interpreter


def test_kernels_under_the_triton_interpreter() -> None:
    """Re-runs this file's kernel tests on the CPU with ``TRITON_INTERPRET=1``."""
    triton = pytest.importorskip("triton")
    if INTERPRETED or torch.cuda.is_available():
        pytest.skip("the kernel tests run in this process")
    site = str(Path(triton.__file__).resolve().parents[1])
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", __file__,
         "-k", "kernel_matches or kernel_in_tf32 or fused_forward_returns or bad_arguments "
         "or population_runs or state_products or lstm_kernel or fuses_lstm"],
        env=env, capture_output=True, text=True, timeout=900, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    if not re.search(r"\b\d+ passed", output):
        reasons = [line for line in output.splitlines() if line.startswith("SKIPPED")]
        pytest.skip(f"no kernel test ran under the interpreter: {reasons[:1] or output[-600:]}")


# ------------------------------------------------------------------ where the fused path runs
def test_fused_kernel_follows_the_cell_a_class_runs() -> None:
    names = {name: dl.architectures.get(name).fused_kernel()
             for name in ("gru", "vanilla", "relu", "lstm", "ugrnn", "vanilla_rotated")}
    # vanilla_rotated subclasses vanilla but changes its cell: it must run the plain path.
    assert names == {"gru": "gru", "vanilla": "tanh", "relu": "relu", "lstm": "lstm",
                     "ugrnn": None, "vanilla_rotated": None}
    assert stack_of("gru", (1, 2, 2, 4)).fused is False  # off unless a trainer sets it


def test_plain_path_unless_flagged_on_cuda_and_outside_transforms(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_kernel(u: Tensor, weight_hh: Tensor, bias_hh: Tensor, cell: str) -> Tensor:
        calls.append(cell)
        raise AssertionError("the fused kernel ran")

    monkeypatch.setattr(fused_recurrence, "fused_recurrence", fake_kernel)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    stack = stack_of("gru", (2, 3, 4, 5))
    x = torch.randn(3, 4, 3)
    plain = stack(x)
    stack.fused = True
    for got, want in zip(stack(x), plain, strict=True):  # CPU inputs: the plain path
        torch.testing.assert_close(got, want)
    assert calls == []
    # Where the kernel would apply (as if on CUDA), it runs, except under torch.func.
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(fused_recurrence, "available", lambda: True)
    with pytest.raises(AssertionError, match="fused kernel ran"):
        stack(x)
    assert calls == ["gru"]
    torch.func.vmap(lambda xi: stack(xi)[0])(x.unsqueeze(0).expand(2, 3, 4, 3))
    params = dict(stack.named_parameters())
    torch.func.jacrev(lambda w: torch.func.functional_call(
        stack, {**params, "weight_hh": w}, (x,))[0].sum())(stack.weight_hh)
    assert fused_recurrence.applies(x, stack.weight_hh, hidden_size=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # half-precision projections
        assert not fused_recurrence.applies(x, stack.weight_hh, hidden_size=5)
    stack.fused = False
    stack(x)
    assert calls == ["gru"]


def test_population_module_fuses_only_on_cuda_and_falls_back(
        recwarn: pytest.WarningsRecorder) -> None:
    module = PopulationModule(tasks=TASKS[:1], architectures=["gru", "lstm"], hidden_sizes=[4],
                              seeds=[0, 1])
    assert module.hparams.fused_cells is True
    module.on_fit_start()  # on the CPU: neither fused nor compiled
    assert not any(getattr(s, "fused", False) for s in module.stacks)
    assert module._fused == [] and module._plain_cells == []
    gru = module.stacks[0]
    gru.fused = True  # as on_fit_start sets it on CUDA
    module._fused = [gru]
    module._capture_failed(RuntimeError("fused gru recurrence forward kernel failed: boom"))
    assert gru.fused is False and module._fused == []
    assert "could not be captured" in str(recwarn.pop(UserWarning).message)


def test_population_module_fuses_the_cells_and_widths_it_runs_faster(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused_recurrence, "available", lambda: True)
    module = PopulationModule(tasks=TASKS[:1], architectures=["gru", "vanilla", "lstm"],
                              hidden_sizes=[8, 48], seeds=[0])
    monkeypatch.setattr(module, "_device", torch.device("cuda", 0))  # what on_fit_start reads
    module.on_fit_start()  # cells are compiled lazily: nothing runs here
    pairs = [((g.architecture, g.config["hidden_size"]), s)
             for g, s in zip(module.groups, module.stacks, strict=True)]
    fused = {key for key, s in pairs if s.fused}
    compiled = {key for key, s in pairs if any(c is s for c, _ in module._plain_cells)}
    assert fused == {("gru", 8), ("vanilla", 8), ("vanilla", 48), ("lstm", 8)}
    assert compiled == {("gru", 48), ("lstm", 48)}
    module.on_train_end()  # scoring and writing the members runs the plain cells
    assert all(s.cell.__func__ is type(s).cell for s in module.stacks)  # compiled ones undone
    assert {key for key, s in pairs if s.fused} == fused  # the kernels take any batch
    module.on_fit_start()  # a second fit compiles again and keeps the fused stacks
    assert {key for key, s in pairs if any(c is s for c, _ in module._plain_cells)} == compiled
    assert len(module._fused) == len(fused)
    module._restore_plain_cells()
    assert not any(s.fused for s in module.stacks)
    assert all(s.cell.__func__ is type(s).cell for s in module.stacks)  # compiled ones undone


def test_population_module_fuses_lstm_only_where_the_map_allows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer fuses LSTM stacks up to the map's width and compiles the rest; with no
    "lstm" in the map (what the benchmark's ``graphed+fused`` path times) it compiles all."""
    monkeypatch.setattr(fused_recurrence, "available", lambda: True)
    for drop, fused in ((True, set()), (False, {8})):
        if drop:
            monkeypatch.delitem(fused_recurrence.FASTER_UP_TO, "lstm")
        else:
            monkeypatch.setitem(fused_recurrence.FASTER_UP_TO, "lstm", 32)
        module = PopulationModule(tasks=TASKS[:1], architectures=["lstm"],
                                  hidden_sizes=[8, 48], seeds=[0])
        monkeypatch.setattr(module, "_device", torch.device("cuda", 0))
        module.on_fit_start()
        sizes = [g.config["hidden_size"] for g in module.groups]
        assert {size for size, s in zip(sizes, module.stacks, strict=True) if s.fused} == fused
        compiled = {size for size, s in zip(sizes, module.stacks, strict=True)
                    if any(c is s for c, _ in module._plain_cells)}
        assert compiled == {8, 48} - fused
        module._restore_plain_cells()


# ------------------------------------------------------------------ CUDA: inside training
def batch(seed: int) -> dict:
    data = TaskDataModule(tasks=TASKS, batch_size=16, seed=seed)
    x = next(iter(data.train_dataloader()))
    return {label: (a.cuda(), b.cuda()) for label, (a, b) in x.items()}


@cuda
def test_graphed_fused_step_gives_the_eager_plain_gradients() -> None:
    pytest.importorskip("triton")
    m = PopulationModule(tasks=TASKS, architectures=["vanilla", "relu", "gru", "lstm"],
                         hidden_sizes=[8], seeds=[0, 1], clip_norm=0.5).cuda()
    labels = [g.task.label for g in m.groups]
    fusable = [s for s in m.stacks if s.fused_kernel() is not None]
    assert len(fusable) == 8  # the LSTM's too: its flag set directly
    for stack in fusable:
        stack.fused = True
    graphed = GraphedStep(m.stacks, labels, m._group_loss, m._clip, batch(0))
    for seed in (1, 2):
        b = batch(seed)
        total = graphed(b).clone()
        grads = [p.grad.clone() for p in m.parameters()]
        for stack in fusable:
            stack.fused = False
        for p in m.parameters():
            p.grad = None
        expected = sum(m._group_loss(i, *b[g.task.label]) for i, g in enumerate(m.groups))
        expected.backward()
        for stack in m.stacks:
            clip_per_member(stack, 0.5)
        torch.testing.assert_close(total, expected.detach(), rtol=1e-5, atol=1e-6)
        for got, p in zip(grads, m.parameters(), strict=True):
            torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)
        for stack in fusable:
            stack.fused = True


@cuda
def test_fused_training_matches_plain_eager_training() -> None:
    pytest.importorskip("triton")
    results = []
    for fused in (False, True):
        torch.manual_seed(0)
        m = PopulationModule(tasks=TASKS, architectures=["vanilla", "gru", "lstm"],
                             hidden_sizes=[8], seeds=[0, 1], cuda_graphs=fused,
                             compile_cells=False, fused_cells=fused)
        trainer = pl.Trainer(accelerator="gpu", devices=1, max_steps=6, limit_val_batches=0,
                             logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(m, TaskDataModule(tasks=TASKS, batch_size=16, steps_per_epoch=6))
        fused_stacks = [g.architecture for g, s in zip(m.groups, m.stacks, strict=True)
                        if s.fused]
        assert sorted(set(fused_stacks)) == (["gru", "vanilla"] if fused else [])
        assert (m._graphed is not None) == fused
        results.append([p.detach().cpu() for p in m.parameters()])
    for eager, fused in zip(*results, strict=True):
        torch.testing.assert_close(fused, eager, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ ctrnn: the leaky cells
LEAKY = [("rate", "relu"), ("rate", "tanh"), ("rate", "softplus"),
         ("current", "relu"), ("current", "tanh"), ("current", "softplus")]


def ctrnn_of(shape: tuple[int, int, int, int], device: str = "cpu", **options: object):
    members, _, _, size = shape
    return dl.architectures.build("ctrnn", num_members=members, seeds=range(members),
                                  input_size=3, output_size=2, hidden_size=size,
                                  alpha=0.3, **options).to(device)


@kernels
@pytest.mark.parametrize("shape", [(2, 5, 4, 7), (3, 70, 3, 20)],
                         ids=lambda s: "G{}-B{}-T{}-H{}".format(*s))
@pytest.mark.parametrize(("form", "activation"), LEAKY, ids=lambda v: str(v))
def test_ctrnn_kernel_matches_the_plain_cell_loop(triton_ok, dw_outside: bool, form: str,
                                                  activation: str,
                                                  shape: tuple[int, int, int, int]) -> None:
    """Both leaky cells with each f, α = 0.3: states and every gradient, over one batch
    block and over several (H not a power of two, below 16 and above)."""
    torch.manual_seed(5)
    _, batch, steps, _ = shape
    stack = ctrnn_of(shape, KERNEL_DEVICE, form=form, activation=activation)
    with torch.no_grad():  # biases that switch relu units both on and off
        stack.bias_hh.normal_(0.0, 0.5)
    u = projected(stack, torch.randn(batch, steps, 3, device=KERNEL_DEVICE))
    u = u.detach().requires_grad_()
    params = (u, stack.weight_hh, stack.bias_hh)
    expected = plain_hidden(stack, u)
    cotangent = torch.randn_like(expected)
    hidden = fused_recurrence.fused_recurrence(u, stack.weight_hh, stack.bias_hh,
                                               f"ctrnn_{form}", alpha=0.3,
                                               activation=activation)
    torch.testing.assert_close(hidden, expected, rtol=1e-5, atol=1e-6)
    for name, got, want in zip(("u", "weight_hh", "bias_hh"),
                               torch.autograd.grad(hidden, params, cotangent),
                               torch.autograd.grad(expected, params, cotangent), strict=True):
        assert want.abs().max() > 0, name
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5,
                                   msg=lambda m, n=name: f"{n}: {m}")


@kernels
@pytest.mark.parametrize(("form", "activation"), [("rate", "softplus"), ("current", "relu")])
def test_ctrnn_fused_forward_returns_what_the_plain_forward_returns(
        triton_ok, dw_outside: bool, form: str, activation: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A flagged ctrnn stack with Dale's law and no autapses runs its form's kernel on W_eff:
    the same outputs (the current form's read out through f), states and gradients."""
    kernel, cells = fused_recurrence.fused_recurrence, []

    def recorded(*args: object, **kwargs: object) -> Tensor:
        cells.append((args[3], kwargs))
        return kernel(*args, **kwargs)

    monkeypatch.setattr(fused_recurrence, "fused_recurrence", recorded)
    torch.manual_seed(6)
    stack = ctrnn_of((3, 9, 5, 12), KERNEL_DEVICE, form=form, activation=activation,
                     dale_ratio=0.75, autapses=False)
    x = torch.randn(9, 5, 3, device=KERNEL_DEVICE, requires_grad=True)
    results = []
    for fused in (False, True):
        stack.fused = fused
        stack.zero_grad()
        x.grad = None
        outputs, hidden = stack(x)
        (outputs.square().sum() + hidden.sum()).backward()
        results.append((outputs, hidden, [x.grad.clone()]
                        + [p.grad.clone() for p in stack.parameters()]))
    assert cells == [(f"ctrnn_{form}", {"alpha": 0.3, "activation": activation})]
    (out0, hid0, grads0), (out1, hid1, grads1) = results
    torch.testing.assert_close(hid1, hid0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out1, out0, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads1, grads0, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@kernels
def test_ctrnn_bad_arguments_are_named(triton_ok) -> None:
    stack = ctrnn_of((2, 4, 3, 5), KERNEL_DEVICE)
    u = stack._project_rows(torch.randn(4, 3, 3, device=KERNEL_DEVICE), shared=True)
    w, b = stack.weight_hh, stack.bias_hh
    with pytest.raises(ValueError, match="unknown activation 'sigmoid'"):
        fused_recurrence.fused_recurrence(u, w, b, "ctrnn_rate", 0.2, "sigmoid")
    for alpha in (0.0, 1.5, True):
        with pytest.raises(ValueError, match=r"alpha must be a number in \(0, 1\]"):
            fused_recurrence.fused_recurrence(u, w, b, "ctrnn_current", alpha, "relu")


def test_ctrnn_stacks_name_their_forms_kernel_and_stay_plain_by_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel follows the stack's form; no width map entry yet, so neither the trainer
    nor a population fuses a ctrnn stack until one is added (the benchmark's path does)."""
    assert ctrnn_of((1, 2, 2, 4)).fused_kernel() == "ctrnn_rate"
    assert ctrnn_of((1, 2, 2, 4), form="current").fused_kernel() == "ctrnn_current"
    assert not set(fused_recurrence.LEAKY) & set(fused_recurrence.FASTER_UP_TO)
    monkeypatch.setattr(fused_recurrence, "available", lambda: True)
    entry = {"name": "ctrnn", "config": {"form": ["rate", "current"]}}
    for widths, fused in (({}, [False, False]), ({"ctrnn_current": 64}, [False, True])):
        for cell, width in widths.items():
            monkeypatch.setitem(fused_recurrence.FASTER_UP_TO, cell, width)
        module = PopulationModule(tasks=TASKS[:1], architectures=[entry], hidden_sizes=[8],
                                  seeds=[0])
        monkeypatch.setattr(module, "_device", torch.device("cuda", 0))
        module.on_fit_start()
        assert [s.fused for s in module.stacks] == fused
        assert len(module._plain_cells) == fused.count(False)  # the others compiled
        module._restore_plain_cells()


@cuda
def test_graphed_fused_ctrnn_step_gives_the_eager_plain_gradients() -> None:
    pytest.importorskip("triton")
    entry = {"name": "ctrnn", "config": {"form": ["rate", "current"],
                                         "activation": ["tanh", "softplus"], "dale_ratio": 0.8}}
    m = PopulationModule(tasks=TASKS, architectures=[entry], hidden_sizes=[8], seeds=[0, 1],
                         clip_norm=0.5).cuda()
    labels = [g.task.label for g in m.groups]
    for stack in m.stacks:
        stack.fused = True
    graphed = GraphedStep(m.stacks, labels, m._group_loss, m._clip, batch(0))
    b = batch(1)
    total = graphed(b).clone()
    grads = [p.grad.clone() for p in m.parameters()]
    for stack in m.stacks:
        stack.fused = False
    for p in m.parameters():
        p.grad = None
    expected = sum(m._group_loss(i, *b[g.task.label]) for i, g in enumerate(m.groups))
    expected.backward()
    for stack in m.stacks:
        clip_per_member(stack, 0.5)
    torch.testing.assert_close(total, expected.detach(), rtol=1e-5, atol=1e-6)
    for got, p in zip(grads, m.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)
