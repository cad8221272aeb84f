"""The job's inputs checked before anything starts: no cluster, no data read, no output.

:func:`validate_inputs` lists the input (and the KNN query) once, reads every selected file's
footer (Parquet) or first rows (CSV), checks the columns against the config, and K against
the number of rows the footers give. A typo in a column name, a corrupt footer, a missing
bucket or refused credentials fail in about a second, before a Dask cluster is started.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import DatasetError
from ..io.read import DatasetInfo, check_dataset
from .config import RunConfig

__all__ = ["validate_inputs"]


def _check_rows(config: RunConfig, info: DatasetInfo) -> None:
    n = info.n_rows
    if n is None:  # CSV or row filters: the estimator checks once the rows are read
        return
    if n == 0:
        raise DatasetError(f"input {info.uri} has no rows (its files hold 0 rows)")
    km = config.kmeans
    key, k = ("kmeans.k", km.k) if km.k != "auto" else ("kmeans.k_max", km.k_max)
    if int(k) > n:
        raise DatasetError(
            f"{key}={k} is more than the {n} row(s) of input {info.uri}: k-means needs at "
            f"least as many rows as clusters; lower {key} or add data"
        )


def validate_inputs(config: RunConfig) -> dict[str, Any]:
    """Validate the run's input and KNN query without Dask; returns their fingerprints.

    What :func:`~kmeans_dask.job.prepare.check_inputs` checks, plus K against the number of
    rows, with one listing per dataset and no Dask graph: the plan stage can use its result
    as the run's input fingerprints instead of listing again.

    Returns
    -------
    dict
        ``{"input": [...], "query": [...]}`` (``query`` only when KNN is enabled): every
        listed file's path, size and ETag/mtime, exactly what
        :func:`~kmeans_dask.io.fingerprint` returns, from the same single listing, so the
        run id does not change.

    Raises
    ------
    DatasetError
        Nothing at a uri or no files of the format, an unreadable footer, a missing or
        non-numeric column, schemas that differ between files, no rows, or a K larger than
        the number of rows (known from Parquet footers without row filters).
    StorageError
        A listing or a footer read refused (access denied, naming the bucket) or failed.
    """
    spec = config.input
    info = check_dataset(
        spec.uri,
        spec.format,
        spec.columns,
        spec.id_column,
        spec.storage_options or None,
        spec.filters,
    )
    _check_rows(config, info)
    out: dict[str, Any] = {"input": info.fingerprints}
    knn = config.knn
    if knn.enabled and knn.query is not None:
        if knn.target != "segment":
            check_dataset(
                spec.uri,
                spec.format,
                [knn.target],
                None,
                spec.storage_options or None,
                spec.filters,
            )
        q = knn.query
        query = check_dataset(
            q.uri, q.format, info.features, q.id_column, q.storage_options or None, q.filters
        )
        out["query"] = query.fingerprints
    return out
