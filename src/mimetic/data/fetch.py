"""Get an upstream file into a folder, checksum-verified, or fail with one clear message.

Downloads go through torchvision's `download_url` (redirects, https->http retry, MD5 check).
A file only ever appears under its final name once its MD5 matched: a download lands in a
temporary name first, and a local copy that fails the check is renamed to `<name>.corrupt`.
"""

from __future__ import annotations

import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets.utils import calculate_md5, download_url

from mimetic import io
from mimetic.data.core import CorruptFile, DatasetUnavailable


@dataclass(frozen=True)
class Source:
    """One upstream file: where it comes from, its name on disk and its MD5."""

    url: str
    filename: str
    md5: str


def config_key(dataset: str) -> str:
    """The config key that points `dataset` at a local copy."""
    return f"data.{dataset}.root"


def verify(dataset: str, path: Path, md5: str) -> None:
    """Raise CorruptFile (after renaming the file to *.corrupt) unless `path` has this MD5."""
    actual = calculate_md5(path)
    if actual != md5:
        bad = path.with_name(path.name + ".corrupt")
        os.replace(path, bad)
        raise CorruptFile(
            f"{dataset}: {path} has MD5 {actual}, expected {md5} (truncated or wrong file); "
            f"moved it to {bad}. Delete it and run the data stage again to re-download, or put a "
            f"good copy there (config key {config_key(dataset)})."
        )


def fetch(dataset: str, source: Source, root: str | Path) -> Path:
    """The verified file `source.filename` in `root`, downloaded first if absent."""
    root = Path(root)
    path = root / source.filename
    if path.is_file():
        verify(dataset, path, source.md5)
        return path
    try:
        with io.atomic_path(path) as tmp:
            # download_url skips the download if `tmp` already has the MD5; the empty
            # temporary file never does. It raises RuntimeError on an MD5 mismatch.
            download_url(source.url, str(tmp.parent), tmp.name, source.md5)
    except (urllib.error.URLError, OSError) as e:
        raise DatasetUnavailable(
            f"{dataset}: {path} does not exist and downloading {source.url} failed ({e}). "
            f"Put {source.filename} (MD5 {source.md5}) into {root}, or set the config key "
            f"{config_key(dataset)} to a folder that holds it."
        ) from e
    except RuntimeError as e:
        raise CorruptFile(f"{dataset}: the download of {source.url} failed its MD5 check ({source.md5}) "
                          "and was removed; run the data stage again") from e
    return path
