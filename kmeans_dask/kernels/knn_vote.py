"""Predictions from merged neighbour lists (numpy only): scikit-learn's vote of
``KNeighborsClassifier`` (uniform or distance weights, ties to the smallest label) and the
mean of ``KNeighborsRegressor``."""

from __future__ import annotations

import numpy as np

__all__ = ["neighbour_mean", "neighbour_weights", "vote"]


def neighbour_weights(dist: np.ndarray, weights: str) -> np.ndarray:
    """scikit-learn's neighbour weights: ones, or ``1 / dist`` where a row with a zero
    distance gives weight 1 to its zero-distance neighbours and 0 to the others."""
    if weights == "uniform":
        return np.ones_like(dist, dtype=np.float64)
    with np.errstate(divide="ignore"):
        w = 1.0 / dist
    inf_mask = np.isinf(w)
    inf_row = inf_mask.any(axis=1)
    w[inf_row] = inf_mask[inf_row]
    return w


def vote(
    dist: np.ndarray, codes: np.ndarray, n_classes: int, weights: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class probabilities, predicted class code and its vote share.

    Accumulates the weights neighbour by neighbour, as scikit-learn's
    ``KNeighborsClassifier.predict_proba`` does; equal votes go to the smallest class code
    (``argmax`` takes the first maximum; class codes are in sorted label order).

    Returns
    -------
    proba : ndarray of shape (n, n_classes)
    pred : ndarray of shape (n,), int64
    share : ndarray of shape (n,)
        Share of the neighbour weight that went to ``pred``.
    """
    n = dist.shape[0]
    w = neighbour_weights(dist, weights)
    proba = np.zeros((n, n_classes))
    rows = np.arange(n)
    for j in range(codes.shape[1]):
        proba[rows, codes[:, j]] += w[:, j]
    norm = proba.sum(axis=1)
    norm[norm == 0.0] = 1.0
    proba /= norm[:, None]
    pred = np.argmax(proba, axis=1)
    return proba, pred, proba[rows, pred]


def neighbour_mean(dist: np.ndarray, target: np.ndarray, weights: str) -> np.ndarray:
    """scikit-learn's ``KNeighborsRegressor.predict`` from the neighbours' targets."""
    if weights == "uniform":
        return np.mean(target, axis=1)
    w = neighbour_weights(dist, weights)
    return np.sum(target * w, axis=1) / np.sum(w, axis=1)
