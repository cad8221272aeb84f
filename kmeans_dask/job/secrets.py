"""Credentials for a run that must not travel as orchestrator parameters.

An orchestrator stores a run's parameters in its database (Prefect does, for every flow run),
so credentials given on the command line (``--set input.storage_options.secret=...``) or read
from a secret store must reach the config another way. This module holds them in a
context variable, for the duration of a ``with provided(...)`` block in the current thread
(and the tasks it runs in the same context); :func:`~kmeans_dask.job.config.load_config`
applies them after the ordinary overrides. Nothing here is ever logged or written.

A credential override is one whose last key is a credential name of
:data:`kmeans_dask.io.fs.SECRET_KEYS` (``key``, ``secret``, ``token``, ``password``,
``aws_secret_access_key``, ...), or whose value is a mapping holding one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from ..exceptions import ConfigError
from ..io.fs import SECRET_KEYS

__all__ = [
    "SECTIONS",
    "apply_secrets",
    "from_document",
    "is_secret_override",
    "masked_repr",
    "provided",
    "secret_overrides",
    "split_overrides",
    "yaml_problem",
]

#: where storage options live in a config: the sections a secret document may fill
SECTIONS = ("input", "output", "knn.query")

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_PROVIDED: ContextVar[Mapping[str, Any]] = ContextVar("kmeans_dask_secrets", default=_EMPTY)


def _holds_secret(value: Any) -> bool:
    """A mapping (or list) with a credential key anywhere inside."""
    if isinstance(value, Mapping):
        return any(str(k).lower() in SECRET_KEYS or _holds_secret(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_secret(v) for v in value)
    return False


def masked_repr(path: Sequence[Any], value: Any) -> str:
    """The ``repr`` of a config value for an error message, with credentials masked:
    ``'***'`` for a value at or under a credential key, a mapping with its credentials
    redacted, and only the type of a non-mapping value given for ``storage_options``."""
    parts = [str(p).lower() for p in path]
    if any(p in SECRET_KEYS for p in parts):
        return "'***'"
    if _holds_secret(value):
        return repr(_redacted(value))
    if parts and parts[-1] == "storage_options" and not isinstance(value, Mapping):
        return f"a {type(value).__name__} (value not shown)"
    return repr(value)


def _redacted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: "***" if str(k).lower() in SECRET_KEYS else _redacted(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def is_secret_override(key: str, value: Any) -> bool:
    """True when the override ``key=value`` carries a credential: the last segment of
    ``key`` is a credential name, or ``value`` is a mapping that holds one."""
    last = str(key).strip().rsplit(".", 1)[-1].lower()
    return last in SECRET_KEYS or _holds_secret(value)


def split_overrides(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(plain, secret)`` overrides: the credentials apart from everything else."""
    plain: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for key, value in overrides.items():
        (secret if is_secret_override(key, value) else plain)[key] = value
    return plain, secret


@contextmanager
def provided(overrides: Mapping[str, Any] | None) -> Iterator[None]:
    """Make credential overrides (``{"input.storage_options.secret": "..."}``) visible to
    :func:`~kmeans_dask.job.config.load_config` inside the block (nested blocks add to the
    outer ones)."""
    merged = {**_PROVIDED.get(), **dict(overrides or {})}
    token = _PROVIDED.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _PROVIDED.reset(token)


def secret_overrides() -> dict[str, Any]:
    """The credential overrides of the enclosing :func:`provided` blocks (empty outside)."""
    return dict(_PROVIDED.get())


def apply_secrets(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a config mapping with the credential overrides of the enclosing
    :func:`provided` blocks applied (``a.b.c`` key paths). An override for a section the
    config does not have (``knn.query`` without a query) is left out rather than creating
    an incomplete section."""
    out = _copy(data)
    for key, value in secret_overrides().items():
        parts = [p for p in str(key).split(".") if p]
        section = parts[: parts.index("storage_options")] if "storage_options" in parts else []
        node: Any = out
        for i, p in enumerate(parts[:-1]):
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {'.'.join(parts[:i])} is not a section")
            if node.get(p) is None:
                if i < len(section):  # the section itself is missing: skip this location
                    break
                node[p] = {}
            node = node[p]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {'.'.join(parts[:-1])} is not a section")
            node[parts[-1]] = value
    return out


def _copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_copy(v) for v in data]
    return data


def from_document(doc: Any, source: str = "secret") -> dict[str, Any]:
    """Credential overrides from a secret store's document (a mapping, or its JSON text)::

        {"input": {"key": "...", "secret": "..."}, "output": {...}, "knn.query": {...}}

    gives ``{"input.storage_options.key": "...", ...}``. Each section (one of
    :data:`SECTIONS`) holds that location's ``storage_options``. The error for a malformed
    document names the section but never a value.
    """
    if isinstance(doc, str | bytes):
        try:
            doc = json.loads(doc)
        except ValueError:
            raise ConfigError(f"{source}: must hold a JSON object (not valid JSON)") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{source}: must hold a JSON object with sections {list(SECTIONS)}")
    out: dict[str, Any] = {}
    for section, options in doc.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{source}: unknown section {section!r}; allowed: {', '.join(SECTIONS)}"
            )
        if not isinstance(options, Mapping):
            raise ConfigError(f"{source}: section {section!r} must map storage options to values")
        for name, value in options.items():
            out[f"{section}.storage_options.{name}"] = value
    return out


def yaml_problem(exc: Exception) -> str:
    """What is wrong with a YAML text and where (line, column), without the text itself:
    PyYAML's message quotes the offending line, which may hold a credential."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem or type(exc).__name__}{where}"
