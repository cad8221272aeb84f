"""Segment profiles: the kernel's partial/merge/finalize against numpy, and the job's
``profiles.parquet`` / ``profiles.md`` / ``profiles.png`` against pandas on the input joined
with the written assignments, persisted and streamed."""

from __future__ import annotations

import io
import itertools
import json
import logging

import numpy as np
import pandas as pd
import pytest

from kmeans_dask.cli import main
from kmeans_dask.job.config import parse_config
from kmeans_dask.job.pipeline import run
from kmeans_dask.kernels.profile import (
    QUANTILES,
    Binning,
    finalize_profile,
    merge_profiles,
    profile_partial,
)

# --------------------------------------------------------------------------- kernel


def _data(rng, n=3000, d=3, K=4):
    X = rng.normal(size=(n, d)) * [1.0, 10.0, 0.01] + [5.0, -200.0, 0.0]
    labels = rng.integers(0, K, n)
    labels[:K] = np.arange(K)  # no empty segment
    return X, labels


def _binning(X, bins=64):
    mean, scale = X.mean(axis=0), X.std(axis=0)
    return Binning(scale, mean, X.min(axis=0), X.max(axis=0), bins), (X - mean) / scale


def test_merged_block_partials_equal_the_partial_of_all_rows(rng):
    X, labels = _data(rng)
    binning, Xs = _binning(X)
    whole = profile_partial(Xs, labels, 4, binning)
    cuts = [0, 1, 700, 701, 2000, 3000]  # includes a one-row block
    acc = profile_partial(Xs[:0], labels[:0], 4, binning)  # an empty block merges as nothing
    for a, b in itertools.pairwise(cuts):
        acc = merge_profiles(acc, profile_partial(Xs[a:b], labels[a:b], 4, binning))
    np.testing.assert_array_equal(acc.count, whole.count)
    np.testing.assert_array_equal(acc.hist, whole.hist)
    np.testing.assert_array_equal(acc.vmin, whole.vmin)
    np.testing.assert_array_equal(acc.vmax, whole.vmax)
    np.testing.assert_allclose(acc.mean, whole.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(acc.m2, whole.m2, rtol=1e-10)


def test_finalized_profile_matches_numpy_per_segment(rng):
    X, labels = _data(rng)
    binning, Xs = _binning(X, bins=50)
    p = profile_partial(Xs, labels, 4, binning)
    ids = np.array([7, 2, 9, 0])  # stable IDs: raw cluster k is segment ids[k]
    st = finalize_profile(p, binning, ids)
    assert st.ids.tolist() == [0, 2, 7, 9]
    assert st.size.sum() == len(X) and np.isclose(st.share.sum(), 1.0)
    for row, seg in enumerate(st.ids):
        rows = X[labels == np.flatnonzero(ids == seg)[0]]
        assert st.size[row] == len(rows)
        np.testing.assert_allclose(st.mean[row], rows.mean(axis=0), rtol=1e-9)
        np.testing.assert_allclose(st.std[row], rows.std(axis=0, ddof=1), rtol=1e-9)
        np.testing.assert_array_equal(st.vmin[row], rows.min(axis=0))
        exact = np.quantile(rows, QUANTILES, axis=0).T  # (d, q)
        err = np.abs(st.quantiles[row] - exact)
        assert (err <= binning.width[:, None] * (1 + 1e-9)).all()
        # the bound is not vacuous: a coarser histogram is further off
    np.testing.assert_allclose(st.overall_mean, X.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(st.overall_std, X.std(axis=0, ddof=1), rtol=1e-9)
    np.testing.assert_allclose(st.z, (st.mean - X.mean(axis=0)) / X.std(axis=0, ddof=1), rtol=1e-9)


def test_quantile_error_shrinks_with_the_bins_and_stays_within_one_bin(rng):
    X = rng.exponential(size=(5000, 1))
    labels = np.zeros(5000, dtype=np.int64)
    exact = np.quantile(X[:, 0], QUANTILES)
    errs = []
    for bins in (4, 16, 256):
        binning = Binning.identity(X.min(axis=0), X.max(axis=0), bins)
        st = finalize_profile(profile_partial(X, labels, 1, binning), binning)
        err = np.abs(st.quantiles[0, 0] - exact).max()
        assert err <= binning.width[0]
        errs.append(err)
    assert errs[2] < errs[0]


def test_constant_feature_one_row_and_empty_segments():
    X = np.array([[1.0, 3.0], [2.0, 3.0], [4.0, 3.0]])
    labels = np.array([0, 0, 2])
    binning = Binning.identity(X.min(axis=0), X.max(axis=0), 8)
    st = finalize_profile(profile_partial(X, labels, 3, binning), binning)
    assert st.size.tolist() == [2, 0, 1]
    assert np.isnan(st.mean[1]).all() and np.isnan(st.quantiles[1]).all()
    assert np.isnan(st.std[2]).all()  # one row: ddof=1 std is undefined, as in pandas
    assert st.z[0, 1] == 0.0  # constant column: no standardized difference
    np.testing.assert_array_equal(st.quantiles[0, 1], 3.0)
    np.testing.assert_array_equal(st.quantiles[2, 0], 4.0)


# --------------------------------------------------------------------------- the job


def _customers(n: int = 8000, seed: int = 11) -> pd.DataFrame:
    """Three blobs in four features of very different units and offsets."""
    rng = np.random.default_rng(seed)
    centres = np.array(
        [[30.0, 20_000.0, 1.0, 500.0], [45.0, 60_000.0, 5.0, 520.0], [60.0, 35_000.0, 2.0, 480.0]]
    )
    spread = np.array([3.0, 4_000.0, 0.5, 5.0])
    X = centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 4)) * spread
    df = pd.DataFrame(X, columns=FEATURES)
    df.insert(0, "customer_id", np.arange(10_000, 10_000 + n, dtype=np.int64))
    return df


FEATURES = ["age", "income", "visits", "basket"]


def _write_parts(store, df: pd.DataFrame, parts: int = 3) -> None:
    bounds = np.linspace(0, len(df), parts + 1).astype(int)
    for i in range(parts):  # several row groups per file: several blocks per file
        store.write_parquet(
            f"in/part-{i:03d}.parquet", df.iloc[bounds[i] : bounds[i + 1]], row_group_size=300
        )


def _config(store, persist: str) -> dict:
    return {
        "name": f"profiles-{persist}",
        "input": {"uri": store.uri("in"), "id_column": "customer_id", "columns": FEATURES},
        "kmeans": {
            "k": 3,
            "random_state": 0,
            "persist": persist,
            "block_bytes": "64KiB",  # 256 KB of features: 4+ blocks of several row groups
        },
        "output": {"uri": store.uri(f"out-{persist}")},
    }


def _read(fs, path: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(fs.cat_file(path)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, _session_client):
    """The same small job persisted and streamed (run once for the module's tests)."""
    from conftest import Store

    store = Store(str(tmp_path_factory.mktemp("profiles")), None)
    df = _customers()
    _write_parts(store, df)
    out = {}
    with _session_client.as_current():
        for persist in ("always", "never"):
            res = run(parse_config(_config(store, persist)), client=_session_client)
            out[persist] = res
    return store, df, out


@pytest.mark.parametrize("persist", ["always", "never"])
def test_profiles_equal_pandas_on_the_input_joined_with_the_assignments(runs, persist):
    store, df, results = runs
    res = results[persist]
    manifest = json.loads(store.fs.cat_file(f"{res.results_uri}/manifest.json"))
    assert manifest["memory"]["mode"] == ("persist" if persist == "always" else "stream")
    assert len(manifest["inputs"]) and res.timings["profiles"] >= 0
    prof = _read(store.fs, f"{res.results_uri}/profiles.parquet")
    seg = store.read_folder(res.results_uri, "assignments")
    joined = df.merge(seg[["customer_id", "segment"]], on="customer_id", validate="1:1")
    assert len(joined) == len(df)
    g = joined.groupby("segment")[FEATURES]
    means, stds, sizes = g.mean(), g.std(ddof=1), g.size()
    for _, row in prof.iterrows():
        s, f = int(row["segment"]), row["feature"]
        assert row["size"] == sizes[s]
        assert row["share"] == sizes[s] / len(df)
        np.testing.assert_allclose(row["mean"], means.loc[s, f], rtol=1e-9)
        np.testing.assert_allclose(row["std"], stds.loc[s, f], rtol=1e-9)
        values = joined.loc[joined.segment == s, f].to_numpy()
        # the blocks hold standardised values: original units come back to a few ulp
        np.testing.assert_allclose(
            row[["min", "max"]].to_numpy(dtype=float), [values.min(), values.max()], rtol=1e-12
        )
        exact = np.quantile(values, QUANTILES)
        got = row[["q05", "q25", "q50", "q75", "q95"]].to_numpy(dtype=float)
        assert row["quantile_error"] == pytest.approx((df[f].max() - df[f].min()) / 256)
        assert (np.abs(got - exact) <= row["quantile_error"] * (1 + 1e-9)).all()
        overall = df[f]
        np.testing.assert_allclose(row["overall_mean"], overall.mean(), rtol=1e-9)
        np.testing.assert_allclose(
            row["z"], (means.loc[s, f] - overall.mean()) / overall.std(), rtol=1e-9
        )
    # the centroids in original units: the model's centres unscaled
    cents = store.read_folder(res.results_uri, "model/centroids.parquet")
    assert sorted(prof.segment.unique()) == sorted(sizes.index) == [0, 1, 2]
    assert set(prof.columns) >= {"centroid", "rank", "overall_std"}
    assert len(cents) == 3


def test_persisted_and_streamed_profiles_are_identical_and_files_committed(runs):
    store, _, results = runs
    a, b = (results[p] for p in ("always", "never"))
    pa_ = _read(store.fs, f"{a.results_uri}/profiles.parquet")
    pb_ = _read(store.fs, f"{b.results_uri}/profiles.parquet")
    pd.testing.assert_frame_equal(pa_, pb_, check_exact=True)
    for res in (a, b):
        files = {f["path"] for f in res.files}
        assert {"profiles.parquet", "profiles.md", "profiles.png"} <= files
        assert store.fs.exists(f"{res.run_uri}/_SUCCESS")
        png = store.fs.cat_file(f"{res.results_uri}/profiles.png")
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        md = store.fs.cat_file(f"{res.results_uri}/profiles.md").decode()
        assert md == res.profiles and "| segment | size | share |" in md


def test_markdown_names_the_most_distinctive_feature_with_its_means(runs):
    store, _, results = runs
    res = results["always"]
    prof = _read(store.fs, f"{res.results_uri}/profiles.parquet")
    md = res.profiles
    for s, rows in prof.groupby("segment"):
        top = rows.loc[rows["z"].abs().idxmax()]
        assert top["rank"] == 1
        line = next(x for x in md.splitlines() if x.startswith(f"| {s} | {int(top['size']):,} |"))
        assert f"{top['feature']} " in line.split("|")[4].split(";")[0]
        assert f"({top['z']:+.2f})" in line
    # one means row per segment plus the overall row
    assert md.count("| overall |") == 1


def test_show_prints_the_profiles_and_json_only_with_the_flag(runs, capsys):
    _, _, results = runs
    run_uri = results["always"].run_uri
    assert _show(run_uri) == 0
    shown = capsys.readouterr().out
    assert "## Segment profiles" in shown and "| overall |" in shown
    assert results["always"].profiles.strip() in shown
    assert _show(run_uri, "--json") == 0
    assert json.loads(capsys.readouterr().out)["k"] == 3


def _show(*args: str) -> int:
    """``kmeans-dask show ARGS`` in this process (the CLI's logging setup undone after)."""
    log = logging.getLogger("kmeans_dask")
    saved = log.handlers[:], log.level, log.propagate
    try:
        return main(["show", *args])
    finally:
        log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]


def test_prefect_summary_artifact_includes_the_profiles(runs):
    from flows.segmentation import _summary_markdown

    res = runs[2]["always"]
    text = _summary_markdown(res, "config.yaml")
    assert text.endswith(res.profiles) and f"`{res.run_id}`" in text


def test_float32_blocks_give_float32_accurate_profiles(rng):
    """float32 data is read as float32 and standardised in float32: inverting with the
    parameters as applied recovers the float32 values to float32's relative precision."""
    from kmeans_dask.engine.source import Affine

    X, labels = _data(rng)
    X32 = X.astype(np.float32)
    mean, scale = X32.astype(np.float64).mean(axis=0), X32.astype(np.float64).std(axis=0)
    Xs = Affine(mean, scale).apply(X32.copy())
    applied = Binning(
        scale.astype(np.float32).astype(np.float64),
        mean.astype(np.float32).astype(np.float64),
        X32.min(axis=0).astype(np.float64),
        X32.max(axis=0).astype(np.float64),
        64,
    )
    st = finalize_profile(profile_partial(Xs, labels, 4, applied), applied)
    ref = X32.astype(np.float64)
    for k in range(4):
        rows = ref[labels == k]
        np.testing.assert_allclose(st.mean[k], rows.mean(axis=0), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(st.std[k], rows.std(axis=0, ddof=1), rtol=1e-5)


def _block_partial(block, n_segments: int, binning: Binning):
    labels = (np.arange(len(block.X)) % n_segments).astype(np.int64)
    return "records", profile_partial(block.X, labels, n_segments, binning)


def test_tree_reduction_on_the_workers_equals_the_sequential_merge(client, rng):
    """19 blocks: two levels of the fan-in 8 tree (19 -> 3 -> 1), merged on the workers."""
    from kmeans_dask.engine.blocks import BlockSet
    from kmeans_dask.engine.profile import merge_partials, reduce_partials

    X = rng.normal(size=(19 * 40, 3))
    parts = np.split(X, 19)
    bs = BlockSet.from_arrays(parts, None, np.float64, 3, sizes=[40] * 19, client=client)
    binning = Binning.identity(X.min(axis=0), X.max(axis=0), 16)
    handles = bs.map_keep(_block_partial, n_segments=2, binning=binning)
    tree = reduce_partials(bs, handles, index=1)
    sequential = merge_partials([p for _, p in bs.gather(handles)])
    np.testing.assert_array_equal(tree.count, sequential.count)
    np.testing.assert_array_equal(tree.hist, sequential.hist)
    np.testing.assert_allclose(tree.mean, sequential.mean, rtol=1e-13)
    np.testing.assert_allclose(tree.m2, sequential.m2, rtol=1e-12)
    bs.release(handles)
    bs.release()
