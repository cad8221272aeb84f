"""Validation at the boundary: parameters and input data, checked once with clear messages.

This package is the only place where column selection, the dtype rule, the shape checks,
the non-finite and magnitude checks, the "missing column" error and the parameter checks
live; every estimator and the engine's input preparation call these functions. Compute
functions downstream assume what is checked here. Messages follow scikit-learn's wording
(parameter, what is allowed, what was given).
"""

from .data import (
    as_feature_array,
    check_array,
    check_dask_array,
    check_finite,
    check_magnitude,
    check_n_features,
    check_vector_shape,
    column_label,
    float_dtype,
    is_dask_array,
    is_dask_frame,
    magnitude_error,
    max_abs_limit,
    nonfinite_error,
    select_features,
)
from .params import check_interval, check_options, check_random_state, seed_from

__all__ = [
    "as_feature_array",
    "check_array",
    "check_dask_array",
    "check_finite",
    "check_interval",
    "check_magnitude",
    "check_n_features",
    "check_options",
    "check_random_state",
    "check_vector_shape",
    "column_label",
    "float_dtype",
    "is_dask_array",
    "is_dask_frame",
    "magnitude_error",
    "max_abs_limit",
    "nonfinite_error",
    "seed_from",
    "select_features",
]
