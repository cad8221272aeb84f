"""The run config: schema, examples in configs/, error messages, overrides, identity."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kmeans_dask.job.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    config_hash,
    load_config,
    parse_config,
)

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
BASE = {"name": "t", "input": {"uri": "data/"}, "output": {"uri": "out/"}}


def test_there_are_example_configs():
    names = {p.name for p in CONFIGS}
    assert {"demo.yaml", "s3-example.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_example_config_validates(path):
    cfg = load_config(str(path))
    assert isinstance(cfg, RunConfig)
    # the examples spell out every key, so the schema and the examples cannot drift apart
    data = yaml.safe_load(path.read_text())
    assert set(data) == set(RunConfig.model_fields)


def test_defaults():
    cfg = parse_config(BASE)
    assert cfg.kmeans.k == "auto" and cfg.kmeans.select == "silhouette"
    assert cfg.scaling == "standard" and cfg.knn.enabled is False
    assert cfg.cluster.address is None


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"kmeans": {"select": "knee"}},
            "kmeans.select: must be one of silhouette, elbow; got 'knee'",
        ),
        ({"kmeans": {"k": "six"}}, "kmeans.k: must be an int >= 1 or 'auto'; got 'six'"),
        ({"kmeans": {"k": 0}}, "kmeans.k: must be an int >= 1 or 'auto'; got 0"),
        ({"kmeans": {"max_iter": "many"}}, "kmeans.max_iter: must be an int; got 'many'"),
        ({"kmeans": {"tol": -1}}, "kmeans.tol: must be >= 0.0; got -1"),
        ({"kmeans": {"k_min": 5, "k_max": 3}}, "k_min (5) must be <= k_max (3)"),
        (
            {"input": {"uri": "x", "format": "json"}},
            "input.format: must be one of parquet, csv; got 'json'",
        ),
        (
            {"input": {"uri": "x", "colums": ["a"]}},
            "input.colums: unknown key (check the spelling; allowed under input: uri, format, "
            "columns, id_column, storage_options, filters)",
        ),
        (
            {"color": "blue"},
            "color: unknown key (check the spelling; allowed at the top level: name, input, "
            "scaling, kmeans, metrics, knn, output, cluster, continuity)",
        ),
        (
            {"knn": {"query": {"uri": "q", "idcolumn": "id"}}},
            "knn.query.idcolumn: unknown key (check the spelling; allowed under knn.query: uri,",
        ),
        ({"knn": {"enabled": True}}, "knn.query: required when knn.enabled is true"),
        ({"name": "bad name!"}, "name: must match"),
    ],
)
def test_errors_name_the_key_and_the_allowed_values(patch, message):
    data = {**BASE, **patch}
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert message in str(err.value)


def test_missing_required_keys_are_all_reported():
    with pytest.raises(ConfigError) as err:
        parse_config({"name": "x"})
    assert "input: required key is missing" in str(err.value)
    assert "output: required key is missing" in str(err.value)


def test_overrides_parse_yaml_scalars_and_create_sections():
    data = apply_overrides(BASE, ["kmeans.k=6", "knn.enabled=false", "input.columns=[a, b]"])
    cfg = parse_config(data)
    assert cfg.kmeans.k == 6 and cfg.knn.enabled is False and cfg.input.columns == ["a", "b"]
    assert BASE["input"] == {"uri": "data/"}  # the original is not modified
    with pytest.raises(ConfigError, match=r"expected key\.path=value"):
        apply_overrides(BASE, ["kmeans.k"])


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(str(bad))


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"name": {"secret": "S3CR3T"}}, "name: must be a string; got {'secret': '***'}"),
        (
            {"input": {"uri": "x", "storage_options": "secret=S3CR3T"}},
            "input.storage_options: must be a dict; got a str (value not shown)",
        ),
        (
            {"input": {"uri": "x", "columns": [{"password": "S3CR3T"}]}},
            "input.columns.0: must be a string; got {'password': '***'}",
        ),
    ],
)
def test_errors_never_echo_a_credential(patch, message):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, **patch})
    assert message in str(err.value) and "S3CR3T" not in str(err.value)


def test_yaml_errors_never_quote_the_text(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\noutput:\n  storage_options: {secret: [S3CR3T}\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML: .* at line 3, column") as err:
        load_config(str(bad))
    assert "S3CR3T" not in str(err.value)
    with pytest.raises(ConfigError, match=r"--set input.storage_options.secret: value is not") as e:
        apply_overrides(BASE, ["input.storage_options.secret=[S3CR3T"])
    assert "S3CR3T" not in str(e.value)


def test_identity_ignores_output_cluster_and_credentials():
    a = parse_config(BASE)
    b = parse_config(
        {
            **BASE,
            "output": {"uri": "elsewhere/"},
            "cluster": {"n_workers": 7},
            "input": {"uri": "data/", "storage_options": {"key": "K", "secret": "S"}},
        }
    )
    assert config_hash(a) == config_hash(b)
    c = parse_config(apply_overrides(BASE, ["kmeans.random_state=1"]))
    assert config_hash(c) != config_hash(a)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"kmeans": {"k": "auto", "k_min": 1}},
            "kmeans.k_min: must be >= 2 with select 'silhouette'",
        ),
        (
            {"knn": {"enabled": True, "query": {"uri": "q"}, "task": "regress"}},
            "knn.target: task 'regress' needs a numeric column, not 'segment'",
        ),
        ({"kmeans": {"oversampling_factor": 0}}, "kmeans.oversampling_factor: must be > 0.0"),
        ({"kmeans": {"init_rounds": 0}}, "kmeans.init_rounds: must be >= 1"),
        ({"kmeans": {"n_init": 0}}, "kmeans.n_init: must be >= 1"),
        ({"kmeans": {"random_state": -1}}, "kmeans.random_state: must be >= 0"),
        ({"kmeans": {"dtype": "float16"}}, "kmeans.dtype: must be one of float32, float64"),
        ({"kmeans": {"init": "kmeans++"}}, "kmeans.init: must be one of k-means||, k-means++"),
        ({"metrics": {"silhouette_sample_size": 1}}, "silhouette_sample_size: must be >= 2"),
        (
            {"knn": {"enabled": True, "query": {"uri": "q"}, "n_neighbors": 0}},
            "knn.n_neighbors: must be >= 1",
        ),
        (
            {"knn": {"enabled": True, "query": {"uri": "q"}, "weights": "inverse"}},
            "knn.weights: must be one of uniform, distance; got 'inverse'",
        ),
        (
            {"knn": {"enabled": True, "query": {"uri": "q"}, "algorithm": "kd_tree"}},
            "knn.algorithm: must be one of auto, brute, pruned; got 'kd_tree'",
        ),
        ({"cluster": {"n_workers": 0}}, "cluster.n_workers: must be >= 1"),
        ({"cluster": {"threads_per_worker": 0}}, "cluster.threads_per_worker: must be >= 1"),
        ({"scaling": "minmax"}, "scaling: must be one of standard, none; got 'minmax'"),
    ],
)
def test_every_validator_names_its_key(patch, message):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, **patch})
    assert message in str(err.value)
