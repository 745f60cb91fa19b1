"""ImageNet-1k from the user's own ImageFolder copy (never downloaded): the data stage's index.

The data stage only indexes the folder: it checks the layout, applies the class and per-class
subsets (ImageNet-100 and the like), opens every image once (a fast reduced-size JPEG decode) and
leaves out the unreadable ones by name, and writes resources/data/imagenet/{train,val}.csv
(path, label) + meta.json, so a run never rescans 1.3 million files. Training reads the index
(mimetic.train.stream).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from mimetic import io
from mimetic.data.core import INDEX_FILES, DatasetError, DatasetUnavailable, Fingerprint, Outputs, output_files

SPLITS = ("train", "val")
ROOT_KEY = "data.imagenet.root"
CLASSES_KEY = "data.imagenet.classes"


def _folder(root: str | Path | None, split: str) -> Path:
    if root is None:
        raise DatasetUnavailable(f"imagenet: no folder given; ImageNet is never downloaded. Set the config key "
                                 f"{ROOT_KEY} to your copy (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG)")
    folder = Path(root).resolve() / split  # absolute, so the index works from any directory
    if not folder.is_dir():
        raise DatasetUnavailable(f"imagenet: {folder} is not a folder; the config key {ROOT_KEY} must name a copy "
                                 f"in ImageFolder layout (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG)")
    return folder


def _shown(path: str) -> str:
    """`path` as text: bytes that are not UTF-8 (os.walk gives them as surrogate escapes) as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _utf8(path: str) -> str:
    """`path`, refused if it is not valid UTF-8: the index is a UTF-8 CSV (and the log UTF-8 text)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise DatasetError(f"imagenet: {_shown(path)} is not a valid UTF-8 file name; rename it (the index "
                           "holds UTF-8 paths)") from None
    return path


def _folder_error(e: OSError, folder: str, is_class: bool) -> DatasetError:
    """`e` from listing `folder` (or a folder in it) as one line: which folder, and what to do."""
    path = _shown(os.fsdecode(e.filename) if e.filename is not None else folder)
    fix = f"make it readable (chmod -R u+rX {_shown(folder)})"
    if is_class:  # an unchosen class is never listed
        fix += f" or leave the class out with the config key {CLASSES_KEY} (mimetic prepare: --classes)"
    return DatasetError(f"imagenet: cannot read the folder {path} ({e.strerror or type(e).__name__}); {fix}")


def _raise(e: OSError) -> None:
    raise e  # os.walk's onerror: without it, an unreadable folder is skipped without a word


def _file_key(path: str) -> tuple[int, int] | None:
    """The real file behind `path` (through symlinks and hard links), or None if it cannot be
    stat'ed (the decode check then leaves it out by name)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _class_files(class_dir: str, label: int, seen: dict[tuple[int, int], str], left_out: dict[str, str]
                 ) -> list[tuple[str, int]]:
    """torchvision's ImageFolder scan of one class folder (sorted folders, sorted names, its image
    extensions, case-insensitive), without following directory links (a link back up indexed each
    file many times) and with each real file once (`seen`: file -> its first path)."""
    samples = []
    try:
        walk = sorted(os.walk(class_dir, onerror=_raise))  # os.walk does not follow directory links
    except OSError as e:
        raise _folder_error(e, class_dir, is_class=True) from None
    for folder, dirs, names in walk:
        for name in sorted(dirs):
            if os.path.islink(path := os.path.join(folder, name)):
                left_out[_utf8(path)] = "a directory link, not followed"
        for name in sorted(names):
            path = os.path.join(folder, name)
            if not path.lower().endswith(IMG_EXTENSIONS):
                continue
            key = _file_key(_utf8(path))
            first = seen.setdefault(key, path) if key is not None else path
            if first != path:
                left_out[path] = f"the same file as {first}"
            else:
                samples.append((path, label))
    if not samples:
        raise DatasetError(f"imagenet: {_shown(class_dir)} holds no image files ({', '.join(IMG_EXTENSIONS)}); add the "
                           f"class's images or leave the class out with the config key {CLASSES_KEY} "
                           "(mimetic prepare: --classes)")
    return samples


def _samples(folder: Path, class_to_idx: dict[str, int], left_out: dict[str, str]) -> list[tuple[str, int]]:
    """Every image of the classes, in torchvision's ImageFolder order; what is left out, into `left_out`."""
    seen: dict[tuple[int, int], str] = {}  # per split: a file may be in train/ and val/ alike
    return [s for wnid, label in sorted(class_to_idx.items())
            for s in _class_files(str(folder / wnid), label, seen, left_out)]


def _first(samples: list[tuple[str, int]], per_class: int | None) -> list[tuple[str, int]]:
    """The first `per_class` images of each class (all: None)."""
    if per_class is None:
        return samples
    kept: dict[int, int] = {}
    out = []
    for path, label in samples:
        if kept.get(label, 0) < per_class:
            kept[label] = kept.get(label, 0) + 1
            out.append((path, label))
    return out


def _classes(folder: Path) -> list[str]:
    """The class folders of a split (links to folders included), sorted, as torchvision's find_classes."""
    try:
        with os.scandir(folder) as entries:
            classes = sorted(entry.name for entry in entries if entry.is_dir())
    except OSError as e:
        raise _folder_error(e, str(folder), is_class=False) from None
    if not classes:
        raise DatasetUnavailable(f"imagenet: {folder} holds no class folders; the config key {ROOT_KEY} must name "
                                 "a copy in ImageFolder layout (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG)")
    return classes


def _unreadable(path: str) -> str | None:
    """Why PIL cannot decode `path`, or None. JPEGs decode at 1/8 scale (draft mode): every
    entropy-coded block is still read, so truncated and corrupt files fail, at a fraction of the cost."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
        return None
    except Exception as e:  # noqa: BLE001 - any decoder error makes the file unusable
        return f"{type(e).__name__}: {e}"


def _choose_classes(classes: list[str], chosen: int | Sequence[str] | None) -> list[str]:
    if chosen is None:
        return classes
    if isinstance(chosen, int):
        if not 1 <= chosen <= len(classes):
            raise DatasetError(f"imagenet: classes={chosen}: the copy has {len(classes)} classes")
        return classes[:chosen]
    missing = sorted(set(chosen) - set(classes))
    if missing:
        raise DatasetError(f"imagenet: classes {missing[:5]} are not folders of the copy's train/")
    return sorted(chosen)


def _readable(samples: list[tuple[str, int]], workers: int, unreadable: dict[str, str], log) -> list[tuple[str, int]]:
    """`samples` less those PIL cannot decode, each logged and put in `unreadable`."""
    with ProcessPoolExecutor(max(1, workers)) as pool:
        errors = list(pool.map(_unreadable, [p for p, _ in samples], chunksize=256))
    for (path, _), error in zip(samples, errors):
        if error:
            log(f"imagenet: left out {path}: {error}")
            unreadable[path] = error
    return [s for s, error in zip(samples, errors) if not error]


def fingerprint(root: Path, samples: dict[str, list[tuple[str, int]]], classes: list[str]) -> str:
    """The index's content, wherever the copy lies: per split, each row as (path relative to `root`,
    label, file size), then the classes. The size stands in for the bytes: hashing every image again
    would double the index's reading. So an image rewritten at exactly its old size goes unnoticed."""
    fp = Fingerprint("mimetic.data.imagenet/v1")
    for split in SPLITS:
        fp.add(split)
        for path, label in samples[split]:
            fp.add([os.path.relpath(path, root), label, os.stat(path).st_size])
    return fp.add({"classes": classes}).hexdigest()


def _write_csv(path: Path, samples: list[tuple[str, int]]) -> None:
    with io.atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("path", "label"), *samples])


def index(root: str | Path | None, outputs: Outputs = None, *, classes: int | Sequence[str] | None = None,
          train_per_class: int | None = None, val_per_class: int | None = None, workers: int = 8,
          log=print) -> dict:
    """Check the ImageFolder copy at `root` and write its index to `outputs` ("train", "test" CSV
    and "meta" .json, default resources/data/imagenet/{train,val}.csv, meta.json); returns the metadata.

    classes: all (None), the first N in sorted order, or a list of wnids (e.g. ImageNet-100's).
    Unreadable images are left out of the index, each logged by name and listed in meta.json
    (`unreadable`); so are directory links (not followed) and second paths to one file
    (`left_out`). A folder mistake (an empty or unreadable class folder, a file name that is not
    UTF-8) raises DatasetError before any file is written.
    """
    folders = {split: _folder(root, split) for split in SPLITS}
    all_classes, val_classes = _classes(folders["train"]), _classes(folders["val"])
    if val_classes != all_classes:
        missing = sorted(set(all_classes) ^ set(val_classes))[:5]
        raise DatasetUnavailable(f"imagenet: {folders['train']} and {folders['val']} hold different classes "
                                 f"(e.g. {missing}); both need one folder per class")
    kept = _choose_classes(all_classes, classes)
    class_to_idx = {wnid: i for i, wnid in enumerate(kept)}
    out = output_files("imagenet", outputs, INDEX_FILES)
    # Both splits are scanned and checked before anything is written: a mistake in val/ never
    # leaves a train.csv behind.
    left_out: dict[str, str] = {}
    scanned = {split: _samples(folders[split], class_to_idx, left_out) for split in SPLITS}
    for path, reason in left_out.items():
        log(f"imagenet: left out {path}: {reason}")
    unreadable: dict[str, str] = {}
    samples = {split: _readable(_first(scanned[split], per_class), workers, unreadable, log)
               for split, per_class in (("train", train_per_class), ("val", val_per_class))}
    copy = folders["train"].parent
    meta = {"name": "imagenet", "root": str(copy), "classes": kept,
            "train_per_class": train_per_class, "val_per_class": val_per_class,
            **{split: len(samples[split]) for split in SPLITS}, "unreadable": unreadable, "left_out": left_out,
            "fingerprint": fingerprint(copy, samples, kept)}
    # meta.json marks a complete index: an old one goes first, so an interrupted write never
    # pairs it with new CSVs; it is written last.
    out["meta"].unlink(missing_ok=True)
    _write_csv(out["train"], samples["train"])
    _write_csv(out["test"], samples["val"])
    io.write_json(out["meta"], meta)
    return meta


def read_index(csv_path: str | Path) -> list[tuple[str, int]]:
    with open(csv_path, newline="") as f:
        return [(r["path"], int(r["label"])) for r in csv.DictReader(f)]
