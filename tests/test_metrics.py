"""Map-reduce metrics against scikit-learn."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score as sk_ari

from kmeans_dask.metrics import adjusted_rand_score, contingency_matrix


@pytest.mark.parametrize("chunks", [1000, 333, 1])
def test_ari_matches_sklearn(chunks, backend):
    rng = np.random.default_rng(0)
    n = 60 if chunks == 1 else 3000
    a = rng.integers(0, 5, size=n)
    b = np.where(rng.uniform(size=n) < 0.8, a, rng.integers(0, 7, size=n))
    ours = adjusted_rand_score(da.from_array(a, chunks=chunks), da.from_array(b, chunks=chunks))
    np.testing.assert_allclose(ours, sk_ari(a, b), rtol=1e-12)
    assert adjusted_rand_score(a, (a + 1) % 5) == pytest.approx(1.0)


def test_contingency_counts():
    c = contingency_matrix(np.array([0, 0, 1, 2]), np.array([1, 1, 0, 0]))
    np.testing.assert_array_equal(c, [[0, 2], [1, 0], [1, 0]])
