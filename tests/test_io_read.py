"""Partitioned readers, local and over the S3 protocol (moto server), against pandas."""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pandas as pd
import pytest
from conftest import Store

from kmeans_dask.exceptions import DatasetError, StorageError
from kmeans_dask.io import (
    fingerprint,
    open_dataset,
    read_dataset,
    read_table,
    write_hive_parquet,
)
from kmeans_dask.io.errors import is_transient
from kmeans_dask.io.read import check_dataset


def _frame(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"c{seed}-{i}" for i in range(n)],
            "age": rng.integers(18, 90, n),
            "spend": rng.gamma(2.0, 50.0, n),
            "visits": rng.poisson(3.0, n).astype("float64"),
            "city": rng.choice(["x", "y"], n),
        }
    )


@pytest.fixture
def hive_parquet(store):
    """4 files in region=/year= folders, plus files readers must ignore."""
    frames = {}
    for i, (region, year) in enumerate([("eu", 2025), ("eu", 2026), ("us", 2025), ("us", 2026)]):
        df = _frame(i, 50 + 10 * i)
        store.write_parquet(f"data/region={region}/year={year}/part-0.parquet", df)
        frames[(region, year)] = df
    store.write_bytes("data/_SUCCESS", b"")
    store.write_bytes("data/.hidden/x.parquet", b"not parquet")
    return store, frames


def _expected(frames, keep=lambda r, y: True):
    parts = []
    for (region, year), df in sorted(frames.items()):
        if keep(region, year):
            parts.append(df.assign(region=region, year=year))
    return pd.concat(parts, ignore_index=True)


def test_parquet_round_trip_with_columns_and_id(hive_parquet, backend):
    store, frames = hive_parquet
    ds = open_dataset(
        store.uri("data"),
        "parquet",
        columns=["age", "spend"],
        id_column="customer_id",
        storage_options=store.options,
    )
    df = ds.frame
    assert list(df.columns) == ["customer_id", "age", "spend"]
    assert df.npartitions == 4  # one per file
    assert df.known_divisions  # global row numbers, from the footers
    got = df.compute()
    exp = _expected(frames)[["customer_id", "age", "spend"]]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), exp, check_dtype=False)
    np.testing.assert_array_equal(got.index, np.arange(len(exp)))
    assert ds.info.n_rows == len(exp)
    assert ds.info.partition_columns == []


def test_hive_columns_and_partition_filter_prunes_files(hive_parquet):
    store, frames = hive_parquet
    ds = open_dataset(
        store.uri("data"),
        "parquet",
        id_column="customer_id",
        storage_options=store.options,
        filters=[("year", "=", 2026), ("region", "in", ["eu"])],
    )
    assert ds.frame.npartitions == 1
    assert len(ds.info.files) == 1 and "region=eu/year=2026" in ds.info.files[0]
    got = ds.frame.compute()
    exp = _expected(frames, lambda r, y: r == "eu" and y == 2026)
    # all numeric columns are features by default; the partition columns come along
    assert list(got.columns) == ["customer_id", "age", "spend", "visits", "region", "year"]
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), exp[list(got.columns)], check_dtype=False
    )


def test_row_filter_on_a_data_column(hive_parquet):
    store, frames = hive_parquet
    df = read_dataset(
        store.uri("data"),
        columns=["age", "spend"],
        storage_options=store.options,
        filters=[("spend", ">", 100.0)],
    ).compute()
    exp = _expected(frames)
    assert len(df) == int((exp.spend > 100).sum())
    assert (df.spend > 100).all()


def test_csv_round_trip(store, backend):
    frames = [_frame(i, 40) for i in range(3)]
    for i, f in enumerate(frames):
        store.write_csv(f"csv/part-{i}.csv", f)
    df = read_dataset(
        store.uri("csv"),
        "csv",
        columns=["age", "spend", "visits"],
        id_column="customer_id",
        storage_options=store.options,
    )
    assert df.npartitions == 3
    got = df.compute().reset_index(drop=True)
    exp = pd.concat(frames, ignore_index=True)[["customer_id", "age", "spend", "visits"]]
    pd.testing.assert_frame_equal(got, exp, check_dtype=False, check_exact=False, rtol=1e-12)


def test_large_parquet_file_splits_by_row_groups(store, monkeypatch):
    import kmeans_dask.io.read as read_mod

    df = _frame(7, 1000)
    store.write_parquet("big/one.parquet", df, row_group_size=100)
    monkeypatch.setattr(read_mod, "_SPLIT_BYTES", 1000)  # make the small file "large"
    ddf = read_dataset(store.uri("big"), columns=["age"], storage_options=store.options)
    assert ddf.npartitions > 1 and ddf.known_divisions
    np.testing.assert_array_equal(ddf.compute().age.to_numpy(), df.age.to_numpy())


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"columns": ["age", "income"]}, r"column\(s\) \['income'\] not found in .*data"),
        ({"columns": ["age", "city"]}, r"feature column 'city' in .* not numeric"),
        ({"id_column": "cust"}, r"id column 'cust' not found in .*data"),
        ({"format": "json"}, r"format must be one of parquet, csv; got 'json'"),
        ({"filters": [("year", "~", 1)]}, r"operator '~' on column 'year'"),
        ({"filters": [("year", ">", 3000)]}, r"select no partition"),
    ],
)
def test_bad_arguments_name_the_column(hive_parquet, kwargs, match):
    store, _ = hive_parquet
    with pytest.raises(DatasetError, match=match):
        read_dataset(store.uri("data"), storage_options=store.options, **kwargs)


def test_no_files(store):
    store.write_bytes("empty/readme.txt", b"nothing here")
    with pytest.raises(DatasetError, match=r"no parquet files .* found at .*empty"):
        read_dataset(store.uri("empty"), storage_options=store.options)
    with pytest.raises(DatasetError, match=r"does-not-exist does not exist \(no such file"):
        read_dataset(store.uri("does-not-exist"), "csv", storage_options=store.options)


def test_schema_differs_between_files(store):
    store.write_parquet("mixed/a.parquet", _frame(1, 10))
    store.write_parquet("mixed/b.parquet", _frame(2, 10).drop(columns="visits"))
    with pytest.raises(
        DatasetError, match=r"schema of .*b.parquet differs .*missing columns \['visits'\]"
    ):
        read_dataset(store.uri("mixed"), storage_options=store.options)
    store.write_parquet("typed/a.parquet", _frame(1, 10))
    store.write_parquet("typed/b.parquet", _frame(2, 10).astype({"spend": str}))
    with pytest.raises(
        DatasetError, match=r"column 'spend' is (large_)?string in .*b.parquet but double"
    ):
        read_dataset(store.uri("typed"), storage_options=store.options)


def test_corrupt_file_is_named(store):
    store.write_parquet("bad/a.parquet", _frame(1, 10))
    store.write_bytes("bad/b.parquet", b"PAR1 this is not a parquet file")
    with pytest.raises(DatasetError, match=r"cannot read Parquet file .*bad/b.parquet"):
        read_dataset(store.uri("bad"), storage_options=store.options)


def test_non_numeric_value_in_a_csv_feature_is_named(store, backend):
    good = _frame(1, 2000)
    bad = _frame(2, 2000)
    bad["spend"] = bad["spend"].astype(object)
    bad.loc[1500, "spend"] = "unknown"  # beyond the rows used to check the header
    store.write_csv("csv/a.csv", good)
    store.write_csv("csv/b.csv", bad)
    df = read_dataset(store.uri("csv"), "csv", columns=["spend"], storage_options=store.options)
    with pytest.raises(
        DatasetError, match=r"column 'spend' in .*b.csv has non-numeric values \(e.g. 'unknown'\)"
    ):
        df.compute()


def test_credentials_never_appear_in_errors(s3):
    opts = {**s3, "key": "AKIA-VISIBLE-KEY", "secret": "very-secret-value"}
    with pytest.raises(DatasetError, match="bucket 'no-such-bucket' does not exist") as err:
        read_dataset("s3://no-such-bucket/data", storage_options=opts)
    assert "very-secret-value" not in str(err.value)
    assert "AKIA-VISIBLE-KEY" not in str(err.value)


@contextlib.contextmanager
def refusing_credentials(endpoint: str):
    """The S3 server checks credentials inside the block (moto's IAM mode: the test's
    made-up keys are unknown to it, so every request is refused)."""
    import requests

    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10)
    try:
        yield
    finally:
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)


def test_refused_credentials_are_a_storage_error_naming_the_bucket(s3, s3_endpoint):
    store = Store("s3://test-bucket/auth", s3)
    store.write_parquet("data/a.parquet", _frame(1, 10))
    calls = {
        "read_dataset": lambda: read_dataset(store.uri("data"), storage_options=s3),
        "fingerprint": lambda: fingerprint(store.uri("data"), storage_options=s3),
        "read_table": lambda: read_table(store.uri("data/a.parquet"), storage_options=s3),
    }
    with refusing_credentials(s3_endpoint):
        for name, call in calls.items():
            with pytest.raises(StorageError) as err:
                call()
            assert not isinstance(err.value, DatasetError), name
            assert re.match(
                r"listing s3://test-bucket/auth/data(/a.parquet)?: access denied \(check the "
                r"credentials for bucket 'test-bucket'; the store said ",
                str(err.value),
            ), str(err.value)
            assert not is_transient(err.value)


def test_a_refused_footer_read_is_a_storage_error_not_a_corrupt_file(s3, s3_endpoint):
    from kmeans_dask.io.schema import parquet_meta

    store = Store("s3://test-bucket/auth2", s3)
    path = store.write_parquet("data/a.parquet", _frame(1, 10))
    with refusing_credentials(s3_endpoint):
        with pytest.raises(
            StorageError,
            match=r"reading s3://test-bucket/auth2/data/a.parquet: access denied \(check the "
            r"credentials for bucket 'test-bucket'",
        ):
            parquet_meta(store.fs, path.removeprefix("s3://"))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0, np.nan, np.nan, 4.0], r"has 2 NaN( or null)? value\(s\)"),
        ([1.0, np.inf, 3.0, 4.0], r"has 1 \+inf value\(s\)"),
        ([-np.inf, 2.0, -np.inf, 4.0], r"has 2 -inf value\(s\)"),
        (
            [np.nan, 2.0, np.inf, -np.inf],
            r"has 1 NaN( or null)? value\(s\), 1 \+inf value\(s\), 1 -inf",
        ),
    ],
    ids=["nan", "+inf", "-inf", "all"],
)
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_non_finite_values_name_the_column_and_the_file(store, values, message, fmt):
    good = pd.DataFrame({"age": [1.0, 2.0, 3.0, 4.0], "spend": [1.0, 2.0, 3.0, 4.0]})
    bad = good.assign(spend=values)
    write = store.write_csv if fmt == "csv" else store.write_parquet
    write(f"nf/a.{fmt}", good)
    write(f"nf/b.{fmt}", bad)
    message = rf"column 'spend' of \S*nf/b\.{fmt} {message}"
    ds = open_dataset(store.uri("nf"), fmt, storage_options=store.options)
    with pytest.raises(DatasetError, match=message):
        ds.to_dask_array().compute()  # the array path (Parquet) or the frame path (CSV)
    with pytest.raises(DatasetError, match=message):
        ds.frame.compute()  # the frame path


def test_check_dataset_validates_footers_without_dask(store):
    store.write_parquet("chk/a.parquet", _frame(1, 30))
    store.write_parquet("chk/b.parquet", _frame(2, 20))
    info = check_dataset(store.uri("chk"), columns=["age"], storage_options=store.options)
    assert info.n_rows == 50 and info.features == ["age"]
    assert info.fingerprints == fingerprint(store.uri("chk"), storage_options=store.options)
    with pytest.raises(DatasetError, match=r"column\(s\) \['agee'\] not found in .*chk"):
        check_dataset(store.uri("chk"), columns=["agee"], storage_options=store.options)


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_a_listing_and_changes_with_a_file(hive_parquet):
    store, _frames = hive_parquet
    a = fingerprint(store.uri("data"), storage_options=store.options)
    assert len(a) == 4 and all(r["size"] > 0 for r in a)
    assert all(("etag" in r) or ("mtime" in r) for r in a)
    assert fingerprint(store.uri("data"), storage_options=store.options) == a
    store.write_parquet("data/region=us/year=2026/part-0.parquet", _frame(99, 77))
    b = fingerprint(store.uri("data"), storage_options=store.options)
    changed = [x for x, y in zip(a, b, strict=True) if x != y]
    assert len(changed) == 1 and "region=us/year=2026" in changed[0]["path"]


def test_dataset_to_dask_array_has_known_chunks(hive_parquet):
    store, frames = hive_parquet
    ds = open_dataset(store.uri("data"), columns=["age", "spend"], storage_options=store.options)
    X = ds.to_dask_array()
    assert X.chunks[0] == (50, 60, 70, 80)  # from the footers, no pass over the data
    exp = _expected(frames)[["age", "spend"]].to_numpy(dtype=float)
    np.testing.assert_allclose(X.compute(), exp)


def test_hive_writer_round_trips_through_the_readers(store):
    df = _frame(11, 120)
    write_hive_parquet(
        df, store.uri("hive"), "city", parts_per_value=2, storage_options=store.options
    )
    store.fs.invalidate_cache()
    files = sorted(p.rsplit("hive/", 1)[1] for p in store.fs.find(store.uri("hive")))
    assert files == [f"city={c}/part-{i:03d}.parquet" for c in ("x", "y") for i in range(2)]
    got = read_dataset(store.uri("hive"), id_column="customer_id", storage_options=store.options)
    expected = df.sort_values("city", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(
        got.compute().reset_index(drop=True), expected, check_dtype=False, check_like=True
    )
    # the small eager reader: every file under a folder, in path order, without Dask
    table = read_table(store.uri("hive"), ["customer_id", "age"], store.options)
    pd.testing.assert_frame_equal(table, expected[["customer_id", "age"]], check_dtype=False)


def test_the_array_reader_matches_pandas_for_row_groups_types_and_nulls(tmp_path):
    """Arrow's columns go straight into a row-major array (tile by tile): several row
    groups, an int column, a float32 column and any dtype give pandas' values exactly."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kmeans_dask.io.units import UnitReader

    rng = np.random.default_rng(3)
    n = 5_003
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.integers(-1000, 1000, n),
            "c": rng.normal(size=n).astype(np.float32),
        }
    )
    for i in range(2):
        pq.write_table(pa.Table.from_pandas(frame), tmp_path / f"p{i}.parquet", row_group_size=777)
    ds = open_dataset(str(tmp_path), "parquet")
    for dtype in (np.float64, np.float32):
        got = ds.to_dask_array(dtype=dtype).compute()
        want = pd.concat([frame, frame]).to_numpy(dtype=dtype)
        np.testing.assert_array_equal(got, want)
        reader, units = ds.read_units(np.dtype(dtype), max_unit_bytes=None)
        assert isinstance(reader, UnitReader)
        X, counts = reader(units)
        assert X.flags.c_contiguous and counts == [n, n]
        np.testing.assert_array_equal(X, want)


def test_float64_beyond_float32_is_refused_when_read_as_float32(store):
    """1e39 is finite in the file but inf as float32: the reader says which column and why."""
    store.write_parquet("big/a.parquet", pd.DataFrame({"age": [1.0, 2.0], "spend": [1e39, 1.0]}))
    ds = open_dataset(store.uri("big"), "parquet", storage_options=store.options)
    assert np.isfinite(ds.to_dask_array(dtype=np.float64).compute()).all()
    message = r"column 'spend' of \S*big/a\.parquet has 1 \+inf.*float32"
    with pytest.raises(DatasetError, match=message):
        ds.to_dask_array(dtype=np.float32).compute()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_row_group_read_a_few_columns_at_a_time_gives_the_same_block(tmp_path, dtype):
    """Row groups read in pieces of a few columns (the reader's memory beside the block):
    the same array as pandas for pieces of 1, 3 and all columns, mixed types, nulls and a
    standardising transform; a NaN in a later piece is named with its column and file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import kmeans_dask.io.parts as parts
    from kmeans_dask.io.fs import filesystem

    rng = np.random.default_rng(5)
    n, d = 4_001, 10
    frame = pd.DataFrame({f"x{j}": rng.normal(size=n) * (j + 1) + j for j in range(d)})
    frame["x3"] = rng.integers(-50, 50, n)
    frame["x7"] = frame["x7"].astype(np.float32)
    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pandas(frame), path, row_group_size=1_000)
    fs, _ = filesystem(str(tmp_path))
    cols = list(frame.columns)
    want = frame.to_numpy(dtype=dtype)
    mean, scale = want.mean(axis=0), want.std(axis=0)

    def standardise(X):
        np.subtract(X, mean.astype(X.dtype), out=X)
        np.divide(X, scale.astype(X.dtype), out=X)

    scaled = want.copy()
    standardise(scaled)
    part = parts.Part(str(path), {})
    for piece_bytes in (8 * 1000, 3 * 8 * 1000, 10**9):  # 1, 3 (3+3+3+1) and 10 columns
        got = parts.read_array_part(part, fs=fs, columns=cols, dtype=dtype, piece_bytes=piece_bytes)
        assert got.flags.c_contiguous and got.dtype == dtype
        np.testing.assert_array_equal(got, want)
        got = parts.read_array_part(
            part, fs=fs, columns=cols, dtype=dtype, transform=standardise, piece_bytes=piece_bytes
        )
        np.testing.assert_array_equal(got, scaled)
    frame.loc[2_500, "x8"] = np.nan  # the third row group, the third piece of three columns
    pq.write_table(pa.Table.from_pandas(frame), path, row_group_size=1_000)
    with pytest.raises(DatasetError, match=r"column 'x8' of \S*p\.parquet has 1 NaN"):
        parts.read_array_part(part, fs=fs, columns=cols, dtype=dtype, piece_bytes=3 * 8 * 1000)


def test_parquet_outputs_dictionary_encode_codes_only(tmp_path):
    """Segment IDs (int32 codes) are dictionary-encoded; unique ids and distances are not
    (the dictionary encoder's hash table on a unique column costs memory for no gain), and
    the values read back unchanged."""
    import pyarrow.parquet as pq

    from kmeans_dask.io.fs import filesystem, put_parquet

    n = 50_000
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(n) * 7,
            "segment": (np.arange(n) % 5).astype(np.int32),
            "distance_to_centroid": np.random.default_rng(0).random(n),
        }
    )
    fs, _ = filesystem(str(tmp_path))
    put_parquet(fs, str(tmp_path / "a.parquet"), frame)
    meta = pq.ParquetFile(tmp_path / "a.parquet").metadata.row_group(0)
    enc = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(3)}
    assert "RLE_DICTIONARY" in enc["segment"]
    assert "RLE_DICTIONARY" not in enc["customer_id"]
    assert "RLE_DICTIONARY" not in enc["distance_to_centroid"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), frame)
