"""Which members and pairs analyses show by default: one policy for report and callbacks."""

from __future__ import annotations

from dynamo_lightning.analysis.selection import auto_pairs, clusters, representative_members


def test_members_are_taken_in_turn_from_each_cluster() -> None:
    meta = [{"architecture": a} for a in ["gru"] * 6 + ["lstm"] * 3 + ["cnn"]]
    assert representative_members(meta, 8) == [0, 6, 9, 1, 7, 2, 8, 3]
    assert representative_members(meta, 3) == [0, 6, 9]
    usable = [i % 2 == 1 for i in range(10)]  # members without points are skipped
    assert representative_members(meta, 3, usable) == [1, 7, 9]


def test_clusters_are_task_times_architecture() -> None:
    meta = [{"task": "flipflop", "architecture": "gru"}, {"task": "sine", "architecture": "gru"},
            {"task_label": "ff", "task": "flipflop", "architecture": "gru"}, {}]
    assert clusters(meta) == {"flipflop/gru": [0], "sine/gru": [1], "ff/gru": [2], "?/?": [3]}


def test_pairs_within_then_across_clusters_in_any_number() -> None:
    meta = [{"architecture": a} for a in ["gru"] * 6 + ["lstm"] * 3 + ["cnn"]]
    assert auto_pairs(meta, within=1, across=1) == [(0, 1), (5, 8)]
    assert auto_pairs(meta) == [(0, 1), (6, 7), (5, 8), (5, 9)]
    assert auto_pairs([{"architecture": "x"}, {"architecture": "y"}]) == [(0, 1)]
    assert auto_pairs([{}]) == []
