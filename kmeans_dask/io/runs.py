"""Reading committed runs: the commit pointer (``_SUCCESS``), LATEST and manifests.

See :mod:`.commit` for the layout and the protocol; everything here only reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..exceptions import StorageError
from .errors import storage_errors
from .fs import filesystem, join, to_uri

__all__ = [
    "ATTEMPT_PREFIX",
    "LATEST",
    "MANIFEST",
    "SUCCESS",
    "committed_folder",
    "committed_uri",
    "latest_run",
    "read_manifest",
    "read_pointer",
    "read_run_file",
    "storage_op",
]

#: the commit pointer of a run, written last: JSON naming the committed attempt
SUCCESS = "_SUCCESS"
#: ``{output}/LATEST`` names the newest committed run id
LATEST = "LATEST"
MANIFEST = "manifest.json"
ATTEMPT_PREFIX = "attempt-"


@contextmanager
def storage_op(what: str, fs: Any, path: str) -> Iterator[None]:
    """Turn a storage failure into a StorageError naming the operation and the URI."""
    with storage_errors(what, to_uri(fs, path)):
        yield


def read_pointer(fs: Any, run_path: str) -> dict[str, Any] | None:
    """The content of a run's ``_SUCCESS`` (None when the run is not committed)."""
    path = join(run_path, SUCCESS)
    with storage_op("reading", fs, path):
        fs.invalidate_cache(run_path)
        try:
            raw = fs.cat_file(path)
        except FileNotFoundError:
            return None
    try:
        pointer = json.loads(raw or b"{}")
    except ValueError:
        pointer = {}
    pointer.setdefault("attempt", "")  # runs committed before attempts existed
    return pointer


def committed_folder(fs: Any, path: str) -> str | None:
    """The folder holding a committed run's files: ``path`` is a run folder (its pointer is
    followed) or a committed attempt folder itself. None when neither is committed."""
    pointer = read_pointer(fs, path)
    if pointer is not None:
        return join(path, pointer["attempt"]) if pointer["attempt"] else path
    parent, name = path.rstrip("/").rsplit("/", 1)
    pointer = read_pointer(fs, parent)
    if pointer is not None and pointer["attempt"] == name:
        return path
    return None


def committed_uri(uri: str, storage_options: Mapping | None = None) -> str | None:
    """URI of the folder holding the files of a committed run: ``uri`` is a run folder
    ``{output}/{run_id}`` (its pointer is followed) or a committed attempt folder. None when
    it is neither."""
    fs, path = filesystem(uri, storage_options)
    folder = committed_folder(fs, path)
    return None if folder is None else to_uri(fs, folder)


def latest_run(output_uri: str, storage_options: Mapping | None = None) -> str | None:
    """The run id that ``{output}/LATEST`` names, or None."""
    fs, root = filesystem(output_uri, storage_options)
    path = join(root, LATEST)
    with storage_op("reading", fs, path):
        fs.invalidate_cache(root)
        if not fs.exists(path):
            return None
        return fs.cat_file(path).decode().strip() or None


def _committed_run(uri: str, storage_options: Mapping | None) -> tuple[Any, str]:
    """``(fs, folder)`` of the committed files of ``uri``: a run folder, a committed attempt
    folder, or an output folder whose ``LATEST`` run is taken (StorageError otherwise)."""
    fs, path = filesystem(uri, storage_options)
    folder = committed_folder(fs, path)
    if folder is None:
        latest = latest_run(uri, storage_options)
        if latest is None:
            raise StorageError(
                f"{uri} is not a run folder (no {SUCCESS}) and has no {LATEST}; pass a run folder "
                "{output}/{run_id} or an output folder with committed runs"
            )
        folder = committed_folder(fs, join(path, latest))
        if folder is None:
            raise StorageError(f"{LATEST} of {uri} names {latest}, which is not committed")
    return fs, folder


def read_manifest(uri: str, storage_options: Mapping | None = None) -> dict[str, Any]:
    """The manifest of a committed run; ``uri`` is the run folder ``{output}/{run_id}``, a
    committed attempt folder, or an output folder whose ``LATEST`` run is read.

    Raises
    ------
    StorageError
        ``uri`` is none of these, or the run is not committed (no ``_SUCCESS``).
    """
    fs, folder = _committed_run(uri, storage_options)
    with storage_op("reading", fs, join(folder, MANIFEST)):
        return json.loads(fs.cat_file(join(folder, MANIFEST)))


def read_run_file(uri: str, rel: str, storage_options: Mapping | None = None) -> bytes | None:
    """The file ``rel`` of a committed run (``uri`` as in :func:`read_manifest`), or None
    when the run has no such file (e.g. runs made before the file existed).

    Raises
    ------
    StorageError
        ``uri`` is not a committed run, or the storage failed.
    """
    fs, folder = _committed_run(uri, storage_options)
    path = join(folder, rel)
    with storage_op("reading", fs, path):
        try:
            return fs.cat_file(path)
        except FileNotFoundError:
            return None
