"""Which `mimetic` a workflow job runs: the workflow's own, or an equal copy of it.

The workflow exports MIMETIC_WORKFLOW_SOURCE (its src/mimetic folder) to its jobs. A job whose
environment imports `mimetic` from elsewhere (another checkout's editable install, a shared
conda env made from another clone) with different code stops with one line, instead of
silently running that other code.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def source_hash(package: Path = PACKAGE) -> str:
    """sha256 over the package's Python files: their paths (relative, sorted) and contents."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def check_workflow_source() -> None:
    """Raise RuntimeError if this package is not the code of the workflow that started the job."""
    expected = os.environ.get("MIMETIC_WORKFLOW_SOURCE")
    if not expected or Path(expected).resolve() == PACKAGE:
        return
    if not Path(expected).is_dir() or source_hash(Path(expected)) != source_hash():
        raise RuntimeError(
            f"this job imported mimetic from {PACKAGE}, but the workflow's own package is {expected} and their code "
            f"differs; install the workflow's package into this environment (pip install -e "
            f"{Path(expected).parent.parent}) or, with --sdm conda, remove the stale env under .snakemake/conda")
