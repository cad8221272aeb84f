"""The package's structure is enforced, not a convention: the import contracts of
pyproject.toml (layers, pure kernels, I/O only in io/, no prefect in the library, no cycles)
hold, and fail on a deliberate violation; no function is over 80 lines, no module over 400."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("kmeans_dask", "flows")
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the packages under ``tree`` (found first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy_tree(dest: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_import_contracts_hold():
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout or "broken" not in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # a kernel that imports dask breaks the pure-kernel rule
        ("kmeans_dask/kernels/lloyd.py", "import dask.array", "Kernels are numpy + numba only"),
        # the engine reaching up into an estimator breaks the layers
        ("kmeans_dask/engine/lloyd.py", "from .. import kmeans", "Layers: imports point"),
        # storage that builds estimators breaks io's contract
        ("kmeans_dask/io/fs.py", "from .. import scale", "io/ stores documents"),
        # the library importing prefect
        ("kmeans_dask/job/pipeline.py", "import prefect", "never imports prefect"),
    ],
)
def test_import_contracts_fail_on_a_violation(tmp_path, module, line, contract):
    tree = _copy_tree(tmp_path)
    path = tree / module
    text = path.read_text()
    # after the docstring and `from __future__`, which must stay first
    head, sep, rest = text.partition("from __future__ import annotations\n")
    path.write_text(f"{head}{sep}{line}  # deliberate violation\n{rest}")
    out = _lint_imports(tree)
    assert out.returncode != 0, out.stdout
    broken = " ".join(out.stdout.split("Broken contracts", 1)[-1].split())  # unwrapped
    assert contract in broken, out.stdout


def _python_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_modules_and_functions_are_small():
    too_long = []
    for path in _python_files():
        text = path.read_text()
        rel = path.relative_to(ROOT)
        n_lines = len(text.splitlines())
        if n_lines > MAX_MODULE_LINES:
            too_long.append(f"{rel}: module of {n_lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{rel}:{node.lineno} {node.name}() of {length} lines")
    assert not too_long, "\n".join(too_long)
