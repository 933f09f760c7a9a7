"""The ``report.json`` schema (documented in ``docs/report.md``) and JSON-safe values.

:data:`SCHEMA` names every required key with its type; :func:`validate_report` checks a
report against it (and that per-member lists have N entries), so the writer, the tests and
anyone reading old reports agree on one definition. Numbers are plain JSON numbers; a value
that is not finite (NaN, ±inf) is written as ``null``.
"""

from __future__ import annotations

from typing import Any

from dynamo_lightning.analysis.plain import plain

__all__ = ["SCHEMA", "SCHEMA_VERSION", "plain", "validate_report"]

SCHEMA_VERSION = 1

NUM = (int, float)
OPT_NUM = (int, float, type(None))
OPT_STR = (str, type(None))
OPT_BOOL = (bool, type(None))
COUNTS = {"total": int, "stable": int, "saddle": int, "unstable": int, "slow": int}

#: Required keys and their types: a type (or tuple of types), a nested dict, or a one-item
#: list ``[spec]`` meaning "a list whose every item follows spec". Extra keys are allowed.
SCHEMA: dict[str, Any] = {
    "meta": {
        "schema_version": int, "created": str,
        "package": {"name": str, "version": str},
        "checkpoint": OPT_STR,
        "population": {"path": OPT_STR, "checksum": str, "checkpoint_checksum": OPT_STR,
                       "checksum_matches": OPT_BOOL},
        "num_members": int, "embedding_dim": int,
        "task": (dict, type(None)), "metric_name": str,
        "machine": {"platform": str, "python": str, "torch": str, "cpu_count": int,
                    "threads": int, "device": str},
        "options": dict, "timings": dict,
    },
    "members": [{
        "index": int, "id": str, "cluster": str, "metadata": dict, "theta": [NUM],
        "map": [NUM],
        "scores": {"hidden_r2": OPT_NUM, "output_r2": OPT_NUM, "output_agreement": OPT_NUM,
                   "task_metric_meta": OPT_NUM, "task_metric_member": OPT_NUM},
    }],
    "emulation": {"keys": [str], "median": dict, "figure": OPT_STR},
    "map": {"method": str, "projected": bool, "keys": [str], "figures": dict},
    "fixed_points": {
        "input": str, "kinds": [str], "settings": dict,
        # meta is null where fixed points do not apply (feed-forward members: "applies")
        "members": [{"index": int, "id": str, "member": (dict, type(None)),
                     "meta": (dict, type(None)), "match": OPT_BOOL}],
        "match_fraction": OPT_NUM, "figures": dict,
    },
    "interpolation": {"pairs": [{
        "i": int, "j": int, "id_i": str, "id_j": str, "relation": str, "clusters": [str],
        "figure": OPT_STR,
        "result": {"alphas": [NUM], "thetas": [[NUM]], "metric_name": str,
                   "task_metric": [OPT_NUM], "counts": dict, "bifurcations": [NUM]},
    }]},
    "bifurcations": [{"i": int, "j": int, "id_i": str, "id_j": str, "alphas": [NUM]}],
    # The map's uses (docs/report.md): null when not computed.
    "baselines": (dict, type(None)),
    "averaging": (dict, type(None)),
    "figures": [str],
}


def validate_report(report: dict[str, Any]) -> None:
    """Check ``report`` against :data:`SCHEMA`.

    Raises:
        ValueError: every missing key or wrong type, as ``path: problem`` lines.
    """
    problems: list[str] = []
    _check(report, SCHEMA, "report", problems)
    if not problems:
        n = report["meta"]["num_members"]
        for path, items in (("members", report["members"]),
                            ("fixed_points.members", report["fixed_points"]["members"])):
            if len(items) != n:
                problems.append(f"{path}: {len(items)} entries for {n} members")
        if report["meta"]["schema_version"] != SCHEMA_VERSION:
            problems.append(f"meta.schema_version: {report['meta']['schema_version']}, "
                            f"this code reads {SCHEMA_VERSION}")
    if problems:
        raise ValueError("report.json does not follow the schema:\n  " + "\n  ".join(problems))


def _check(value: Any, spec: Any, path: str, problems: list[str]) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        for key, sub in spec.items():
            if key not in value:
                problems.append(f"{path}.{key}: missing")
            else:
                _check(value[key], sub, f"{path}.{key}", problems)
    elif isinstance(spec, list):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for index, item in enumerate(value):
            _check(item, spec[0], f"{path}[{index}]", problems)
    else:
        types = spec if isinstance(spec, tuple) else (spec,)
        bad_bool = isinstance(value, bool) and bool not in types
        if bad_bool or not isinstance(value, types):
            names = "/".join("null" if t is type(None) else t.__name__ for t in types)
            problems.append(f"{path}: expected {names}, got {type(value).__name__} {value!r:.40}")
