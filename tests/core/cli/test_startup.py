"""`slmrec` starts light: building the parser imports no numerical library, and `slmrec query`
loads only what a query needs (DuckDB and pyarrow), never pandas, the generator or torch."""

import subprocess
import sys


def modules_after(code: str) -> set[str]:
    heavy = ("numpy", "pandas", "pyarrow", "duckdb", "torch", "core.data.synthetic", "transformers")
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.splitlines()[-1].split())  # the probe's line comes last


def test_the_parser_imports_nothing_heavy():
    assert modules_after("from core.cli.parser import build_parser; build_parser()") == set()


def test_a_query_loads_duckdb_and_pyarrow_only(tmp_path):
    loaded = modules_after(f"from core.cli import main; main(['--root', {str(tmp_path)!r}, 'query', 'SELECT 1 AS x'])")
    assert loaded <= {"duckdb", "pyarrow", "numpy"} and "duckdb" in loaded
