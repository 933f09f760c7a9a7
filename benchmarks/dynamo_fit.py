"""Wall time and emulation quality of one ``dynamo fit`` under given Trainer settings.

Run once per setting (DDP re-launches this script in every process, so one setting per
invocation); each run adds its row to ``benchmarks/results/dynamo_fit[_<tag>].json``:

    python benchmarks/dynamo_fit.py --population runs/population/flipflop/population
    python benchmarks/dynamo_fit.py --accelerator gpu --devices 1 --precision bf16-mixed --tag gpu
    python benchmarks/dynamo_fit.py --accelerator gpu --devices 2 --strategy ddp \\
        --precision bf16-mixed --tag gpu

Compare rows only within one results file (same machine, same run of the script).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

from common import machine_info  # noqa: E402

from dynamo_lightning.cli.demo import DEMO_DYNAMO  # noqa: E402
from dynamo_lightning.cli.lightning_cli import dynamo_main  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", default="runs/population/flipflop/population")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--tag", default="", help="results file suffix (e.g. the machine)")
    parser.add_argument("--out", default="runs/benchmarks/dynamo_fit")
    args = parser.parse_args()
    case = f"{args.accelerator}x{args.devices} {args.strategy} {args.precision}"
    config = copy.deepcopy(DEMO_DYNAMO)
    config["data"]["population"] = args.population
    config["data"]["cache_dir"] = str(Path(args.out) / "cache")
    config["trainer"].update({
        "max_epochs": args.epochs, "accelerator": args.accelerator, "devices": args.devices,
        "strategy": args.strategy, "precision": args.precision, "logger": False,
        "enable_checkpointing": False, "enable_progress_bar": False,
        "default_root_dir": str(Path(args.out) / case.replace(" ", "_"))})
    started = time.perf_counter()
    cli = dynamo_main({"fit": config})
    fit_seconds = time.perf_counter() - started
    cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    if cli.trainer.global_rank != 0:
        return
    scores = cli.model.member_scores
    row = {"case": case, "fit_seconds": round(fit_seconds, 2),
           "steps": int(cli.trainer.global_step),
           "median_hidden_r2": _median(scores.get("hidden_r2", [])),
           "median_output_agreement": _median(scores.get("output_agreement", []))}
    name = "dynamo_fit" + (f"_{args.tag}" if args.tag else "")
    path = ROOT / "results" / f"{name}.json"
    results = json.loads(path.read_text()) if path.exists() else {
        "name": name, "machine": machine_info(), "rows": [], "ratios": {}}
    results["machine"] = machine_info()
    results["rows"] = [r for r in results["rows"] if r["case"] != case]
    results["rows"] += [{"case": case, "metric": key, "value": value, "unit": unit}
                        for key, value, unit in (("fit_seconds", row["fit_seconds"], "s"),
                                                 ("steps", row["steps"], "steps"),
                                                 ("median_hidden_r2", row["median_hidden_r2"], ""),
                                                 ("median_output_agreement",
                                                  row["median_output_agreement"], ""))]
    results["ratios"] = _ratios(results["rows"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(row))


def _median(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def _ratios(rows: list[dict]) -> dict[str, float]:
    """Fit time of every case relative to the slowest single-device fp32 case."""
    times = {r["case"]: r["value"] for r in rows if r["metric"] == "fit_seconds"}
    base = [c for c in times if "x1 " in c and c.endswith("32-true")]
    if not base:
        return {}
    reference = max(base, key=times.__getitem__)
    return {f"{reference} / {case}": times[reference] / t for case, t in times.items()
            if case != reference and t > 0}


if __name__ == "__main__":
    main()
