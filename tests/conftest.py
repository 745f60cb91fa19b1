"""The suite runs in parallel (pytest-xdist: `-n auto --dist loadgroup`, pyproject.toml). Tests
that share one of this suite's module-scoped fixtures (a trained pipeline, a finished run, the GPU
check's output) go to one worker, so that it is built once, not once per worker."""

import os

import pytest

# One OpenMP thread per process, the workers' and every process they start (inherited), unless the
# caller says otherwise: two workers, each with torch's default of a thread per core, plus the
# workflows' jobs oversubscribe the cores, and OpenMP's spin-waiting then slows every in-process
# torch test about fourfold (tests/test_init.py, test_train.py and test_successors.py: 160 s on
# 2 cores, 42 s with one thread each). The trainer sets its own threads (`--threads`) either way.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        info = getattr(item, "_fixtureinfo", None)  # pytest's record of the fixtures a test uses
        shared = [d[-1] for d in info.name2fixturedefs.values() if d] if info else []
        if any(d.scope == "module" and d.baseid for d in shared):  # baseid "": pytest's or a plugin's
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
