"""The small exception and warning hierarchy of kmeans_dask.

Every error says what was wrong (which parameter, column, file or setting), what is
allowed, and what was given. They subclass the built-in type a scikit-learn user would
catch (``ValueError``, ``TypeError``), so existing ``except`` clauses keep working.
"""

from __future__ import annotations

from sklearn.exceptions import ConvergenceWarning

__all__ = [
    "ConvergenceWarning",
    "InputError",
    "InvalidParameterError",
    "KMeansDaskError",
    "KMeansDaskWarning",
]


class KMeansDaskError(Exception):
    """Base class of the errors raised by kmeans_dask."""


class InvalidParameterError(KMeansDaskError, ValueError, TypeError):
    """An estimator or function parameter is out of its allowed range or of the wrong type."""


class InputError(KMeansDaskError, ValueError):
    """The data itself is unusable (NaN/inf, non-numeric column, empty, wrong shape)."""


class KMeansDaskWarning(UserWarning):
    """Base class of the warnings issued by kmeans_dask."""
