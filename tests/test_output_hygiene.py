"""The output never lands in the data: refused at config validation, before anything runs."""

from __future__ import annotations

import pytest

from kmeans_dask.exceptions import ConfigError
from kmeans_dask.io.fs import location, overlapping
from kmeans_dask.job.config import parse_config


def _config(input_uri: str, output_uri: str, query_uri: str | None = None) -> dict:
    data = {"name": "t", "input": {"uri": input_uri}, "output": {"uri": output_uri}}
    if query_uri is not None:
        data["knn"] = {"enabled": True, "query": {"uri": query_uri}}
    return data


@pytest.mark.parametrize(
    ("input_uri", "output_uri", "query_uri", "key"),
    [
        ("/data/in", "/data/in", None, "input.uri"),  # the same place
        ("/data/in", "/data/in/results", None, "input.uri"),  # under the input
        ("/data/in", "/data", None, "input.uri"),  # above the input
        ("/data/in/", "/data/./in", None, "input.uri"),  # spelled differently
        ("s3://b/in", "s3://b/in/out", None, "input.uri"),
        ("s3://b/in", "s3://b", None, "input.uri"),  # the whole bucket
        ("/data/in", "/data/out", "/data/out/q", "knn.query.uri"),  # above the query data
    ],
)
def test_output_overlapping_the_data_is_refused(input_uri, output_uri, query_uri, key):
    with pytest.raises(ConfigError, match=rf"output\.uri .* must be outside {key}"):
        parse_config(_config(input_uri, output_uri, query_uri))


@pytest.mark.parametrize(
    ("input_uri", "output_uri"),
    [("/data/in", "/data/out"), ("/data/in", "/data/input2"), ("s3://b/in", "s3://b/in2"),
     ("s3://b/in", "s3://c/in"), ("/data/in", "s3://data/in")],
)
def test_separate_locations_are_accepted(input_uri, output_uri):
    assert parse_config(_config(input_uri, output_uri)).output.uri == output_uri


@pytest.mark.parametrize(
    ("key", "data"),
    [
        ("output.uri", _config("/data/in", "/data/out/../x")),
        ("output.uri", _config("s3://b/in", "s3://b/out/../in")),
        ("input.uri", _config("s3://b/a/../in", "s3://b/out")),
    ],
)
def test_dotdot_segments_are_refused(key, data):
    with pytest.raises(ConfigError, match=rf"{key}: must not contain a '\.\.' segment"):
        parse_config(data)


def test_locations_compare_segments_not_strings():
    assert location("s3a://b/x/") == ("s3", ("b", "x"))
    assert overlapping("/a/b", "/a/b/c") and overlapping("/a/b/c", "/a/b")
    assert not overlapping("/a/b", "/a/bc")
    assert not overlapping("s3://a/b", "/a/b")
