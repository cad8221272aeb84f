"""Config errors in one line each: the key path, what is allowed and what was given."""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from .secrets import masked_repr

__all__ = ["format_error", "merge_union_errors"]


def format_error(err: Mapping[str, Any], root: type[BaseModel]) -> str:
    """One line for a pydantic error of a config whose model is ``root``: the key path,
    what is allowed and what was given (credentials masked)."""
    loc = [str(p) for p in err.get("loc", ()) if not str(p).startswith(("function-", "literal["))]
    # drop pydantic's union branch names such as 'int' / 'literal['auto']'
    loc = [p for p in loc if p not in ("int", "str", "float", "bool")]
    path = ".".join(loc) or "(config)"
    kind = err.get("type", "")
    got = masked_repr(loc, err.get("input"))  # credentials never echoed
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], root)
        where = f"under {'.'.join(loc[:-1])}" if len(loc) > 1 else "at the top level"
        listed = f"; allowed {where}: {', '.join(allowed)}" if allowed else ""
        return f"{path}: unknown key (check the spelling{listed})"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"{path}: must be one of {expected}; got {got}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {
            "greater_than_equal": ">=",
            "greater_than": ">",
            "less_than_equal": "<=",
            "less_than": "<",
        }[kind]
        limit = next(iter(ctx.values()), "")
        return f"{path}: must be {bound} {limit}; got {got}"
    if kind.endswith("_parsing") or kind.endswith("_type"):
        want = kind.split("_")[0]
        return f"{path}: must be a{'n' if want[0] in 'aeiou' else ''} {want}; got {got}"
    if kind == "value_error":
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        if msg.startswith("must "):  # a field validator's message about the key itself
            return f"{path}: {msg}"
        return f"{path}.{msg}" if path != "(config)" and not msg.startswith(path) else msg
    if kind == "string_pattern_mismatch":
        return f"{path}: must match {ctx.get('pattern')}; got {got}"
    return f"{path}: {err.get('msg')}; got {got}"


def _allowed_keys(loc: Sequence[str], root: type[BaseModel]) -> list[str]:
    """The keys of the config section at ``loc`` (empty when it is not a section)."""
    model: Any = root
    for name in loc:
        field = model.model_fields.get(name) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        options = [field.annotation, *typing.get_args(field.annotation)]
        model = next((t for t in options if isinstance(t, type) and issubclass(t, BaseModel)), None)
    return list(model.model_fields) if model is not None else []


def merge_union_errors(lines: list[str]) -> list[str]:
    """A union (``k: int | 'auto'``) reports one error per branch: keep the clearest."""
    out: list[str] = []
    by_path: dict[str, list[str]] = {}
    for line in lines:
        by_path.setdefault(line.split(":", 1)[0], []).append(line)
    for path, group in by_path.items():
        if path == "kmeans.k" and len(group) > 1:
            got = group[0].rsplit("got ", 1)[-1]
            out.append(f"kmeans.k: must be an int >= 1 or 'auto'; got {got}")
        else:
            out.extend(group)
    return out
