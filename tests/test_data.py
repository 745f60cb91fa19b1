"""The data stage on small archives built in each upstream format: loading, checksums, errors."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import json
import pickle
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from mimetic.data import (DATASETS, PREPARED, PREPARED_NAMES, CorruptFile, DatasetUnavailable, data_fingerprint,
                          load_dataset, load_prepared)
from mimetic.data.core import Arrays
from mimetic.data.stage import fingerprint, prepare
from mimetic.data.fetch import Extracted, Source

OFFLINE_URL = "http://127.0.0.1:9/"  # the discard port: refused at once, like a machine without internet
RNG = np.random.default_rng(0)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def point_at(monkeypatch, name: str, folder: Path, url: str = OFFLINE_URL, md5s: dict | None = None) -> None:
    """Make `name`'s sources expect the test files in `folder` (their MD5s) at `url`."""
    spec = PREPARED[name]
    sources = []
    for s in spec.sources:
        digest = (md5s or {}).get(s.filename) or md5(folder / s.filename)
        sources.append(Source(url + s.filename, s.filename, digest))
    monkeypatch.setitem(PREPARED, name, dataclasses.replace(spec, sources=sources))


def point_extracted_at(monkeypatch, name: str, folder: Path) -> None:
    """Make `name`'s extracted-folder MD5s those of the test files in `folder` (the extracted folder)."""
    spec = PREPARED[name]
    md5s = {rel: md5(folder / rel) for rel in spec.extracted.md5s}
    monkeypatch.setitem(PREPARED, name, dataclasses.replace(spec, extracted=Extracted(spec.extracted.folder, md5s)))


def extract(archive: Path, dest: Path) -> Path:
    """Unpack an upstream archive into `dest` as torchvision does; returns `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    else:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    return dest


def tree(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (and `root` itself): mode, mtime and, for files, the content hash.
    A folder's mtime changes when an entry is added or removed, even if removed again."""
    out = {}
    for p in [root, *sorted(root.rglob("*"))]:
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[p.relative_to(root).as_posix()] = (stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_size, digest)
    return out


def arrays(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for split in ("train", "test"):
        with np.load(folder / f"{split}.npz") as z:
            out[split + "_x"], out[split + "_y"] = z["x"], z["y"]
    return out


# --- archives in the upstream layouts -------------------------------------------------------

def _add(tar: tarfile.TarFile, name: str, obj: dict) -> None:
    data = pickle.dumps(obj)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def cifar_archive(folder: Path, name: str, per_batch: int = 4) -> dict[str, np.ndarray]:
    """cifar-10-python.tar.gz (5 train batches + test_batch + batches.meta) or
    cifar-100-python.tar.gz (train + test + meta), with random pixels and labels."""
    spec = PREPARED[name].sources[0]
    if name == "cifar10":
        base, label_key = "cifar-10-batches-py", b"labels"
        train, test = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]
        meta_file, meta = "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]}
        classes = 10
    else:
        base, train, test, label_key = "cifar-100-python", ["train"], ["test"], b"fine_labels"
        meta_file, meta = "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)]}
        classes = 100
    truth = {}
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / spec.filename, "w:gz") as tar:
        for split, files in (("train", train), ("test", test)):
            xs, ys = [], []
            for f in files:
                x = RNG.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
                y = RNG.integers(0, classes, per_batch).tolist()
                batch = {b"data": x, label_key: y, b"batch_label": f.encode()}
                if name == "cifar100":
                    batch[b"coarse_labels"] = [v // 5 for v in y]
                _add(tar, f"{base}/{f}", batch)
                xs.append(x.reshape(-1, 3, 32, 32))
                ys += y
            truth[split + "_x"], truth[split + "_y"] = np.concatenate(xs), np.array(ys)
        _add(tar, f"{base}/{meta_file}", meta)
    return truth


def svhn_mats(folder: Path, n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    """train_32x32.mat and test_32x32.mat: X is (32, 32, 3, N), y is (N, 1) in 1..10."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.arange(n).reshape(-1, 1) % 10 + 1  # 1..10, 10 being the digit 0
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y.astype(np.uint8)})
        truth[split + "_x"], truth[split + "_y"] = x.transpose(3, 2, 0, 1), y.reshape(-1) % 10
    return truth


def _jpeg(color: tuple[int, int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), color).convert(mode).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


TINY_WNIDS = ["n09999999", "n01443537", "n02000000"]  # wnids.txt is not sorted upstream
TINY_COLORS = {"n01443537": (200, 30, 30), "n02000000": (30, 200, 30), "n09999999": (30, 30, 200)}


def tiny_zip(folder: Path, per_class: int = 3) -> Path:
    """tiny-imagenet-200.zip: wnids.txt, train/<wnid>/images/*.JPEG (+ boxes file),
    val/images/val_*.JPEG with val/val_annotations.txt, test/images (unlabelled)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny-imagenet-200.zip"
    r = "tiny-imagenet-200"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{r}/wnids.txt", "\n".join(TINY_WNIDS) + "\n")
        zf.writestr(f"{r}/words.txt", "".join(f"{w}\tthing {w}\n" for w in TINY_WNIDS))
        for w in TINY_WNIDS:
            zf.writestr(f"{r}/train/{w}/{w}_boxes.txt", "")
            for k in range(per_class):
                # one greyscale image per class: upstream has some
                zf.writestr(f"{r}/train/{w}/images/{w}_{k}.JPEG", _jpeg(TINY_COLORS[w], "L" if k == 0 else "RGB"))
        lines = []
        for i, w in enumerate(TINY_WNIDS * 2):
            zf.writestr(f"{r}/val/images/val_{i}.JPEG", _jpeg(TINY_COLORS[w]))
            lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
        zf.writestr(f"{r}/val/val_annotations.txt", "\n".join(lines) + "\n")
        zf.writestr(f"{r}/test/images/test_0.JPEG", _jpeg((0, 0, 0)))
    return path


# --- loading -------------------------------------------------------------------------------

@pytest.mark.parametrize("name,n_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_archive_to_arrays(tmp_path, monkeypatch, name, n_classes):
    truth = cifar_archive(tmp_path / "raw", name)
    point_at(monkeypatch, name, tmp_path / "raw")
    meta = prepare(name, root=tmp_path / "raw", outputs=tmp_path / "out")
    assert meta["train"] == len(truth["train_y"]) and meta["test"] == len(truth["test_y"])
    assert len(meta["classes"]) == n_classes
    data = load_dataset(name, tmp_path / "out")
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert data.train_x.shape == (20 if name == "cifar10" else 4, 3, 32, 32)
    assert data.num_classes == n_classes and data.flip
    for split in ("train", "test"):
        assert np.array_equal(getattr(data, split + "_x").numpy(), truth[split + "_x"])
        assert np.array_equal(getattr(data, split + "_y").numpy(), truth[split + "_y"])


def test_svhn_mat_to_arrays(tmp_path, monkeypatch):
    truth = svhn_mats(tmp_path / "raw")
    point_at(monkeypatch, "svhn", tmp_path / "raw")
    prepare("svhn", root=tmp_path / "raw", outputs=tmp_path / "out")
    data = load_dataset("svhn", tmp_path / "out")
    assert data.train_x.shape == (12, 3, 32, 32) and data.test_x.shape == (5, 3, 32, 32)
    assert np.array_equal(data.train_x.numpy(), truth["train_x"])
    assert np.array_equal(data.test_y.numpy(), truth["test_y"])
    assert 0 in data.train_y.tolist() and data.train_y.max() <= 9  # label 10 became digit 0
    assert not data.flip and data.num_classes == 10


def test_tiny_imagenet_zip_to_arrays(tmp_path, monkeypatch):
    tiny_zip(tmp_path / "raw")
    point_at(monkeypatch, "tiny_imagenet", tmp_path / "raw")
    meta = prepare("tiny_imagenet", root=tmp_path / "raw", outputs=tmp_path / "out")
    assert meta["classes"] == sorted(TINY_WNIDS)
    data = load_prepared("tiny_imagenet", tmp_path / "out")
    assert data.train_x.shape == (9, 3, 64, 64) and data.test_x.shape == (6, 3, 64, 64)
    assert data.train_x.dtype == torch.uint8 and data.num_classes == 3
    assert torch.bincount(data.train_y).tolist() == [3, 3, 3]
    # Each image's colour identifies its class: labels follow val_annotations.txt and sorted wnids.
    for x, y in ((data.train_x, data.train_y), (data.test_x, data.test_y)):
        for img, label in zip(x, y):
            color = torch.tensor(TINY_COLORS[sorted(TINY_WNIDS)[label]], dtype=torch.float)
            mean = img.float().mean(dim=(1, 2))
            if img[0].equal(img[1]):  # the greyscale one: equal channels, so only check it is grey
                continue
            assert (mean - color).abs().max() < 8


def test_download_is_verified_and_atomic(tmp_path, monkeypatch):
    """The real download path (torchvision's download_url) against a local HTTP server: downloads
    go into the project's own folder (resources/data/<name>, the default of data.<name>.root)."""
    cifar_archive(tmp_path / "served", "cifar10")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "served"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        point_at(monkeypatch, "cifar10", tmp_path / "served", url=url)
        (tmp_path / "project").mkdir()
        monkeypatch.chdir(tmp_path / "project")
        prepare("cifar10")
        own = tmp_path / "project/resources/data/cifar10"
        assert md5(own / "cifar-10-python.tar.gz") == md5(tmp_path / "served/cifar-10-python.tar.gz")
        assert sorted(p.name for p in own.iterdir()) == ["cifar-10-python.tar.gz", "meta.json", "test.npz",
                                                         "train.npz"]
        # A download that fails its MD5 leaves nothing behind under any name, not even its folder.
        (tmp_path / "project2").mkdir()
        monkeypatch.chdir(tmp_path / "project2")
        point_at(monkeypatch, "cifar10", tmp_path / "served", url=url, md5s={"cifar-10-python.tar.gz": "0" * 32})
        with pytest.raises(CorruptFile, match="MD5"):
            prepare("cifar10")
        assert list((tmp_path / "project2").iterdir()) == []
    finally:
        server.shutdown()


# --- errors --------------------------------------------------------------------------------

def test_bad_download_in_the_project_folder_is_moved_aside(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "resources/data/cifar10"
    cifar_archive(own, "cifar10")
    point_at(monkeypatch, "cifar10", own, md5s={"cifar-10-python.tar.gz": "0" * 32})
    with pytest.raises(CorruptFile, match="expected 0{32}.*moved it to .*cifar-10-python.tar.gz.corrupt"):
        prepare("cifar10", root="resources/data/cifar10", outputs=tmp_path / "out")  # the schema default, spelled out
    assert not (own / "cifar-10-python.tar.gz").exists()
    assert (own / "cifar-10-python.tar.gz.corrupt").exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "tiny_imagenet"])
def test_truncated_file_in_a_users_folder_is_reported_and_left_untouched(tmp_path, monkeypatch, name):
    build = {"cifar10": lambda f: cifar_archive(f, "cifar10"), "cifar100": lambda f: cifar_archive(f, "cifar100"),
             "svhn": svhn_mats, "tiny_imagenet": tiny_zip}
    build[name](tmp_path / "raw")
    point_at(monkeypatch, name, tmp_path / "raw")  # the MD5s of the intact files
    victim = tmp_path / "raw" / PREPARED[name].sources[0].filename
    good = md5(victim)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    before = tree(tmp_path / "raw")
    with pytest.raises(CorruptFile) as err:
        prepare(name, root=tmp_path / "raw", outputs=tmp_path / "out")
    msg = str(err.value)
    assert f"{victim} has MD5 {md5(victim)}, expected {good}" in msg
    assert "left untouched" in msg and f"data.{name}.root" in msg
    assert tree(tmp_path / "raw") == before
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_extracted_cifar_folder_gives_the_same_arrays_as_the_archive(tmp_path, monkeypatch, name):
    truth = cifar_archive(tmp_path / "archive", name)
    point_at(monkeypatch, name, tmp_path / "archive")
    users = extract(tmp_path / "archive" / PREPARED[name].sources[0].filename, tmp_path / "users")
    point_extracted_at(monkeypatch, name, users / PREPARED[name].extracted.folder)
    before = tree(users)
    meta = prepare(name, root=users, outputs=tmp_path / "from_folder")
    assert tree(users) == before  # only read
    from_archive = prepare(name, root=tmp_path / "archive", outputs=tmp_path / "from_archive")
    a, b = arrays(tmp_path / "from_folder"), arrays(tmp_path / "from_archive")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert np.array_equal(a["train_x"], truth["train_x"]) and np.array_equal(a["test_y"], truth["test_y"])
    assert meta["classes"] == from_archive["classes"] and meta["train"] == from_archive["train"]
    assert {s["file"] for s in meta["sources"]} == {str(users / PREPARED[name].extracted.folder / f)
                                                    for f in PREPARED[name].extracted.md5s}


def test_torchvision_root_with_archive_and_folder_reads_the_archive(tmp_path, monkeypatch):
    cifar_archive(tmp_path / "tv", "cifar10")
    extract(tmp_path / "tv" / "cifar-10-python.tar.gz", tmp_path / "tv")
    point_at(monkeypatch, "cifar10", tmp_path / "tv")
    meta = prepare("cifar10", root=tmp_path / "tv", outputs=tmp_path / "out")
    assert [s["file"] for s in meta["sources"]] == [str(tmp_path / "tv" / "cifar-10-python.tar.gz")]


def test_corrupt_extracted_batch_is_named_with_its_md5s_and_left_untouched(tmp_path, monkeypatch):
    cifar_archive(tmp_path / "archive", "cifar10")
    users = extract(tmp_path / "archive" / "cifar-10-python.tar.gz", tmp_path / "users")
    folder = users / "cifar-10-batches-py"
    point_extracted_at(monkeypatch, "cifar10", folder)
    victim = folder / "data_batch_3"
    good = md5(victim)
    victim.write_bytes(victim.read_bytes()[:-100])  # truncated
    before = tree(users)
    with pytest.raises(CorruptFile) as err:
        prepare("cifar10", root=users, outputs=tmp_path / "out")
    msg = str(err.value)
    assert f"{victim} has MD5 {md5(victim)}, expected {good}" in msg
    assert "left untouched" in msg and "data.cifar10.root" in msg
    assert tree(users) == before and not (tmp_path / "out").exists()
    # A missing batch is named too.
    victim.unlink()
    before = tree(users)
    with pytest.raises(CorruptFile, match=f"{victim} does not exist: the extracted folder .* is incomplete"):
        prepare("cifar10", root=users, outputs=tmp_path / "out")
    assert tree(users) == before


def test_extracted_tiny_imagenet_gives_the_same_arrays_as_the_zip(tmp_path, monkeypatch):
    tiny_zip(tmp_path / "archive")
    point_at(monkeypatch, "tiny_imagenet", tmp_path / "archive")
    users = extract(tmp_path / "archive" / "tiny-imagenet-200.zip", tmp_path / "users")
    before = tree(users)
    meta = prepare("tiny_imagenet", root=users, outputs=tmp_path / "from_folder")
    assert tree(users) == before
    assert meta["sources"] == [{"file": str(users / "tiny-imagenet-200"), "md5": None}]
    prepare("tiny_imagenet", root=tmp_path / "archive", outputs=tmp_path / "from_zip")
    a, b = arrays(tmp_path / "from_folder"), arrays(tmp_path / "from_zip")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_damaged_extracted_tiny_imagenet_is_named_and_left_untouched(tmp_path, monkeypatch):
    tiny_zip(tmp_path / "archive")
    users = extract(tmp_path / "archive" / "tiny-imagenet-200.zip", tmp_path / "users")
    image = users / "tiny-imagenet-200/val/images/val_2.JPEG"
    image.write_bytes(image.read_bytes()[:50])
    before = tree(users)
    with pytest.raises(CorruptFile, match=f"cannot read {image} as a 64x64 image.*left untouched"):
        prepare("tiny_imagenet", root=users, outputs=tmp_path / "out")
    assert tree(users) == before
    # A class without training images: the copy is incomplete.
    images = users / "tiny-imagenet-200/train/n02000000/images"
    for p in images.iterdir():
        p.unlink()
    with pytest.raises(CorruptFile, match=r"no training images for 1 of its 3 classes .*n02000000"):
        prepare("tiny_imagenet", root=users, outputs=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["cifar10", "svhn", "fashion_mnist", "tiny_imagenet"])
def test_missing_users_folder_is_reported_and_not_created(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetUnavailable) as err:
        prepare(name, root=tmp_path / "nowhere", outputs=tmp_path / "out")
    msg = str(err.value)
    assert f"{tmp_path / 'nowhere'} does not exist (config key data.{name}.root)" in msg
    assert PREPARED[name].sources[0].filename in msg and f"resources/data/{name}" in msg
    assert sorted(tmp_path.iterdir()) == []  # nothing created, nothing downloaded


@pytest.mark.parametrize("name", ["cifar100", "svhn", "fashion_mnist", "tiny_imagenet"])
def test_users_folder_without_the_dataset_is_an_error_not_a_download(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    users = tmp_path / "users"
    users.mkdir()
    (users / "unrelated.txt").write_text("x")
    before = tree(users)
    with pytest.raises(DatasetUnavailable) as err:
        prepare(name, root=users, outputs=tmp_path / "out")
    msg = str(err.value)
    spec = PREPARED[name]
    assert f"{users} holds neither {spec.sources[0].filename}" in msg and f"data.{name}.root" in msg
    if spec.extracted:
        assert f"nor the extracted folder {spec.extracted.folder}/" in msg
    assert "never downloaded into" in msg
    assert tree(users) == before and sorted(tmp_path.iterdir()) == [users]


def test_users_folder_with_one_of_two_files_names_the_missing_one(tmp_path, monkeypatch):
    svhn_mats(tmp_path / "raw")
    point_at(monkeypatch, "svhn", tmp_path / "raw")
    (tmp_path / "raw/test_32x32.mat").unlink()
    before = tree(tmp_path / "raw")
    with pytest.raises(DatasetUnavailable, match=r"test_32x32\.mat does not exist, though .* holds train_32x32"):
        prepare("svhn", root=tmp_path / "raw", outputs=tmp_path / "out")
    assert tree(tmp_path / "raw") == before


def test_offline_error_names_dataset_path_and_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = PREPARED["svhn"]
    monkeypatch.setitem(PREPARED, "svhn", dataclasses.replace(
        spec, sources=[Source(OFFLINE_URL + s.filename, s.filename, s.md5) for s in spec.sources]))
    with pytest.raises(DatasetUnavailable) as err:
        prepare("svhn", outputs=tmp_path / "out")
    msg = str(err.value)
    assert "svhn" in msg and "resources/data/svhn/train_32x32.mat" in msg and "data.svhn.root" in msg
    assert sorted(tmp_path.iterdir()) == []  # no partial or temporary file left, no folder made


def test_unprepared_dataset_names_the_path_and_key(tmp_path):
    with pytest.raises(DatasetUnavailable, match=r"meta\.json.*data\.cifar10\.root"):
        load_dataset("cifar10", tmp_path)


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        load_dataset("cifar11")
    for name in DATASETS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="cifar10"):
        prepare("mnist")


def test_builtin_datasets_need_no_data_stage():
    digits = load_dataset("digits")
    assert digits.train_x.shape[1:] == (1, 8, 8) and digits.train_x.dtype == torch.uint8 and not digits.flip
    synthetic = load_dataset("synthetic")
    assert synthetic.train_x.shape[1:] == (3, 32, 32) and synthetic.flip


def outputs(folder):
    return ["--train", str(folder / "train.npz"), "--test", str(folder / "test.npz"),
            "--meta", str(folder / "meta.json")]


def test_cli_prepare_exits_with_the_message(tmp_path, monkeypatch):
    from mimetic.cli import main

    spec = PREPARED["cifar10"]
    monkeypatch.setitem(PREPARED, "cifar10", dataclasses.replace(
        spec, sources=[Source(OFFLINE_URL + s.filename, s.filename, s.md5) for s in spec.sources]))
    with pytest.raises(SystemExit, match=r"mimetic prepare: cifar10: .*data\.cifar10\.root"):
        main(["prepare", "cifar10", "--root", str(tmp_path / "raw"), *outputs(tmp_path / "out")])
    cifar_archive(tmp_path / "raw", "cifar10")
    point_at(monkeypatch, "cifar10", tmp_path / "raw")
    assert main(["prepare", "cifar10", "--root", str(tmp_path / "raw"), *outputs(tmp_path / "out")]) == 0
    assert load_dataset("cifar10", tmp_path / "out").train_x.shape == (20, 3, 32, 32)


def test_the_registry_knows_every_prepared_dataset_without_importing_the_data_stage():
    assert tuple(PREPARED) == PREPARED_NAMES
    assert set(PREPARED_NAMES) <= set(DATASETS)
    # Planning a workflow and the analysis jobs import mimetic.data without torchvision.
    code = "import sys, mimetic.data, mimetic.checks; print(any(m.startswith('torchvision') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_data_stage_options_come_from_the_config_section():
    from mimetic.data import stage_args, stage_files

    assert stage_args({"root": "/data/imagenet", "classes": 100, "train_per_class": 5, "val_per_class": None}) == [
        "--root", "/data/imagenet", "--classes", "100", "--train-per-class", "5"]
    assert stage_args({"root": None, "classes": ["n01", "n02"], "val_per_class": 2}) == [
        "--classes", "n01", "n02", "--val-per-class", "2"]
    assert stage_files("imagenet")["test"] == "resources/data/imagenet/val.csv"
    assert stage_files("svhn") == {"train": "resources/data/svhn/train.npz", "test": "resources/data/svhn/test.npz",
                                   "meta": "resources/data/svhn/meta.json"}


def test_the_digits_split_is_cached_identical_and_then_needs_no_scikit_learn(tmp_path):
    """Importing scikit-learn costs a digits run about 3 s: the split is cached per version, and the
    cached arrays are scikit-learn's, bit for bit."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    code = ("import sys, numpy as np; from mimetic.data.builtin import digits_split; s = digits_split(); "
            "print(int('sklearn' in sys.modules)); np.savez(sys.argv[1], *s)")
    first = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.npz")], env=env, capture_output=True,
                           text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b.npz")], env=env, capture_output=True,
                            text=True, check=True)
    assert (first.stdout.strip(), second.stdout.strip()) == ("1", "0")
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a.files)
    assert [a[k].shape for k in a.files] == [(1437, 1, 8, 8), (1437,), (360, 1, 8, 8), (360,)]


# --- the fingerprint ---------------------------------------------------------------------------

def test_the_fingerprint_is_the_arrays_content_not_their_path(tmp_path, monkeypatch):
    cifar_archive(tmp_path / "raw", "cifar10")
    point_at(monkeypatch, "cifar10", tmp_path / "raw")
    meta = prepare("cifar10", root=tmp_path / "raw", outputs=tmp_path / "a")
    assert set(meta) == {"name", "classes", "flip", "shape", "train", "test", "sources", "fingerprint"}
    assert len(meta["fingerprint"]) == 64 and set(meta["fingerprint"]) <= set("0123456789abcdef")  # sha256, hex
    assert data_fingerprint(tmp_path / "a" / "meta.json") == meta["fingerprint"]
    # what the runs read: the arrays as written, whatever the upstream files were
    written = arrays(tmp_path / "a")
    assert fingerprint(Arrays(**written, classes=meta["classes"]), meta["flip"]) == meta["fingerprint"]
    assert prepare("cifar10", root=tmp_path / "raw", outputs=tmp_path / "b")["fingerprint"] == meta["fingerprint"]
    copy = shutil.copytree(tmp_path / "raw", tmp_path / "elsewhere" / "copy")
    again = prepare("cifar10", root=copy, outputs=tmp_path / "c")
    assert again["sources"] != meta["sources"] and again["fingerprint"] == meta["fingerprint"]
    extracted = extract(copy / PREPARED["cifar10"].sources[0].filename, tmp_path / "extracted")
    point_extracted_at(monkeypatch, "cifar10", extracted / PREPARED["cifar10"].extracted.folder)
    assert prepare("cifar10", root=extracted, outputs=tmp_path / "d")["fingerprint"] == meta["fingerprint"]
    cifar_archive(tmp_path / "other", "cifar10")  # other random pixels and labels
    point_at(monkeypatch, "cifar10", tmp_path / "other")
    assert prepare("cifar10", root=tmp_path / "other", outputs=tmp_path / "e")["fingerprint"] != meta["fingerprint"]
    old = tmp_path / "old.json"  # a meta.json written before there was a fingerprint
    old.write_text(json.dumps({k: v for k, v in meta.items() if k != "fingerprint"}))
    assert data_fingerprint(old) is None


def test_reading_a_fingerprint_imports_neither_numpy_nor_torch(tmp_path):
    (tmp_path / "meta.json").write_text('{"fingerprint": "ab12"}')
    code = ("import sys; from mimetic.data import data_fingerprint; print(data_fingerprint(sys.argv[1]), "
            "int('torch' in sys.modules), int('numpy' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "meta.json")], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["ab12", "0", "0"]
