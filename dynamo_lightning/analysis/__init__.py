"""Analysis of a fitted DYNAMO map: pure functions over tensors and arrays, no Lightning."""

from dynamo_lightning.analysis.averaging import average, averaging_table, weight_average
from dynamo_lightning.analysis.baselines import compare_methods, comparison_figure
from dynamo_lightning.analysis.clustering import cluster, cluster_scores, mds
from dynamo_lightning.analysis.few_shot import few_shot_curve, few_shot_figure
from dynamo_lightning.analysis.fitted_map import FittedMap
from dynamo_lightning.analysis.fixed_points import (
    FixedPointSet,
    find_fixed_points,
    member_step_fn,
    meta_step_fn,
    sample_inits,
)
from dynamo_lightning.analysis.interpolation import (
    GridResult,
    InterpolationResult,
    bifurcation_alphas,
    fixed_points_at,
    interpolate,
    interpolate_grid,
    interpolate_pairs,
    interpolate_path,
)
from dynamo_lightning.analysis.map_figure import map_figure
from dynamo_lightning.analysis.member_dynamics import member_fixed_points, member_states
from dynamo_lightning.analysis.placement import Placement, place
from dynamo_lightning.analysis.placement_figure import placement_figure
from dynamo_lightning.analysis.plots import fixed_point_figure, grid_figure, interpolation_figure
from dynamo_lightning.analysis.projection import project
from dynamo_lightning.analysis.reparameterize import (
    permuted_copy,
    random_orthogonal,
    rescaled_copy,
    rotated_copy,
)
from dynamo_lightning.analysis.report import build_report, write_report
from dynamo_lightning.analysis.search_options import SearchOptions
from dynamo_lightning.analysis.similarity import similarity

__all__ = [
    "FittedMap",
    "FixedPointSet",
    "GridResult",
    "InterpolationResult",
    "Placement",
    "SearchOptions",
    "average",
    "averaging_table",
    "bifurcation_alphas",
    "build_report",
    "cluster",
    "cluster_scores",
    "compare_methods",
    "comparison_figure",
    "few_shot_curve",
    "few_shot_figure",
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
    "mds",
    "member_fixed_points",
    "member_states",
    "member_step_fn",
    "meta_step_fn",
    "permuted_copy",
    "place",
    "placement_figure",
    "project",
    "random_orthogonal",
    "rescaled_copy",
    "rotated_copy",
    "sample_inits",
    "similarity",
    "weight_average",
    "write_report",
]
