"""The run configuration: a pydantic model that is also the schema of ``configs/*.yaml``.

A run is fully described by one YAML file (plus ``--set key.path=value`` overrides). Unknown
keys are errors; every error names the key path, what is allowed and what was given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..exceptions import ConfigError
from ..io.fs import location, overlapping
from .config_errors import format_error, merge_union_errors
from .continuity_config import ContinuitySpec
from .secrets import apply_secrets, yaml_problem

__all__ = [
    "ClusterSpec",
    "ConfigError",
    "ContinuitySpec",
    "InputSpec",
    "KMeansSpec",
    "KNNSpec",
    "MetricsSpec",
    "OutputSpec",
    "RunConfig",
    "apply_overrides",
    "config_hash",
    "identity",
    "load_config",
    "parse_config",
    "parse_overrides",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InputSpec(_Strict):
    """Where a dataset is and which columns to use."""

    uri: str = Field(description="Local path or s3://bucket/prefix (folder or file).")

    @field_validator("uri")
    @classmethod
    def _no_dotdot(cls, uri: str) -> str:
        location(uri)  # ValueError for '..' segments
        return uri
    format: Literal["parquet", "csv"] = "parquet"
    columns: list[str] | None = Field(
        None, description="Feature columns (numeric). Default: every numeric column."
    )
    id_column: str | None = Field(None, description="Row identifier copied to the outputs.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec/s3fs options such as endpoint_url; credentials belong in the "
        "environment (AWS_ACCESS_KEY_ID, ...), never in a config file.",
    )
    filters: list[Any] | None = Field(
        None, description='pyarrow-style filters, e.g. [["year", ">=", 2025]].'
    )


class KMeansSpec(_Strict):
    """The k-means fit; ``k: auto`` sweeps ``k_min..k_max`` and picks K by ``select``."""

    k: int | Literal["auto"] = "auto"
    k_min: int = Field(2, ge=1)
    k_max: int = Field(10, ge=1)
    select: Literal["silhouette", "elbow"] = "silhouette"
    init: Literal["k-means||", "k-means++", "random"] = "k-means||"
    oversampling_factor: float = Field(2.0, gt=0)
    init_rounds: int = Field(5, ge=1)
    max_iter: int = Field(300, ge=1)
    tol: float = Field(1e-4, ge=0)
    n_init: int = Field(1, ge=1)
    random_state: int = Field(0, ge=0)
    dtype: Literal["float32", "float64"] = "float64"
    algorithm: Literal["lloyd", "bounds", "auto", "minibatch"] = Field(
        "lloyd",
        description="'lloyd' (full passes), 'bounds' (the same results, with per-row bounds "
        "kept on the workers to skip distance computations; 4 + 4t bytes a row, t = "
        "min(32, k // 10)), 'auto' ('bounds' from k = 16 in float64 and k = 256 in float32, "
        "when the bounds are at most half a "
        "row's bytes, else 'lloyd') or "
        "'minibatch' (scikit-learn's MiniBatchKMeans rule on a seeded sample, then one full "
        "pass for the labels and the exact inertia).",
    )
    batch_size: int = Field(1024, ge=1, description="Rows per mini-batch ('minibatch').")
    max_no_improvement: int | None = Field(
        10, ge=0, description="Steps without improvement before stopping ('minibatch')."
    )
    reassignment_ratio: float = Field(
        0.01, ge=0, description="Low-weight centre reassignment threshold ('minibatch')."
    )
    refine: bool = Field(
        True, description="Lloyd on the mini-batch sample pool after the steps ('minibatch')."
    )
    persist: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Hold the blocks on the workers ('always'), read them again on every "
        "pass ('never': streaming), or persist when they fit in the memory budget ('auto').",
    )
    memory_fraction: float = Field(
        0.6,
        gt=0,
        le=0.9,
        description="Share of each worker's memory limit the job plans to fill (minus what "
        "the worker already uses); distributed spills at 0.7 and pauses at 0.8.",
    )
    block_bytes: str = Field(
        "256MiB",
        description="Target bytes per block (in the working dtype), e.g. '64MiB'. Blocks are "
        "planned from the data only, so results do not depend on the cluster.",
    )

    @field_validator("block_bytes")
    @classmethod
    def _bytes(cls, value: str) -> str:
        from dask.utils import parse_bytes

        try:
            n = parse_bytes(value)
        except (ValueError, TypeError):
            n = 0
        if n < 1 << 16:
            raise ValueError(
                f"must be a size of at least 64KiB such as '64MiB' or '1GiB'; got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _ranges(self) -> KMeansSpec:
        if isinstance(self.k, int) and self.k < 1:
            raise ValueError(f"k: must be an int >= 1 or 'auto'; got {self.k}")
        if self.k == "auto":
            if self.k_min > self.k_max:
                raise ValueError(
                    f"k_min ({self.k_min}) must be <= k_max ({self.k_max}) when k is 'auto'"
                )
            if self.select == "silhouette" and self.k_min < 2:
                raise ValueError(
                    "k_min: must be >= 2 with select 'silhouette' (a silhouette needs two "
                    f"clusters); got {self.k_min}"
                )
        return self


class MetricsSpec(_Strict):
    """Cluster-quality metrics."""

    silhouette_sample_size: int = Field(20_000, ge=2)


class KNNSpec(_Strict):
    """KNN scoring of new rows against the segmented reference rows."""

    enabled: bool = False
    query: InputSpec | None = None
    n_neighbors: int = Field(15, ge=1)
    weights: Literal["uniform", "distance"] = "uniform"
    task: Literal["classify", "regress"] = "classify"
    algorithm: Literal["auto", "brute", "pruned"] = "auto"  # KNeighborsScorer(algorithm=)
    target: str = Field(
        "segment", description="'segment' (the k-means label) or a column of the input."
    )

    @model_validator(mode="after")
    def _query_needed(self) -> KNNSpec:
        if self.enabled and self.query is None:
            raise ValueError("query: required when knn.enabled is true")
        if self.task == "regress" and self.target == "segment":
            raise ValueError("target: task 'regress' needs a numeric column, not 'segment'")
        return self


class OutputSpec(_Strict):
    """Where results are committed (``{uri}/{run_id}/``)."""

    uri: str

    @field_validator("uri")
    @classmethod
    def _no_dotdot(cls, uri: str) -> str:
        location(uri)  # ValueError for '..' segments
        return uri
    storage_options: dict[str, Any] = Field(default_factory=dict)


class SecuritySpec(_Strict):
    """Mutual TLS to an existing scheduler (``tls://`` address): PEM files on the machine
    that runs the job, the same kind ``dask scheduler/worker --tls-*`` take."""

    ca_file: str = Field(description="CA certificate the scheduler's certificate is signed by.")
    cert: str = Field(description="This client's certificate (signed by a CA the cluster trusts).")
    key: str | None = Field(None, description="Its private key (omit when cert holds both).")

    @field_validator("ca_file", "cert", "key")
    @classmethod
    def _a_file(cls, path: str | None) -> str | None:
        if path is None:
            return None
        import os

        full = os.path.expanduser(path)
        if not os.path.isfile(full):
            raise ValueError(
                f"must be an existing PEM file on the machine that runs the job; no file {path!r}"
            )
        return full


class ClusterSpec(_Strict):
    """The Dask cluster: an existing scheduler, or an embedded LocalCluster."""

    address: str | None = Field(
        None,
        description="tcp://host:8786 or tls://host:8786 of an existing scheduler "
        "(or DASK_SCHEDULER_ADDRESS).",
    )
    security: SecuritySpec | None = Field(
        None, description="Existing tls:// scheduler: {ca_file, cert, key} (PEM files)."
    )
    timeout: float = Field(
        30, gt=0, description="Existing: seconds to wait for the scheduler and a first worker."
    )
    n_workers: int | None = Field(None, ge=1, description="Embedded: worker processes (cores).")
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = Field("auto", description="Embedded: per worker, e.g. '4GiB'.")

    @model_validator(mode="after")
    def _tls_address(self) -> ClusterSpec:
        if self.security is not None and self.address and not self.address.startswith("tls://"):
            raise ValueError(
                f"security: certificates need a tls:// address; cluster.address is {self.address}"
            )
        return self


class RunConfig(_Strict):
    """A whole segmentation run."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    input: InputSpec
    scaling: Literal["standard", "none"] = "standard"
    kmeans: KMeansSpec = Field(default_factory=KMeansSpec)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    knn: KNNSpec = Field(default_factory=KNNSpec)
    output: OutputSpec
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    continuity: ContinuitySpec = Field(default_factory=ContinuitySpec)

    @model_validator(mode="after")
    def _output_apart_from_inputs(self) -> RunConfig:
        # results must never land in (or contain) the data they are computed from
        sources = [("input.uri", self.input.uri)]
        if self.knn.query is not None:
            sources.append(("knn.query.uri", self.knn.query.uri))
        for key, uri in sources:
            if overlapping(self.output.uri, uri):
                raise ValueError(
                    f"output.uri ({self.output.uri}) must be outside {key} ({uri}): it may not "
                    "be the same location, under it or above it"
                )
        return self


def parse_config(data: Mapping[str, Any], source: str = "config") -> RunConfig:
    """Validate a mapping into a :class:`RunConfig` (raises :class:`ConfigError`)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of keys; got {data!r}")
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        seen: list[str] = []
        for e in exc.errors():
            line = format_error(e, RunConfig)
            if line not in seen:
                seen.append(line)
        # a union (k: int | 'auto') reports one error per branch: keep the clearest
        lines = merge_union_errors(seen)
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(lines)) from None


# --------------------------------------------------------------------------- loading


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["kmeans.k=6", "knn.enabled=false"]`` -> ``{"kmeans.k": 6, "knn.enabled": False}``
    (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. kmeans.k=6")
        key, _, raw = item.partition("=")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"--set {key.strip()}: value is not valid YAML ({yaml_problem(exc)})"
            ) from None
    return out


def apply_overrides(data: dict[str, Any], overrides: Sequence[str] | Mapping[str, Any]) -> dict:
    """Apply ``key.path=value`` overrides (values parsed as YAML scalars) to a config mapping."""
    mapping = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
    items = mapping.items()
    out = _deepcopy(data)
    for key, value in items:
        parts = [p for p in str(key).split(".") if p]
        if not parts:
            raise ConfigError(f"--set: empty key in {key!r}")
        node = out
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _deepcopy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deepcopy(v) for v in data]
    return data


def load_config(
    uri: str,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    storage_options: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Read a YAML config (local path or any fsspec URI), apply overrides, validate."""
    from ..io import read_text

    try:
        text = read_text(uri, storage_options)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {uri}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{uri} is not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{uri}: the top level must be a mapping of keys")
    # credentials given apart from the overrides (job.secrets.provided) are applied last
    return parse_config(apply_secrets(apply_overrides(data, overrides)), source=uri)


# --------------------------------------------------------------------------- identity


def identity(config: RunConfig) -> dict[str, Any]:
    """The part of the config that determines the results (hashed into the run id).

    Leaves out where results go (``output``), where the work runs (``cluster``), how the
    blocks are held (``kmeans.persist``, ``kmeans.memory_fraction``: persisted and streamed
    runs give the same results), how segments are named and compared with the previous run
    (``continuity``: the clustering is the same; the IDs depend on the job's history anyway,
    which no config can hash) and every ``storage_options`` (connection details and
    credentials, which must never be hashed into a name or written anywhere).
    """
    data = config.model_dump(mode="json")
    data.pop("output", None)
    data.pop("cluster", None)
    data.pop("continuity", None)
    data["kmeans"].pop("persist", None)
    data["kmeans"].pop("memory_fraction", None)
    data["input"].pop("storage_options", None)
    if data.get("knn", {}).get("query"):
        data["knn"]["query"].pop("storage_options", None)
    return data


def config_hash(config: RunConfig) -> str:
    """SHA-256 of :func:`identity` (canonical JSON)."""
    from ..io import canonical_json

    return hashlib.sha256(canonical_json(identity(config)).encode()).hexdigest()
