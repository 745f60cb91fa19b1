"""The data stage on small archives built in each upstream format: loading, checksums, errors."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import pickle
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from mimetic.data import (DATASETS, PREPARED, CorruptFile, DatasetUnavailable, load_dataset, load_prepared,
                          prepare)
from mimetic.data.fetch import Source

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
        base, train, test, label_key = "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"
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
    meta = prepare(name, root=tmp_path / "raw", out=tmp_path / "out")
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
    prepare("svhn", root=tmp_path / "raw", out=tmp_path / "out")
    data = load_dataset("svhn", tmp_path / "out")
    assert data.train_x.shape == (12, 3, 32, 32) and data.test_x.shape == (5, 3, 32, 32)
    assert np.array_equal(data.train_x.numpy(), truth["train_x"])
    assert np.array_equal(data.test_y.numpy(), truth["test_y"])
    assert 0 in data.train_y.tolist() and data.train_y.max() <= 9  # label 10 became digit 0
    assert not data.flip and data.num_classes == 10


def test_tiny_imagenet_zip_to_arrays(tmp_path, monkeypatch):
    tiny_zip(tmp_path / "raw")
    point_at(monkeypatch, "tiny_imagenet", tmp_path / "raw")
    meta = prepare("tiny_imagenet", root=tmp_path / "raw", out=tmp_path / "out")
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
    """The real download path (torchvision's download_url) against a local HTTP server."""
    cifar_archive(tmp_path / "served", "cifar10")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "served"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        point_at(monkeypatch, "cifar10", tmp_path / "served", url=url)
        prepare("cifar10", root=tmp_path / "raw", out=tmp_path / "out")
        assert md5(tmp_path / "raw/cifar-10-python.tar.gz") == md5(tmp_path / "served/cifar-10-python.tar.gz")
        # A download that fails its MD5 leaves nothing behind under any name.
        point_at(monkeypatch, "cifar10", tmp_path / "served", url=url, md5s={"cifar-10-python.tar.gz": "0" * 32})
        with pytest.raises(CorruptFile, match="MD5"):
            prepare("cifar10", root=tmp_path / "raw2", out=tmp_path / "out2")
        assert list((tmp_path / "raw2").iterdir()) == []
    finally:
        server.shutdown()


# --- errors --------------------------------------------------------------------------------

def test_wrong_checksum_is_rejected_and_moved_aside(tmp_path, monkeypatch):
    cifar_archive(tmp_path / "raw", "cifar10")
    point_at(monkeypatch, "cifar10", tmp_path / "raw", md5s={"cifar-10-python.tar.gz": "0" * 32})
    with pytest.raises(CorruptFile, match="expected 0{32}"):
        prepare("cifar10", root=tmp_path / "raw", out=tmp_path / "out")
    assert not (tmp_path / "raw/cifar-10-python.tar.gz").exists()
    assert (tmp_path / "raw/cifar-10-python.tar.gz.corrupt").exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["cifar100", "svhn", "tiny_imagenet"])
def test_truncated_file_is_rejected(tmp_path, monkeypatch, name):
    build = {"cifar100": lambda f: cifar_archive(f, "cifar100"), "svhn": svhn_mats, "tiny_imagenet": tiny_zip}
    build[name](tmp_path / "raw")
    point_at(monkeypatch, name, tmp_path / "raw")  # the MD5s of the intact files
    victim = tmp_path / "raw" / PREPARED[name].sources[0].filename
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(CorruptFile, match=str(victim)):
        prepare(name, root=tmp_path / "raw", out=tmp_path / "out")
    assert not victim.exists() and victim.with_name(victim.name + ".corrupt").exists()
    assert not (tmp_path / "out").exists()


def test_offline_error_names_dataset_path_and_key(tmp_path, monkeypatch):
    spec = PREPARED["svhn"]
    monkeypatch.setitem(PREPARED, "svhn", dataclasses.replace(
        spec, sources=[Source(OFFLINE_URL + s.filename, s.filename, s.md5) for s in spec.sources]))
    with pytest.raises(DatasetUnavailable) as err:
        prepare("svhn", root=tmp_path / "nowhere", out=tmp_path / "out")
    msg = str(err.value)
    assert "svhn" in msg and str(tmp_path / "nowhere" / "train_32x32.mat") in msg and "data.svhn.root" in msg
    assert not (tmp_path / "nowhere" / "train_32x32.mat").exists()
    assert not list((tmp_path / "nowhere").glob("*"))  # no partial or temporary file left


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


def test_cli_prepare_exits_with_the_message(tmp_path, monkeypatch):
    from mimetic.cli import main

    spec = PREPARED["cifar10"]
    monkeypatch.setitem(PREPARED, "cifar10", dataclasses.replace(
        spec, sources=[Source(OFFLINE_URL + s.filename, s.filename, s.md5) for s in spec.sources]))
    with pytest.raises(SystemExit, match=r"mimetic prepare: cifar10: .*data\.cifar10\.root"):
        main(["prepare", "cifar10", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "out")])
    cifar_archive(tmp_path / "raw", "cifar10")
    point_at(monkeypatch, "cifar10", tmp_path / "raw")
    assert main(["prepare", "cifar10", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "out")]) == 0
    assert load_dataset("cifar10", tmp_path / "out").train_x.shape == (20, 3, 32, 32)
