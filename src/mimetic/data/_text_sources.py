"""The language-model corpora's upstream files: where they come from, their published checksums,
and finding, verifying and downloading them by mimetic.data.fetch's rules.

A corpus is looked for in `data.<name>.root`. The project's own folder, resources/data/<name> (the
key's default), is the only one downloaded into: a download lands under a temporary name and
appears under its own only once its size and SHA-256 matched, and a file there that fails its
check is renamed to `<file>.corrupt`. Any other folder is only read: a missing or bad file there
is reported and left as it is. fetch.locate checks MD5s (torchvision's lists); these files'
checksums are published as SHA-256, so they are checked here, with fetch's download helpers.

Nothing here imports torch: the config check (mimetic.data.text.text_problem) reads these tables.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import urllib.error
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from mimetic.data.core import CorruptFile, DatasetError, DatasetUnavailable, config_key, is_own_folder, own_folder

BLOCK = 1 << 22  # bytes read at a time: a corpus is never held whole as text


@dataclass(frozen=True)
class TextSource:
    """A corpus' upstream file (the text itself, or an archive of it) and its published checksum."""

    filename: str
    urls: tuple[str, ...]  # the canonical host first, then mirrors
    sha256: str
    size: int  # bytes
    folder: str | None = None  # the folder the archive extracts to
    members: dict[str, str] = field(default_factory=dict)  # split -> its file in `folder`


# Tests put sources of their own here (a fake archive cannot match the real checksum).
SOURCES: dict[str, TextSource] = {
    # Tiny Shakespeare, nanoGPT's shakespeare_char. SHA-256 and size: TensorFlow Datasets,
    # tensorflow_datasets/url_checksums/tiny_shakespeare.txt (the same URL, 1,115,394 bytes).
    "shakespeare_char": TextSource(
        "input.txt", ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",),
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1_115_394),
    # WikiText-103 raw (Merity et al. 2016). SHA-256 and size: Hugging Face datasets,
    # datasets/wikitext/dataset_infos.json, "download_checksums" of wikitext-103-raw-v1 (the S3
    # URL, 191,984,949 bytes); ARENA's WikiText code pins the same file by MD5
    # 0ca3512bd7a238be4a63ce7b434f8935. Nobody publishes checksums of the extracted files: a
    # folder extracted from it is read as it is (its files must exist and hold text).
    "wikitext103": TextSource(
        "wikitext-103-raw-v1.zip", ("https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-raw-v1.zip",
                                    "https://wikitext.smerity.com/wikitext-103-raw-v1.zip"),
        "91c00ae287f0d699e18605c84afc9e45c192bc6b7797ff8837e5474655a33794", 191_984_949,
        folder="wikitext-103-raw", members={"train": "wiki.train.raw", "val": "wiki.valid.raw"}),
}

Opener = Callable[[], AbstractContextManager[BinaryIO]]


@dataclass(frozen=True)
class Located:
    """A corpus found and verified: each part's bytes ("text": one text split 90/10; "train" and
    "val": splits of their own) and its name for messages, and the files read, with their
    checksums, for the metadata."""

    parts: dict[str, Opener]
    names: dict[str, str]
    sources: list[dict]




def wanted(source: TextSource) -> str:
    """What a folder must hold, for messages."""
    what = f"{source.filename} ({source.size:,} bytes, SHA-256 {source.sha256})"
    if source.folder:
        what += f" or the folder {source.folder}/ extracted from it (with {', '.join(source.members.values())})"
    return what


def missing(dataset: str, root: str | Path) -> str | None:
    """What `root` lacks of `dataset`'s files (their presence only, nothing is read), or None."""
    source, root = SOURCES[dataset], Path(root)
    if (root / source.filename).is_file():
        return None
    if source.folder and (root / source.folder).is_dir():
        absent = [name for name in source.members.values() if not (root / source.folder / name).is_file()]
        return f"{root / source.folder} lacks {', '.join(absent)}" if absent else None
    return f"{root} holds neither {source.filename}" + (f" nor {source.folder}/" if source.folder else "")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _check(dataset: str, path: Path, source: TextSource) -> str | None:
    """Why `path` is not the upstream file (its size, else its SHA-256), or None."""
    try:
        size = path.stat().st_size
        if size != source.size:
            return f"has {size:,} bytes, expected {source.size:,}"
        actual = sha256(path)
    except OSError as e:
        raise DatasetUnavailable(f"{dataset}: cannot read {path} ({e}); check its permissions, or set the config "
                                 f"key {config_key(dataset)} to a folder you can read") from e
    return None if actual == source.sha256 else f"has SHA-256 {actual}, expected {source.sha256}"


def verify(dataset: str, path: Path, source: TextSource, *, move_aside: bool) -> None:
    """CorruptFile unless `path` is the upstream file; with `move_aside` (the project's own folder
    only) the bad file is first renamed to *.corrupt, so that it never again looks valid."""
    problem = _check(dataset, path, source)
    if problem is None:
        return
    if move_aside:
        bad = path.with_name(path.name + ".corrupt")
        os.replace(path, bad)
        raise CorruptFile(f"{dataset}: {path} {problem} (truncated or wrong file); moved it to {bad}. Run the data "
                          f"stage again to download it anew (then delete {bad.name}), or put an intact copy at {path}.")
    raise CorruptFile(f"{dataset}: {path} {problem} (truncated or wrong file). It was left untouched (the data stage "
                      f"never changes a copy it did not download): replace it with an intact copy, or set the config "
                      f"key {config_key(dataset)} to a folder that holds {wanted(source)}.")


def _fetch_url(url: str, path: Path) -> None:
    """Download `url` to `path` (torchvision's download_url: redirects, https->http retry)."""
    from torchvision.datasets.utils import download_url

    download_url(url, str(path.parent), path.name)


def download(dataset: str, source: TextSource, root: Path) -> Path:
    """Download `source` into `root` (the project's own folder), from each of its URLs in turn
    until one gives the upstream file. A failed download leaves nothing behind, not even the
    folders it made."""
    from mimetic import io
    from mimetic.data.fetch import _missing_folders

    path, made, failures = root / source.filename, _missing_folders(root), []
    try:
        for url in source.urls:
            try:
                with io.atomic_path(path) as tmp:
                    tmp.unlink()  # download_url keeps a file already there when given no MD5
                    _fetch_url(url, tmp)
                    problem = _check(dataset, tmp, source)
                    if problem:
                        raise CorruptFile(f"the download {problem}")
                return path
            except (urllib.error.URLError, OSError, RuntimeError, CorruptFile) as e:
                failures.append(f"{url}: {e}")
    finally:
        if not path.is_file():
            for folder in made:
                try:
                    folder.rmdir()
                except OSError:  # not empty: another download put a file there
                    break
    raise DatasetUnavailable(f"{dataset}: {path} does not exist and no download gave the upstream file "
                             f"({'; '.join(failures)}). Put {wanted(source)} into {root}, or set the config key "
                             f"{config_key(dataset)} to a folder that holds it.")


@contextmanager
def open_file(path: Path) -> Iterator[BinaryIO]:
    with open(path, "rb") as f:
        yield f


@contextmanager
def _zip_member(path: Path, name: str) -> Iterator[BinaryIO]:
    with zipfile.ZipFile(path) as z, z.open(name) as f:
        yield f


def _zip_parts(dataset: str, path: Path, source: TextSource) -> tuple[dict[str, Opener], dict[str, str]]:
    names = {split: f"{source.folder}/{member}" for split, member in source.members.items()}
    try:
        with zipfile.ZipFile(path) as z:
            present = set(z.namelist())
    except (zipfile.BadZipFile, OSError) as e:
        raise CorruptFile(f"{dataset}: {path} is not a readable zip archive ({e})") from e
    absent = [name for name in names.values() if name not in present]
    if absent:
        raise CorruptFile(f"{dataset}: {path} has no {', '.join(absent)}; it is not {source.filename} as published")
    return ({split: (lambda name=name: _zip_member(path, name)) for split, name in names.items()},
            {split: f"{name} in {path}" for split, name in names.items()})


def locate(dataset: str, root: str | Path | None) -> Located:
    """Find `dataset` in `root` (default: its own folder), verified: its upstream file if present,
    else its extracted folder; if neither, download into the own folder, or fail for any other."""
    source = SOURCES[dataset]
    root = Path(root).expanduser() if root is not None else own_folder(dataset)
    own, key = is_own_folder(dataset, root), config_key(dataset)
    path = root / source.filename
    folder = root / source.folder if source.folder else None
    if not path.is_file() and folder is not None and folder.is_dir():
        absent = [name for name in source.members.values() if not (folder / name).is_file()]
        if absent:
            raise DatasetUnavailable(f"{dataset}: {folder / absent[0]} does not exist: the extracted folder {folder} "
                                     f"is incomplete (it needs {', '.join(source.members.values())}). Point {key} at "
                                     f"a folder that holds {wanted(source)}.")
        parts = {split: (lambda p=folder / name: open_file(p)) for split, name in source.members.items()}
        # No published checksums of the extracted files: recorded as read, not verified.
        names = {split: str(folder / name) for split, name in source.members.items()}
        return Located(parts, names, [{"file": name, "sha256": None, "verified": False} for name in names.values()])
    if path.is_file():
        verify(dataset, path, source, move_aside=own)
    elif own:
        download(dataset, source, root)
    else:
        problem = "does not exist" if not root.exists() else "is not a folder" if not root.is_dir() else (
            f"holds neither {source.filename}" + (f" nor the extracted folder {source.folder}/" if folder else ""))
        raise DatasetUnavailable(f"{dataset}: {root} {problem} (config key {key}). Point {key} at a folder that "
                                 f"holds {wanted(source)}, or leave {key} at its default ({own_folder(dataset)}), "
                                 "where the data stage downloads it. A folder you name is only read, never "
                                 "downloaded into or changed.")
    parts, names = _zip_parts(dataset, path, source) if source.folder else ({"text": lambda: open_file(path)},
                                                                            {"text": str(path)})
    return Located(parts, names, [{"file": str(path), "sha256": source.sha256, "verified": True}])


def byte_blocks(opener: Opener, size: int = BLOCK) -> Iterator[bytes]:
    with opener() as f:
        while block := f.read(size):
            yield block


def text_blocks(opener: Opener, what: str, key: str, size: int = BLOCK) -> Iterator[str]:
    """The UTF-8 text of `opener`'s bytes, block by block; DatasetError naming `key` where it is not UTF-8."""
    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    blocks = byte_blocks(opener, size)
    while True:
        block = next(blocks, None)
        pending = len(decoder.getstate()[0])  # bytes of a character split across two blocks
        try:
            text = decoder.decode(block or b"", final=block is None)
        except UnicodeDecodeError as e:
            raise DatasetError(f"{key}: {what} is not UTF-8 text ({e.reason} at byte {offset - pending + e.start}); "
                               "convert it, or train on its bytes (tokenizer: byte)") from None
        if text:
            yield text
        if block is None:
            return
        offset += len(block)
