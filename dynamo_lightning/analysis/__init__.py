"""Analysis of a fitted DYNAMO map: pure functions over tensors and arrays, no Lightning."""

from dynamo_lightning.analysis.fixed_points import (
    FixedPoints,
    find_fixed_points,
    member_step_fn,
    meta_step_fn,
    sample_inits,
)
from dynamo_lightning.analysis.interpolation import (
    GridResult,
    Interpolation,
    bifurcation_alphas,
    fixed_points_at,
    interpolate,
    interpolate_grid,
    interpolate_pairs,
    interpolate_path,
)
from dynamo_lightning.analysis.map_figure import map_figure
from dynamo_lightning.analysis.plots import fixed_point_figure, grid_figure, interpolation_figure
from dynamo_lightning.analysis.projection import project
from dynamo_lightning.analysis.reparameterize import (
    permuted_copy,
    random_orthogonal,
    rotated_copy,
)
from dynamo_lightning.analysis.report import build_report, write_report

__all__ = [
    "FixedPoints",
    "GridResult",
    "Interpolation",
    "bifurcation_alphas",
    "build_report",
    "find_fixed_points",
    "fixed_point_figure",
    "fixed_points_at",
    "grid_figure",
    "interpolate",
    "interpolate_grid",
    "interpolate_pairs",
    "interpolate_path",
    "interpolation_figure",
    "map_figure",
    "member_step_fn",
    "meta_step_fn",
    "permuted_copy",
    "project",
    "random_orthogonal",
    "rotated_copy",
    "sample_inits",
    "write_report",
]
