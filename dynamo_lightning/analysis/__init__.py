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
from dynamo_lightning.analysis.projection import project
from dynamo_lightning.analysis.reparameterize import (
    permuted_copy,
    random_orthogonal,
    rotated_copy,
)

__all__ = [
    "FixedPoints",
    "GridResult",
    "Interpolation",
    "bifurcation_alphas",
    "find_fixed_points",
    "fixed_points_at",
    "interpolate",
    "interpolate_grid",
    "interpolate_pairs",
    "interpolate_path",
    "member_step_fn",
    "meta_step_fn",
    "permuted_copy",
    "project",
    "random_orthogonal",
    "rotated_copy",
    "sample_inits",
]
