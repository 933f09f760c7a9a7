"""``report.html`` sections on the map's uses: the similarity baselines and model averaging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dynamo_lightning.analysis.report import html_parts as hp

READ_BASELINES = (
    "Every method's dissimilarity between members, clustered the same way (agglomerative, "
    "average linkage) into as many clusters as the population has values of the key in the "
    "title, and scored against each metadata key: adjusted Rand index (ARI; 1 = the clusters "
    "are that key's groups, about 0 = unrelated) and normalised mutual information (NMI). "
    "DYNAMO's dissimilarity is the distance between embeddings θ. A method that separates "
    "networks by what they compute scores high on the computation and near 0 on the "
    "architecture. The pictures place each method's members by multidimensional scaling "
    "(MDS) of its dissimilarities.")
READ_AVERAGING = (
    "Model averaging: the meta-model at the centroid of a group's θ's is a new network. It is "
    "scored on the group's own task, on the same fresh trials as the members themselves, "
    "beside the naive average of the members' weights (per architecture, which only members "
    "of one architecture and shape allow). A working average keeps the members' metric "
    "(ratio near 1); weight averages of independently trained networks usually do not.")


def baselines_html(report: dict[str, Any], out_dir: Path) -> str:
    """The baselines section (empty when the report has none)."""
    section = report.get("baselines")
    if not section:
        return ""
    methods = section["methods"]
    keys = sorted({k for entry in methods.values() for k in (entry.get("scores") or {})})
    key = section["key"]
    keys = [key, *[k for k in keys if k != key]]
    rows = []
    for name, entry in methods.items():
        if entry.get("error"):
            rows.append([name, *["—"] * (2 * len(keys) + 1), entry.get("seconds"),
                         f"not run: {entry['error']}"])
            continue
        scores = entry["scores"]
        cells = [scores.get(k, {}).get(metric) for k in keys for metric in ("ari", "nmi")]
        rows.append([name, *cells, entry.get("silhouette"), entry.get("seconds"), ""])
    head = ["method", *(f"{metric} vs {k}" for k in keys for metric in ("ARI", "NMI")),
            "silhouette", "seconds", "note"]
    caption = (f"{section['n_clusters']} clusters (the number of values of '{key}'); "
               f"{section['trials']} trials per member")
    body = (f"<p>{hp.e(caption)}</p>" + hp.table(head, rows)
            + hp.figures([(hp.img(out_dir, section.get("figure")), "map and MDS pictures")]))
    return hp.section("The map beside similarity baselines", READ_BASELINES, body)


def averaging_html(report: dict[str, Any]) -> str:
    """The model-averaging section (empty when the report has none)."""
    section = report.get("averaging")
    if not section or not section.get("groups"):
        return ""
    rows = []
    for g in section["groups"]:
        weights = g.get("weight_average") or {}
        naive = "; ".join(f"{arch} {hp.fmt(v)}" for arch, v in weights.items()) or "—"
        rows.append([str(g["group"]), len(g["members"]), g["metric_name"], g["members_mean"],
                     g["centroid"], g["ratio"], naive])
    head = [section["key"], "members", "metric", "members' mean", "centroid network",
            "centroid / mean", "naive weight average"]
    body = (f"<p>Groups by '{hp.e(section['key'])}'; {section['trials']} test trials.</p>"
            + hp.table(head, rows))
    return hp.section("Model averaging", READ_AVERAGING, body)
