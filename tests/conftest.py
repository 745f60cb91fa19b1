"""The suite runs in parallel (pytest-xdist: `-n auto --dist loadgroup`, pyproject.toml). Tests
that share one of this suite's module-scoped fixtures (a trained pipeline, a finished run, the GPU
check's output) go to one worker, so that it is built once, not once per worker."""

import pytest


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        info = getattr(item, "_fixtureinfo", None)  # pytest's record of the fixtures a test uses
        shared = [d[-1] for d in info.name2fixturedefs.values() if d] if info else []
        if any(d.scope == "module" and d.baseid for d in shared):  # baseid "": pytest's or a plugin's
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
