"""What the planning checks ask of the Hugging Face hub, without importing huggingface_hub (the
planning environment does not have it): where its cache is, and whether the hub answers now."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path


def cache_dir() -> Path:
    """The hub's cache folder, found as huggingface_hub finds it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def snapshots(repo_id: str) -> Path:
    """The folder of `repo_id`'s (a model repository's) cached snapshots."""
    return cache_dir() / f"models--{repo_id.replace('/', '--')}" / "snapshots"


def unreachable(repo_id: str) -> str | None:
    """Why the hub cannot give model `repo_id` now (HF_HUB_OFFLINE, no answer, an HTTP error), or None."""
    hub = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
            raise urllib.error.URLError("HF_HUB_OFFLINE is set")
        urllib.request.urlopen(urllib.request.Request(f"{hub}/api/models/{repo_id}", method="HEAD"), timeout=5)
    except (OSError, ValueError) as e:  # URLError, timeouts and HTTP errors are OSErrors
        return f"{hub}: {getattr(e, 'reason', e)}"
    return None
