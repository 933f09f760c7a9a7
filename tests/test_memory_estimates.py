"""The pre-flight memory checks (``dynamo_lightning.memory``): each stage's estimate against
what the stage really allocates, free memory per device, and the refusals (one
``MemoryEstimateError`` naming the setting that drives the estimate, before any allocation).

Estimates are compared with measured sizes two ways: the parameter terms with the real
parameters (exact), and whole estimates with the peak resident memory of a fresh process
that runs the stage (``ru_maxrss``): a training step, a fit step, a trajectory build, a
population load. The measured ratios are 0.7-1.4; the contract is a factor of 2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import dynamo_lightning.memory.budget as budget
from dynamo_lightning import memory
from dynamo_lightning.memory import MemoryEstimateError
from dynamo_lightning.module import DynamoModule, MetaModelConfig
from dynamo_lightning.module.memory_check import fit_estimate
from dynamo_lightning.population import Population, architectures
from dynamo_lightning.population.training import PopulationModule

TASKS = [{"name": "flipflop", "config": {"n_bits": 2, "seq_len": 16}}]


@pytest.fixture
def free_memory(monkeypatch: pytest.MonkeyPatch):
    """``set(n)``: every check sees ``n`` bytes free, from any size up (no floor)."""
    monkeypatch.delenv(memory.SKIP_ENV, raising=False)
    monkeypatch.setattr(budget, "CHECKED_FROM", 0)

    def set_free(n: int) -> None:
        monkeypatch.setattr(budget, "available_bytes", lambda device="cpu": n)

    return set_free


def shape_of(name: str, **config) -> memory.StackShape:
    shape = memory.stack_shape(lambda: architectures.build(name, num_members=1, seeds=[0],
                                                           **config))
    assert shape is not None
    return shape


# ----------------------------------------------------------------------------- free memory
def test_cpu_memory_is_meminfo_available_capped_by_the_cgroup(monkeypatch) -> None:
    free = memory.available_bytes("cpu")
    assert isinstance(free, int) and free > 0
    monkeypatch.setattr(budget, "_meminfo_available", lambda: 8 * 2**30)
    monkeypatch.setattr(budget, "_cgroup_headroom", lambda: 2**30)
    assert memory.available_bytes("cpu") == 2**30
    monkeypatch.setattr(budget, "_cgroup_headroom", lambda: None)
    assert memory.available_bytes(torch.device("cpu")) == 8 * 2**30
    monkeypatch.setattr(budget, "_meminfo_available", lambda: None)  # no /proc: sysconf
    assert memory.available_bytes("cpu") > 0
    assert memory.available_bytes("mps") is None  # unknown: not checked


def test_meminfo_is_read_in_bytes(tmp_path: Path) -> None:
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       16000000 kB\nMemAvailable:    2000000 kB\n")
    assert budget._meminfo_available(str(info)) == 2000000 * 1024
    assert budget._meminfo_available(str(tmp_path / "none")) is None


def test_the_cgroup_headroom_leaves_its_file_cache_out(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("8000000000\n")
    (tmp_path / "memory.current").write_text("5000000000\n")
    (tmp_path / "memory.stat").write_text("anon 3000000000\ninactive_file 1000000000\n")
    assert budget._cgroup_headroom(str(tmp_path)) == 4 * 10**9
    (tmp_path / "memory.max").write_text("max\n")
    assert budget._cgroup_headroom(str(tmp_path)) is None
    assert budget._cgroup_headroom(str(tmp_path / "none")) is None


def test_cuda_memory_is_mem_get_info_plus_what_torch_caches(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (5 * 10**9, 80 * 10**9))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: 3 * 10**9)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda i: 2 * 10**9)
    assert memory.available_bytes("cuda") == 6 * 10**9
    assert memory.available_bytes("cuda:0") == 6 * 10**9
    monkeypatch.delenv(memory.SKIP_ENV, raising=False)
    with pytest.raises(MemoryEstimateError,
                       match=r"^data.batch_size 9 needs ~10 GB, 6.0 GB free on cuda:0 "):
        memory.check_fits(10**10, "data.batch_size 9", "cuda:0")


# ----------------------------------------------------------------------------- the check
def test_refusal_names_the_setting_the_estimate_and_what_is_free(free_memory) -> None:
    free_memory(20 * 10**9)
    with pytest.raises(MemoryEstimateError) as err:
        memory.check_fits(480 * 10**9, "model.meta.hidden_size 480000")
    assert str(err.value).startswith("model.meta.hidden_size 480000 needs ~480 GB, 20 GB free")
    assert memory.SKIP_ENV in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)  # a user error: one line in every command
    memory.check_fits(19 * 10**9, "model.meta.hidden_size 64")  # fits: nothing happens


@pytest.mark.parametrize(("value", "skips"), [("1", True), ("yes", True), ("0", False),
                                              ("", False)])
def test_the_environment_variable_skips_the_check(free_memory, monkeypatch, value,
                                                  skips) -> None:
    free_memory(10**6)
    monkeypatch.setenv(memory.SKIP_ENV, value)
    if skips:
        memory.check_fits(10**12, "x 1")
        PopulationModule(TASKS, hidden_sizes=[8])  # builds: nothing is checked
    else:
        with pytest.raises(MemoryEstimateError):
            memory.check_fits(10**12, "x 1")


def test_the_largest_term_is_named() -> None:
    estimate = memory.Estimate({"a 1": 5.0, "b 2": 7.0, "c 3": 1.0})
    assert estimate.largest == "b 2" and estimate.total == 13.0
    assert memory.lead(("data.batch_size 100000", 100000, 64), ("task seq_len 100", 100, 100),
                       ("model.hidden_sizes 64", 64, 64)) == "data.batch_size 100000"


# ----------------------------------------------------------------------------- estimates
@pytest.mark.parametrize("name", ["vanilla", "gru", "lstm", "ugrnn", "ctrnn", "cnn"])
def test_training_parameter_term_is_the_real_parameters_four_times(name: str) -> None:
    config = ({"input_size": 8, "output_size": 10, "hidden_size": 6} if name == "cnn" else
              {"input_size": 3, "output_size": 2, "hidden_size": 12})
    stack = architectures.build(name, num_members=5, seeds=list(range(5)), **config)
    real = sum(p.numel() * p.element_size() for p in stack.parameters())
    estimate = memory.population_training([(shape_of(name, **config), 5, 16, 3)])
    assert estimate.total == 4 * real  # parameters, gradients, Adam's two moments


@pytest.mark.parametrize("name", ["vanilla", "gru", "lstm", "ugrnn", "ctrnn", "cnn"])
def test_training_activation_term_is_within_2x_of_the_saved_tensors(name: str) -> None:
    """The activation term against what a training forward really keeps for its backward
    (every tensor autograd saves, counted once per storage) plus its outputs."""
    g, b, t = 3, 8, 20
    config = ({"input_size": 8, "output_size": 10, "hidden_size": 16} if name == "cnn" else
              {"input_size": 3, "output_size": 3, "hidden_size": 32})
    t_in, i_in = (8, 8) if name == "cnn" else (t, 3)
    stack = architectures.build(name, num_members=g, seeds=list(range(g)), **config)
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        outputs, hidden = stack(torch.randn(b, t_in, i_in))
    real = sum(storages.values()) + 4 * (outputs.numel() + hidden.numel())
    shape = shape_of(name, **config)
    params = memory.population_training([(shape, g, t_in, i_in)]).total
    activations = memory.population_training([(shape, g, t_in, i_in)], batch_size=b).total
    ratio = (activations - params) / real
    assert 0.5 <= ratio <= 2.0, ratio


def test_fit_parameter_term_is_the_meta_model_four_times() -> None:
    m = DynamoModule(6, 3, 3, 4, meta={"cell": "gru", "hidden_size": 24})
    estimate = fit_estimate(m.meta, MetaModelConfig(**m.hparams.meta), 6, 4)
    meta = sum(p.numel() * 4 for p in m.meta.parameters())
    align = sum(p.numel() * 4 for p in (m.align_weight, m.align_bias))
    assert estimate.total == pytest.approx(4 * (meta + align))  # + gradients, Adam moments
    assert estimate.terms["model.meta.hidden_size 24"] == pytest.approx(4 * meta)


RSS = """
import sys, torch
torch.set_num_threads(1)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
def start():  # the peak (VmHWM) back to the current size: the stage's own peak from here
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status("VmRSS")
def rss():
    return status("VmHWM")
"""

TRAINING_STEP = RSS + """
from dynamo_lightning import memory
from dynamo_lightning.population import architectures
name, g, h, b, t = sys.argv[1], *map(int, sys.argv[2:6])
x, y = torch.randn(b, t, 3), torch.randn(b, t, 3)
warm = architectures.build(name, num_members=1, seeds=[0], input_size=3, output_size=3,
                           hidden_size=4)
torch.optim.Adam(warm.parameters()); warm(x[:2, :3])[0].sum().backward()
before = start()
stack = architectures.build(name, num_members=g, seeds=list(range(g)), input_size=3,
                            output_size=3, hidden_size=h)
optimizer = torch.optim.Adam(stack.parameters())
(stack(x)[0] - y).pow(2).mean().backward()
optimizer.step()
peak = rss() - before
shape = memory.stack_shape(lambda: architectures.build(name, num_members=1, seeds=[0],
                                                       input_size=3, output_size=3,
                                                       hidden_size=h))
print(memory.population_training([(shape, g, t, 3)], batch_size=b).total / peak)
"""

FIT_STEP = RSS + """
from dynamo_lightning.module import DynamoModule, MetaModelConfig
from dynamo_lightning.module.memory_check import fit_estimate
cell, conditioning, h = sys.argv[1], sys.argv[2], int(sys.argv[3])
n, m, s, t = 64, 8, 32, 100
def batch(m, s, t):
    return {"member": torch.arange(m), "inputs": torch.randn(m, s, t, 3),
            "hidden": torch.randn(m, s, t, 8), "outputs": torch.randn(m, s, t, 3)}
warm = DynamoModule(4, 3, 3, 8, meta={"cell": cell, "hidden_size": 4,
                                      "conditioning": conditioning})
warm.losses(batch(2, 2, 3))["loss"].backward()
data = batch(m, s, t)
before = start()
module = DynamoModule(n, 3, 3, 8, meta={"cell": cell, "hidden_size": h,
                                        "conditioning": conditioning})
optimizer = torch.optim.Adam(module.parameters())
module.losses(data)["loss"].backward()
optimizer.step()
peak = rss() - before
estimate = fit_estimate(module.meta, MetaModelConfig(**module.hparams.meta), n, 8,
                        (m, s, t, 3, 3))
print(estimate.total / peak)
"""

TRAJECTORY_BUILD = RSS + """
from dynamo_lightning import memory
from dynamo_lightning.data import TrajectoryDataModule
from dynamo_lightning.data.datamodule import trajectory_chunk
from dynamo_lightning.population import Population, architectures
folder, mode, g, h, n, t = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
stack = architectures.build("gru", num_members=g, seeds=list(range(g)), input_size=3,
                            output_size=3, hidden_size=h)
meta = [{"task": "flipflop", "task_config": {"n_bits": 3, "seq_len": t}}] * g
Population.from_stack("gru", stack, [f"g{i}" for i in range(g)], meta).save(folder + "/pop")
del stack
trials = {"train": n, "val": n // 4, "test": n // 4}
dm = TrajectoryDataModule(folder + "/pop", num_components=8, train_trials=n,
                          val_trials=n // 4, test_trials=n // 4, cache_dir=folder + "/cache",
                          mode=mode)
before = start()
dm.prepare_data()
dm.setup("fit")
peak = rss() - before
estimate = memory.trajectory_data(g, trials, t, 3, 3, 8, h, cached=mode == "cached",
                                  chunk_trials=trajectory_chunk(dm._population, t))
print(estimate.total / peak)
"""

POPULATION_LOAD = RSS + """
import json
from dynamo_lightning.data.memory_check import population_load
from dynamo_lightning.population import Population, architectures
folder, name, g, h = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:5])
architectures.build(name, num_members=1, seeds=[0], input_size=3, output_size=3,
                    hidden_size=4)
before = start()
Population.load(folder).groups()
peak = rss() - before
print(population_load(json.loads(open(folder + "/manifest.json").read())).total / peak)
"""


def measured_ratio(script: str, *args: object) -> float:
    """Estimate ÷ measured peak: the resident size's high-water mark of a fresh process,
    reset just before the stage (``/proc/self/clear_refs``), less its size then."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident size")
    result = subprocess.run([sys.executable, "-c", script, *map(str, args)],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    return float(result.stdout.split()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("args", [("gru", 4, 256, 64, 100), ("lstm", 4, 256, 64, 100),
                                  ("vanilla", 4, 256, 64, 100), ("ctrnn", 4, 256, 64, 100)])
def test_training_estimate_is_within_2x_of_the_measured_peak(args) -> None:
    assert 0.5 <= measured_ratio(TRAINING_STEP, *args) <= 2.0


@pytest.mark.slow
@pytest.mark.parametrize("args", [("gru", "concat", 128), ("lstm", "concat", 128),
                                  ("lstm", "film", 128), ("vanilla", "lowrank", 256)])
def test_fit_estimate_is_within_2x_of_the_measured_peak(args) -> None:
    assert 0.5 <= measured_ratio(FIT_STEP, *args) <= 2.0


@pytest.mark.slow
@pytest.mark.parametrize("args", [("cached", 8, 64, 4096, 100), ("online", 8, 64, 4096, 100),
                                  ("cached", 64, 32, 1024, 100)])
def test_trajectory_estimate_is_within_2x_of_the_measured_peak(args, tmp_path) -> None:
    assert 0.5 <= measured_ratio(TRAJECTORY_BUILD, tmp_path, *args) <= 2.0


@pytest.mark.slow
@pytest.mark.parametrize("args", [("gru", 4, 1024), ("lstm", 16, 512), ("vanilla", 64, 256)])
def test_load_estimate_is_within_2x_of_the_measured_peak(args, tmp_path) -> None:
    name, g, h = args
    stack = architectures.build(name, num_members=g, seeds=list(range(g)), input_size=3,
                                output_size=3, hidden_size=h)
    Population.from_stack(name, stack, [f"m{i}" for i in range(g)]).save(tmp_path / "pop")
    del stack
    assert 0.5 <= measured_ratio(POPULATION_LOAD, tmp_path / "pop", *args) <= 2.0


# ----------------------------------------------------------------------------- refusals
def refused_fast(run, match: str) -> MemoryEstimateError:
    """``run()`` raises a MemoryEstimateError matching ``match`` within 5 s."""
    start = time.perf_counter()
    with pytest.raises(MemoryEstimateError, match=match) as err:
        run()
    assert time.perf_counter() - start < 5.0
    return err.value


def test_population_training_is_refused_before_its_stacks_are_built() -> None:
    error = refused_fast(lambda: PopulationModule(TASKS, hidden_sizes=[300000]),
                         r"^model.hidden_sizes 300000 needs ~\d+ (GB|TB), ")
    assert "free" in str(error)


def test_population_training_names_the_batch_size_at_setup(free_memory) -> None:
    module = PopulationModule(TASKS, hidden_sizes=[8], seeds=[0, 1])
    free_memory(10**9)
    trainer = type("T", (), {"datamodule": type("D", (), {"batch_size": 10**7,
                                                          "val_batch_size": 16})(),
                             "strategy": type("S", (), {"root_device": torch.device("cpu")})()})
    module._trainer = trainer  # what the Trainer sets before setup
    with pytest.raises(MemoryEstimateError, match=r"^data.batch_size 10000000 needs ~"):
        module.setup("fit")


def test_a_meta_model_too_large_is_refused_before_it_is_built() -> None:
    refused_fast(lambda: DynamoModule(4, 3, 3, 8, meta={"hidden_size": 480000}),
                 r"^model.meta.hidden_size 480000 needs ~\d+ TB, ")


def test_an_architecture_is_refused_before_its_parameters_are_drawn(free_memory) -> None:
    refused_fast(lambda: architectures.build("gru", input_size=3, output_size=3,
                                             hidden_size=60000),
                 r"^hidden_size 60000 \(1 GRU member\) needs ~86 GB")
    free_memory(10**5)  # 4 members of 17,859 parameters, drawn and stacked: 571 kB
    with pytest.raises(MemoryEstimateError, match=r"hidden_size 64 \(4 LSTM members\)"):
        architectures.build("lstm", num_members=4, input_size=3, output_size=3,
                            hidden_size=64)
    with torch.device("meta"):  # a shape probe allocates nothing: never checked
        architectures.build("gru", input_size=3, output_size=3, hidden_size=60000)


def test_a_manifest_with_a_huge_member_is_refused_on_load(tiny_fit, tmp_path) -> None:
    from dynamo_lightning.data import TrajectoryDataModule

    folder = tmp_path / "huge"
    shutil.copytree(tiny_fit["population"], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["members"][0]["config"]["hidden_size"] = 60000
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"hidden_size 60000 .*needs ~\d+ GB"):
        Population.load(folder)  # the format's shape check builds the architecture
    refused_fast(lambda: TrajectoryDataModule(str(folder)),
                 rf"^member hidden_size 60000 in {folder}/manifest.json needs ~\d+ GB, ")


def test_trajectory_data_is_refused_before_any_trial_is_drawn(tiny_fit, tmp_path) -> None:
    from dynamo_lightning.data import TrajectoryDataModule

    task = {"name": "flipflop", "config": {"n_bits": 3, "seq_len": 10**8}}
    refused_fast(lambda: TrajectoryDataModule(str(tiny_fit["population"]), task=task,
                                              cache_dir=str(tmp_path)),
                 r"^task seq_len 100000000 needs ~")
    refused_fast(lambda: TrajectoryDataModule(str(tiny_fit["population"]),
                                              train_trials=10**8, cache_dir=str(tmp_path)),
                 r"^data.train_trials 100000000 needs ~")
    assert not any(tmp_path.iterdir())  # no cache entry begun


def test_a_reused_cache_is_not_counted(tiny_fit, free_memory, tmp_path) -> None:
    """A cache entry that exists is memory-mapped, not built: only the trials count."""
    from dynamo_lightning.data import TrajectoryDataModule

    cache = tmp_path / "cache"
    dm = TrajectoryDataModule(str(tiny_fit["population"]), train_trials=64,
                              cache_dir=str(cache))
    dm.prepare_data()
    dm.setup("fit")
    from dynamo_lightning.data.datamodule import trajectory_chunk

    estimate = memory.trajectory_data(4, dm.trials, dm.seq_len, 3, 3, 8, 16, cached=False,
                                      chunk_trials=trajectory_chunk(dm._population, dm.seq_len))
    free_memory(int(estimate.total) + 1)  # enough for the trials, not for the cache
    TrajectoryDataModule(str(tiny_fit["population"]), train_trials=64, cache_dir=str(cache))
    shutil.rmtree(cache)
    with pytest.raises(MemoryEstimateError):
        TrajectoryDataModule(str(tiny_fit["population"]), train_trials=64,
                             cache_dir=str(cache))


def test_the_report_is_refused_before_its_searches(tiny_fit, tmp_path) -> None:
    from dynamo_lightning.cli.analyze import run_analysis

    refused_fast(lambda: run_analysis(tiny_fit["ckpt"], tmp_path / "report", test=False,
                                      trials=10**8, progress=False),
                 r"^--trials 100000000 needs ~")
    assert not (tmp_path / "report").exists() or not any((tmp_path / "report").iterdir())
