"""Find a dataset's upstream files, verify them, and download them only into the project's own folder.

Upstream files are looked up in `data.<name>.root`, which is one of two kinds of folder:

- the project's own folder, resources/data/<name> (the key's default). The data stage downloads
  a missing file into it (through torchvision's `download_url`: redirects, https->http retry, MD5
  check). A download lands in a temporary name first and appears under its final name only once
  its MD5 matched; a file there that fails its MD5 is renamed to `<file>.corrupt`, so the next run
  downloads it again.
- any other folder: a copy of yours (e.g. a torchvision root, on a shared cluster perhaps not even
  writable). It is only ever read: nothing is downloaded into it, renamed or written there, and a
  file that fails its check is reported and left as it is.

In either folder the upstream archive is read if present, otherwise the folder extracted from it in
torchvision's layout, its files checked against the MD5s upstream publishes (torchvision's lists).
A folder that holds neither is an error for a folder of yours, a download for the project's own.
A gzipped file whose source also names the MD5 of its content passes when it gunzips to exactly
that content: a redistributor may rewrite the gzip header (Debian's Fashion-MNIST does), not the data.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from torchvision.datasets.utils import calculate_md5, download_url

from mimetic import io
from mimetic.data.core import CorruptFile, DatasetUnavailable, config_key, is_own_folder, own_folder


@dataclass(frozen=True)
class Source:
    """One upstream file: where it comes from, its name on disk and its MD5."""

    url: str
    filename: str
    md5: str
    # The MD5 of the gunzipped bytes of a .gz (None: not checked): a copy recompressed or with
    # another gzip header has other .gz MD5s but may hold the same data.
    content_md5: str | None = None


@dataclass(frozen=True)
class Extracted:
    """The folder an upstream archive extracts to (torchvision's layout) and the MD5s upstream
    publishes for its files, by path relative to that folder (none for some datasets)."""

    folder: str
    md5s: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Found:
    """Where a dataset is read from: its verified upstream files (with what each check matched,
    for meta.json), or its verified extracted folder."""

    files: list[Path]
    folder: Path | None = None
    checks: list[dict[str, str]] = field(default_factory=list)




def wanted(sources: list[Source], extracted: Extracted | None) -> str:
    """What a folder must hold, for messages: the upstream files with their MD5s, or the extracted folder."""
    files = " and ".join(f"{s.filename} (MD5 {s.md5})" for s in sources)
    return files + (f" or the folder {extracted.folder}/ extracted from it" if extracted else "")


def _left_untouched(dataset: str, what: str) -> str:
    key = config_key(dataset)
    return (f"It was left untouched (the data stage never changes a dataset copy it did not download): "
            f"replace it with an intact copy, or set the config key {key} to a folder that holds {what}.")


def _md5(dataset: str, path: Path) -> str:
    try:
        return calculate_md5(path)
    except OSError as e:
        raise DatasetUnavailable(f"{dataset}: cannot read {path} ({e}); check its permissions, or set the config "
                                 f"key {config_key(dataset)} to a folder you can read") from e


def _content_md5(path: Path) -> str | None:
    """The MD5 of a .gz file's gunzipped bytes; None if it does not gunzip (truncated, not gzip)."""
    digest = hashlib.md5()
    try:
        with gzip.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error):  # gzip.BadGzipFile is an OSError
        return None
    return digest.hexdigest()


def verify(dataset: str, path: Path, md5: str, *, move_aside: bool, what: str,
           content_md5: str | None = None) -> dict[str, str]:
    """Raise CorruptFile unless `path` has this MD5 or, given `content_md5`, gunzips to bytes of
    that MD5; with `move_aside` (the project's own downloads only) the bad file is first renamed to
    *.corrupt, so that it never again looks valid. Returns what matched: the file's MD5, and the
    content's MD5 where only that did."""
    actual = _md5(dataset, path)
    if actual == md5:
        return {"md5": actual}
    if content_md5 is not None and _content_md5(path) == content_md5:
        return {"md5": actual, "content_md5": content_md5}
    expected = md5 + (f" (or content MD5 {content_md5} once gunzipped)" if content_md5 else "")
    if move_aside:
        bad = path.with_name(path.name + ".corrupt")
        os.replace(path, bad)
        raise CorruptFile(f"{dataset}: {path} has MD5 {actual}, expected {expected} (truncated or wrong file); moved "
                          f"it to {bad}. Run the data stage again to download it anew (then delete {bad.name}), or "
                          f"put an intact copy at {path}.")
    raise CorruptFile(f"{dataset}: {path} has MD5 {actual}, expected {expected} (truncated or wrong file). "
                      + _left_untouched(dataset, what))


def verify_extracted(dataset: str, folder: Path, extracted: Extracted, what: str) -> None:
    """Check every file of an extracted folder against upstream's MD5s; the folder is never changed."""
    for rel, md5 in extracted.md5s.items():
        path = folder / rel
        if not path.is_file():
            raise CorruptFile(f"{dataset}: {path} does not exist: the extracted folder {folder} is incomplete "
                              f"(it needs {', '.join(extracted.md5s)}). " + _left_untouched(dataset, what))
        actual = _md5(dataset, path)
        if actual != md5:
            raise CorruptFile(f"{dataset}: {path} has MD5 {actual}, expected {md5} (torchvision's checksum of this "
                              f"file; truncated or wrong file). " + _left_untouched(dataset, what))


def _missing_folders(folder: Path) -> list[Path]:
    """The folders that creating `folder` would make, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def download(dataset: str, source: Source, root: Path, what: str) -> Path:
    """Download `source` into `root` (the project's own folder), MD5-checked, under a temporary name
    until it matched. A failed download leaves nothing behind, not even the folders it made."""
    path = root / source.filename
    made = _missing_folders(root)
    try:
        with io.atomic_path(path) as tmp:
            # download_url skips the download if `tmp` already has the MD5; the empty
            # temporary file never does. It raises RuntimeError on an MD5 mismatch.
            download_url(source.url, str(tmp.parent), tmp.name, source.md5)
    except BaseException as e:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # not empty: a file another download of this run put there
                break
        if isinstance(e, (urllib.error.URLError, OSError)):
            raise DatasetUnavailable(
                f"{dataset}: {path} does not exist and downloading {source.url} failed ({e}). Put {what} into "
                f"{root}, or set the config key {config_key(dataset)} to a folder that holds it.") from e
        if isinstance(e, RuntimeError):
            raise CorruptFile(f"{dataset}: the download of {source.url} failed its MD5 check ({source.md5}) "
                              "and was removed; run the data stage again") from e
        raise
    return path


def locate(dataset: str, sources: list[Source], extracted: Extracted | None, root: str | Path) -> Found:
    """Find `dataset` in `root`, verified: its upstream files if present, else its extracted folder;
    if neither, download into the project's own folder, or fail for any other folder."""
    root = Path(root)
    own = is_own_folder(dataset, root)
    what = wanted(sources, extracted)
    key = config_key(dataset)
    files = [root / s.filename for s in sources]
    present = [f.is_file() for f in files]
    folder = root / extracted.folder if extracted else None

    if any(present) or (own and not (folder and folder.is_dir())):
        if not own and not all(present):  # named before any file is hashed: hashing takes a while
            missing = next(f for f, there in zip(files, present) if not there)
            raise DatasetUnavailable(
                f"{dataset}: {missing} does not exist, though {root} (config key {key}) holds "
                f"{', '.join(f.name for f, there in zip(files, present) if there)}. Point {key} at a folder that "
                f"holds {what}.")
        checks = []
        for path, source, there in zip(files, sources, present):
            if there:
                checks.append(verify(dataset, path, source.md5, move_aside=own, what=what,
                                     content_md5=source.content_md5))
            else:
                download(dataset, source, root, what)
                checks.append({"md5": source.md5})  # download_url checked it
        return Found(files, checks=checks)
    if folder is not None and folder.is_dir():
        verify_extracted(dataset, folder, extracted, what)
        return Found([], folder)

    if not root.exists():
        problem = "does not exist"
    elif not root.is_dir():
        problem = "is not a folder"
    else:
        problem = f"holds neither {' nor '.join(s.filename for s in sources)}" + (
            f" nor the extracted folder {extracted.folder}/" if extracted else "")
    raise DatasetUnavailable(f"{dataset}: {root} {problem} (config key {key}). Point {key} at a folder that holds "
                             f"{what}, or leave {key} at its default ({own_folder(dataset)}), where the data stage "
                             f"downloads it. A folder you name is only read, never downloaded into or changed.")
