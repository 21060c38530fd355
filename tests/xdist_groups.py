"""Which tests pytest-xdist must keep on one worker: a hook tests/conftest.py imports."""

from __future__ import annotations

import pytest

WARP_KERNELS = pytest.mark.xdist_group("warp_kernels")
"""The tests that build an Isaac Lab task (in the test process, or in a search's trials): the
first build on a machine compiles Newton's and MuJoCo-Warp's kernels (about 60 s of one core, then
cached on disk), so they share one worker and the kernels are compiled once, not by both workers
(or two trials) at the same time."""


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup` (pyproject.toml), a module whose tests share a module-scoped
    fixture (a whole study run once for many checks) stays on one worker, so the fixture runs
    once; every other test is handed out on its own, which keeps both workers busy to the end
    instead of one finishing a long file alone."""
    for item in items:
        defs = getattr(item, "_fixtureinfo", None)
        scopes = {d.scope for fixtures in (defs.name2fixturedefs.values() if defs else ())
                  for d in fixtures}
        if "module" in scopes:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
