"""Storage: partitioned readers, partition writers, the commit protocol, model documents.

All reading and writing of the package happens in this sub-package.
"""

from .commit import FileRecord, RunCommit, canonical_json, run_id_for
from .fs import exists, filesystem, read_text, redact, remove, write_text
from .lease import LeaseHeldError
from .model_store import load_model_documents, save_model_documents
from .read import (
    Dataset,
    DatasetInfo,
    fingerprint,
    list_files,
    open_dataset,
    read_dataset,
    read_table,
)
from .runs import (
    SUCCESS,
    committed_folder,
    committed_uri,
    latest_run,
    read_manifest,
    read_run_file,
)
from .write import write_frames, write_hive_parquet, write_parquet

__all__ = [
    "SUCCESS",
    "Dataset",
    "DatasetInfo",
    "FileRecord",
    "LeaseHeldError",
    "RunCommit",
    "canonical_json",
    "committed_folder",
    "committed_uri",
    "exists",
    "filesystem",
    "fingerprint",
    "latest_run",
    "list_files",
    "load_model_documents",
    "open_dataset",
    "read_dataset",
    "read_manifest",
    "read_run_file",
    "read_table",
    "read_text",
    "redact",
    "remove",
    "run_id_for",
    "save_model_documents",
    "write_frames",
    "write_hive_parquet",
    "write_parquet",
    "write_text",
]
