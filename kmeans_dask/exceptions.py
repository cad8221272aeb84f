"""The small exception and warning hierarchy of kmeans_dask.

Every error says what was wrong (which parameter, column, file or setting), what is
allowed, and what was given. They subclass the built-in type a scikit-learn user would
catch (``ValueError``, ``TypeError``), so existing ``except`` clauses keep working.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EXIT_FAILED",
    "EXIT_USAGE",
    "ConfigError",
    "ConvergenceWarning",  # noqa: F822 (module __getattr__)
    "DatasetError",
    "InputError",
    "InputTypeError",
    "InvalidParameterError",
    "KMeansDaskError",
    "KMeansDaskWarning",
    "MemoryBudgetError",
    "StorageError",
    "describe",
    "exit_code",
]


class KMeansDaskError(Exception):
    """Base class of the errors raised by kmeans_dask."""


class InvalidParameterError(KMeansDaskError, ValueError, TypeError):
    """An estimator or function parameter is out of its allowed range or of the wrong type."""


class ConfigError(KMeansDaskError, ValueError):
    """A job config (YAML file or ``--set`` override) is invalid; the message names the key
    path, what is allowed and what was given."""


class MemoryBudgetError(ConfigError):
    """The data cannot be held (or streamed) within the workers' memory budget as
    configured; the message gives the bytes needed, the budget and the options."""


class InputError(KMeansDaskError, ValueError):
    """The data itself is unusable (NaN/inf, non-numeric column, empty, wrong shape)."""


class InputTypeError(InputError, TypeError):
    """The data holds values of a type that cannot be read as numbers (e.g. an object array
    with strings or dicts): a ``TypeError``, as numpy and scikit-learn raise, and an
    :class:`InputError`."""


class KMeansDaskWarning(UserWarning):
    """Base class of the warnings issued by kmeans_dask."""


class DatasetError(InputError):
    """An input dataset is unusable: no files, a missing or non-numeric column, files whose
    schemas differ, an unreadable file. The message names the URI or file and the column."""


class StorageError(KMeansDaskError, OSError):
    """Writing or committing results failed (the run is left uncommitted)."""



# --------------------------------------------------------------------------- reporting

#: exit code of a failure the user fixes in the config, the data or a parameter
EXIT_USAGE = 2
#: exit code of any other failure (storage, compute, a concurrent run)
EXIT_FAILED = 1


def exit_code(exc: BaseException) -> int:
    """2 for a config, data or parameter error (the user's to fix), 1 for anything else."""
    if isinstance(exc, StorageError):
        return EXIT_FAILED
    if isinstance(exc, ConfigError | InputError | InvalidParameterError):
        return EXIT_USAGE
    return EXIT_FAILED


def describe(exc: BaseException) -> str:
    """The failure in one line (one line per key for an invalid config)."""
    text = str(exc).strip() or type(exc).__name__
    lines = text.splitlines()
    if len(lines) == 2 and lines[1].startswith("  "):  # one config error: one line
        text = f"{lines[0]} {lines[1].strip()}"
    if isinstance(exc, ConfigError):
        return text
    if isinstance(exc, InputError):
        return f"input error: {text}"
    if isinstance(exc, InvalidParameterError):
        return f"invalid parameter: {text}"
    if isinstance(exc, StorageError):
        return f"storage error: {text}"
    if isinstance(exc, KMeansDaskError):
        return f"{type(exc).__name__}: {text}"
    return f"failed: {type(exc).__name__}: {lines[0]} (run with -v for the traceback)"


def __getattr__(name: str) -> Any:
    # scikit-learn's own ConvergenceWarning, imported on first use: importing scikit-learn
    # costs ~70 MB per process, and the Dask workers never need it
    if name == "ConvergenceWarning":
        from sklearn.exceptions import ConvergenceWarning

        return ConvergenceWarning
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
