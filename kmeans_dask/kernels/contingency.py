"""Agreement of two labellings from their contingency table alone (pure numpy).

The table is small (segments x segments) even when the labellings cover billions of rows:
the engine counts pairs ``(old, new)`` where the rows are and only the counts travel.
"""

from __future__ import annotations

import numpy as np

__all__ = ["adjusted_rand_from_contingency", "pair_confusion_from_contingency"]


def pair_confusion_from_contingency(table: np.ndarray) -> tuple[int, int, int, int]:
    """``(tn, fp, fn, tp)`` over ordered pairs of rows, as scikit-learn's
    ``pair_confusion_matrix`` counts them (rows of ``table``: the reference labelling).

    Counts are Python integers, exact for any number of rows (no int64 overflow).
    """
    t = np.asarray(table).astype(np.int64).astype(object)
    n = int(t.sum())
    sum_squares = int((t * t).sum())
    rows = t.sum(axis=1)  # sizes in the reference labelling
    cols = t.sum(axis=0)  # sizes in the other labelling
    tp = sum_squares - n
    fp = int((t @ cols).sum()) - sum_squares
    fn = int((t.T @ rows).sum()) - sum_squares
    tn = n * n - fp - fn - sum_squares
    return tn, fp, fn, tp


def adjusted_rand_from_contingency(table: np.ndarray) -> float:
    """The adjusted Rand index of two labellings given their contingency table.

    Parameters
    ----------
    table : ndarray of shape (n_classes_a, n_classes_b)
        ``table[i, j]``: rows labelled ``i`` by one labelling and ``j`` by the other
        (non-negative integers; empty rows or columns are allowed).

    Returns
    -------
    float
        Equal to :func:`sklearn.metrics.adjusted_rand_score` on the rows the table counts:
        1.0 for identical partitions (up to renaming), about 0.0 for independent ones; 1.0
        when both labellings put every row in one cluster or every row apart, as scikit-learn.
    """
    tn, fp, fn, tp = pair_confusion_from_contingency(table)
    if fn == 0 and fp == 0:  # identical partitions (including the trivial cases)
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
