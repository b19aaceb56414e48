"""bench/cluster_failover.py (and `bench/cluster.py --failover`, which imports it) runs in a
venv without pytest: it imports no pytest module, neither directly nor through a test
helper (issue #12). Checked in a fresh interpreter where `import pytest` fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# sys.modules[name] = None makes `import name` raise ImportError, as if not installed.
PROBE = """
import sys
sys.modules["pytest"] = None
sys.path[:0] = [{root!r}]
import bench.cluster_failover as bench
assert callable(bench.measure)
loaded = sorted(m for m in sys.modules
                if m == "tests.conftest" or m.startswith(("tests.test_", "_pytest")))
print(" ".join(loaded) or "clean")
"""


# As `python bench/cluster_failover.py --help` starts: bench/ first on sys.path.
AS_SCRIPT = """
import runpy, sys
sys.modules["pytest"] = None
sys.path[0] = {bench!r}
sys.argv = [{script!r}, "--help"]
runpy.run_path({script!r}, run_name="__main__")
"""


def test_cluster_failover_bench_runs_as_a_script_without_pytest() -> None:
    bench = ROOT / "bench"
    code = AS_SCRIPT.format(bench=str(bench), script=str(bench / "cluster_failover.py"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd="/")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "usage: cluster_failover.py" in out.stdout


def test_cluster_failover_bench_imports_without_pytest() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(root=str(ROOT))],
        capture_output=True, text=True, timeout=120, cwd="/",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean", out.stdout
