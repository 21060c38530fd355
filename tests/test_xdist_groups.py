"""The suite's time depends on pytest-xdist keeping a module's shared fixture on one worker: a
pytest or xdist upgrade that silently stops grouping (as pytest 9.2 did with xdist 3.8) runs every
study fixture twice. This runs a small suite under the same rule and checks where its tests ran."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent

_CONFTEST = f"""
import sys
sys.path.insert(0, {str(_TESTS)!r})
from xdist_groups import pytest_collection_modifyitems
"""

_TEST = """
import os
import pytest

@pytest.fixture(scope="{scope}")
def shared():
    return None

@pytest.mark.parametrize("i", range(6))
def test_one(shared, i):
    with open(os.environ["PROBE_OUT"], "a") as f:
        f.write(f"{{__name__}} {{os.environ['PYTEST_XDIST_WORKER']}}\\n")
"""


def test_a_module_fixture_keeps_its_tests_on_one_worker(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(_CONFTEST)
    (suite / "test_shared.py").write_text(_TEST.format(scope="module"))
    (suite / "test_plain.py").write_text(_TEST.format(scope="function"))
    out = tmp_path / "ran"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "xdist.plugin", "-p", "no:cacheprovider",
         "-n", "2", "--dist", "loadgroup", "--basetemp", str(tmp_path / "base"), str(suite)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        # xdist alone: the other installed plugins (Hydra's, dash's) only slow each worker's start
        env={**os.environ, "PROBE_OUT": str(out), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    workers: dict[str, set[str]] = {}
    for line in out.read_text().splitlines():
        module, worker = line.split()
        workers.setdefault(module, set()).add(worker)
    assert sum(map(len, workers.values())) >= 2, workers  # both workers took part
    assert workers["test_shared"] in ({"gw0"}, {"gw1"}), workers
