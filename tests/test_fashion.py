"""Fashion-MNIST: the data stage on small idx.gz files in upstream's exact format (and with
Debian's rewritten gzip headers), on the real files of Debian's dataset-fashion-mnist, and a
one-epoch workflow run on the first of them."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mimetic.data import PREPARED, CorruptFile, DatasetUnavailable, load_dataset
from mimetic.data import fashion_mnist
from mimetic.data.fetch import Source
from mimetic.data.core import Arrays
from mimetic.data.stage import fingerprint, prepare
from test_data import OFFLINE_URL, md5, tree
from test_workflow import snakemake

NAME = "fashion_mnist"
FILES = [s.filename for s in PREPARED[NAME].sources]  # train images, train labels, test images, test labels
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_debian = pytest.mark.skipif(
    not all((DEBIAN / f).is_file() for f in FILES),
    reason=f"{DEBIAN} lacks Fashion-MNIST's four files: Debian's package dataset-fashion-mnist is not installed "
           "(apt-get install dataset-fashion-mnist; .ci/run installs it)")


# --- files in upstream's format ---------------------------------------------------------------

def idx(array: np.ndarray) -> bytes:
    """An idx file of unsigned bytes: 0, 0, type 0x08, the number of dimensions, the sizes (big-endian uint32)."""
    return bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes() + array.astype(np.uint8).tobytes()


def write_gz(path: Path, raw: bytes, *, upstream: bool = True) -> None:
    """gzip `raw` as upstream did (the file name and a time in the header) or as Debian's package
    holds it (neither name nor that time: another header, the same deflate stream)."""
    with open(path, "wb") as f, gzip.GzipFile(path.name[:-3] if upstream else "", "wb", fileobj=f,
                                              mtime=1504000000 if upstream else 1591347949) as g:
        g.write(raw)


def fashion_files(folder: Path, n_train: int = 12, n_test: int = 5, upstream: bool = True) -> dict[str, np.ndarray]:
    """The four idx.gz files with random pixels and labels 0..9 in turn; returns the arrays they hold."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n_train)
    truth = {}
    for split, n, (images, labels) in (("train", n_train, FILES[:2]), ("test", n_test, FILES[2:])):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) + 3) % 10
        write_gz(folder / images, idx(x), upstream=upstream)
        write_gz(folder / labels, idx(y), upstream=upstream)
        truth[split + "_x"], truth[split + "_y"] = x[:, None], y
    return truth


def point_at(monkeypatch, folder: Path, url: str = OFFLINE_URL) -> None:
    """Make Fashion-MNIST's sources the files in `folder` at `url`: their .gz MD5s and content MD5s."""
    sources = [Source(url + f, f, md5(folder / f), hashlib.md5(gzip.decompress((folder / f).read_bytes())).hexdigest())
               for f in FILES]
    monkeypatch.setitem(PREPARED, NAME, dataclasses.replace(PREPARED[NAME], sources=sources))


# --- the sources ------------------------------------------------------------------------------

def test_the_sources_are_zalandos_host_with_torchvisions_md5s_and_classes():
    from torchvision.datasets import FashionMNIST

    (mirror,) = FashionMNIST.mirrors
    assert mirror == fashion_mnist.URL == "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    assert [(s.url, s.filename, s.md5) for s in PREPARED[NAME].sources] == [
        (mirror + f, f, digest) for f, digest in FashionMNIST.resources]
    assert fashion_mnist.CLASSES == FashionMNIST.classes
    assert all(s.content_md5 and len(s.content_md5) == 32 for s in PREPARED[NAME].sources)


# --- small files --------------------------------------------------------------------------------

def test_idx_files_to_arrays(tmp_path, monkeypatch):
    truth = fashion_files(tmp_path / "raw")
    point_at(monkeypatch, tmp_path / "raw")
    meta = prepare(NAME, root=tmp_path / "raw", outputs=tmp_path / "out")
    assert (meta["train"], meta["test"], meta["shape"]) == (12, 5, [1, 28, 28])
    assert meta["classes"][0] == "T-shirt/top" and meta["classes"][9] == "Ankle boot" and meta["flip"]
    # matched by the .gz MD5 itself: no content MD5 recorded
    assert meta["sources"] == [{"file": str(tmp_path / "raw" / f), "md5": md5(tmp_path / "raw" / f)} for f in FILES]
    data = load_dataset(NAME, tmp_path / "out")
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert data.channels == 1 and data.image_size == 28 and data.num_classes == 10 and data.flip
    for key, array in truth.items():
        assert np.array_equal(getattr(data, key).numpy(), array), key


def test_a_copy_with_rewritten_gzip_headers_passes_by_its_content(tmp_path, monkeypatch):
    """Debian's package holds upstream's deflate streams under other gzip headers: other .gz MD5s,
    the same idx bytes. It gives the same arrays, and meta.json records what matched."""
    fashion_files(tmp_path / "upstream")
    point_at(monkeypatch, tmp_path / "upstream")
    fashion_files(tmp_path / "debian", upstream=False)
    for f in FILES:
        assert md5(tmp_path / "debian" / f) != md5(tmp_path / "upstream" / f)
    before = tree(tmp_path / "debian")
    meta = prepare(NAME, root=tmp_path / "debian", outputs=tmp_path / "a")
    assert tree(tmp_path / "debian") == before
    assert meta["fingerprint"] == prepare(NAME, root=tmp_path / "upstream", outputs=tmp_path / "b")["fingerprint"]
    assert meta["sources"] == [{"file": str(tmp_path / "debian" / f), "md5": md5(tmp_path / "debian" / f),
                                "content_md5": s.content_md5} for f, s in zip(FILES, PREPARED[NAME].sources)]


@pytest.mark.parametrize("victim", [FILES[0], FILES[3]])
def test_a_truncated_file_is_named_and_left_untouched(tmp_path, monkeypatch, victim):
    fashion_files(tmp_path / "raw")
    point_at(monkeypatch, tmp_path / "raw")
    path = tmp_path / "raw" / victim
    source = next(s for s in PREPARED[NAME].sources if s.filename == victim)
    path.write_bytes(path.read_bytes()[:-20])  # cuts the gzip trailer and some data
    before = tree(tmp_path / "raw")
    with pytest.raises(CorruptFile) as err:
        prepare(NAME, root=tmp_path / "raw", outputs=tmp_path / "out")
    msg = str(err.value)
    assert f"{path} has MD5 {md5(path)}, expected {source.md5} (or content MD5 {source.content_md5}" in msg
    assert "left untouched" in msg and "data.fashion_mnist.root" in msg and "\n" not in msg
    assert tree(tmp_path / "raw") == before and not (tmp_path / "out").exists()


def test_the_reader_checks_magic_sizes_and_labels(tmp_path):
    files = [tmp_path / f for f in FILES]
    fashion_files(tmp_path)
    write_gz(files[3], bytes([0, 0, 8, 3]) + idx(np.zeros(5))[4:])  # labels with the images' magic
    with pytest.raises(CorruptFile, match=f"{files[3]} is no idx file of 1 dimensions.*magic 00000803"):
        fashion_mnist.read(NAME, files)
    write_gz(files[3], idx(np.zeros(5))[:-1])  # one label short of its header
    with pytest.raises(CorruptFile, match=f"{files[3]} holds 4 data bytes, but its header says \\(5,\\)"):
        fashion_mnist.read(NAME, files)
    write_gz(files[3], idx(np.zeros(4)))  # 5 images, 4 labels
    with pytest.raises(CorruptFile, match=f"{files[2]} holds .*5, 28, 28.* and {files[3]} 4 labels"):
        fashion_mnist.read(NAME, files)
    write_gz(files[3], idx(np.full(5, 10)))
    with pytest.raises(CorruptFile, match=f"{files[3]} holds label 10, but there are 10 classes"):
        fashion_mnist.read(NAME, files)
    files[3].write_bytes(b"not gzip")
    with pytest.raises(CorruptFile, match=f"cannot read {files[3]} as a gzip file"):
        fashion_mnist.read(NAME, files)


def test_the_download_from_the_host_is_verified(tmp_path, monkeypatch):
    """The real download path (torchvision's download_url) against a local HTTP server, into the
    project's own folder; offline, the message names the file and the config key."""
    fashion_files(tmp_path / "served")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "served"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        point_at(monkeypatch, tmp_path / "served", url=f"http://127.0.0.1:{server.server_port}/")
        (tmp_path / "project").mkdir()
        monkeypatch.chdir(tmp_path / "project")
        assert prepare(NAME)["train"] == 12
        own = tmp_path / "project/resources/data/fashion_mnist"
        assert sorted(p.name for p in own.iterdir()) == sorted([*FILES, "meta.json", "test.npz", "train.npz"])
        assert all(md5(own / f) == md5(tmp_path / "served" / f) for f in FILES)
    finally:
        server.shutdown()
    (tmp_path / "offline").mkdir()
    monkeypatch.chdir(tmp_path / "offline")
    point_at(monkeypatch, tmp_path / "served")
    with pytest.raises(DatasetUnavailable) as err:
        prepare(NAME)
    msg = str(err.value)
    assert f"resources/data/fashion_mnist/{FILES[0]} does not exist and downloading {OFFLINE_URL}{FILES[0]}" in msg
    assert "data.fashion_mnist.root" in msg and "\n" not in msg
    assert list((tmp_path / "offline").iterdir()) == []


# --- the real files (Debian's dataset-fashion-mnist) ----------------------------------------------

@needs_debian
def test_the_debian_copy_gives_every_image_and_label_and_is_only_read(tmp_path):
    before = tree(DEBIAN)
    meta = prepare(NAME, root=DEBIAN, outputs=tmp_path / "out")
    assert tree(DEBIAN) == before
    assert (meta["train"], meta["test"], meta["shape"]) == (60_000, 10_000, [1, 28, 28])
    assert meta["classes"] == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                               "Bag", "Ankle boot"]
    assert meta["sources"] == [{"file": str(DEBIAN / s.filename), "md5": md5(DEBIAN / s.filename),
                                **({} if md5(DEBIAN / s.filename) == s.md5 else {"content_md5": s.content_md5})}
                               for s in PREPARED[NAME].sources]
    data = load_dataset(NAME, tmp_path / "out")
    assert data.train_x.shape == (60_000, 1, 28, 28) and data.test_x.shape == (10_000, 1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert torch.bincount(data.train_y).tolist() == [6000] * 10
    assert torch.bincount(data.test_y).tolist() == [1000] * 10
    assert data.train_x.max() == 255 and data.train_x.min() == 0


@needs_debian
def test_a_truncated_copy_of_a_debian_file_is_named(tmp_path):
    copy = Path(shutil.copytree(DEBIAN, tmp_path / "copy"))
    victim = copy / "t10k-images-idx3-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:1_000_000])
    with pytest.raises(CorruptFile, match=f"fashion_mnist: {victim} has MD5 {md5(victim)}, expected bef4ecab.* "
                                          "\\(or content MD5 8181f547.*data.fashion_mnist.root"):
        prepare(NAME, root=copy, outputs=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def run_workflow(folder: Path, config: dict, target: str) -> None:
    start = time.monotonic()
    proc = snakemake(folder, config, "--cores", "2", target)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"snakemake {target}: {time.monotonic() - start:.0f} s")


def first_images(stage: Path, folder: Path, n_train: int, n_test: int) -> dict:
    """A prepared folder (a recipe's `data_root`) of the data stage's first images: its arrays,
    and its meta.json with their counts and fingerprint."""
    meta = json.loads((stage / "meta.json").read_text())
    with np.load(stage / "train.npz") as train, np.load(stage / "test.npz") as test:
        arrays = Arrays(train["x"][:n_train], train["y"][:n_train], test["x"][:n_test], test["y"][:n_test],
                        classes=meta["classes"])
    folder.mkdir()
    np.savez(folder / "train.npz", x=arrays.train_x, y=arrays.train_y)
    np.savez(folder / "test.npz", x=arrays.test_x, y=arrays.test_y)
    meta |= {"train": n_train, "test": n_test, "fingerprint": fingerprint(arrays, meta["flip"])}
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta


@needs_debian
def test_one_epoch_of_both_arms_through_the_workflow(tmp_path):
    """The workflow's data stage on the Debian copy, then one epoch of default and mimetic (seed 0)
    and the tables, in about 40 s on 2 cores: the runs read (`data_root`) the stage's first 3,000
    training and 1,000 test images, in batches of 32 (the whole set would take five minutes;
    config/fashion.yaml trains on it, README)."""
    experiment = {"dataset": NAME, "model": "vit_fashion_patch4_28", "epochs": 1, "warmup_epochs": 0,
                  "batch_size": 32, "gpus": 0}
    config = {"seeds": [0], "arms": {"default": {"init": "default"}, "mimetic": {"init": "mimetic"}},
              "experiments": {"fashion": experiment}, "data": {NAME: {"root": str(DEBIAN)}}, "threads_per_run": 1}
    run_workflow(tmp_path, config, "resources/data/fashion_mnist/meta.json")
    stage = tmp_path / "resources/data/fashion_mnist"
    meta = json.loads((stage / "meta.json").read_text())
    assert meta["train"] == 60_000 and meta["sources"][0]["file"] == str(DEBIAN / FILES[0])

    part = first_images(stage, tmp_path / "part", 3_000, 1_000)
    experiment["data_root"] = str(tmp_path / "part")
    run_workflow(tmp_path, config, "tables")
    runs = pd.read_csv(tmp_path / "results/tables/runs.csv")
    assert sorted(runs["arm"]) == ["default", "mimetic"] and set(runs["seed"]) == {0}
    for arm in ("default", "mimetic"):
        folder = tmp_path / f"results/runs/fashion/{arm}/seed0"
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["data_fingerprint"] == part["fingerprint"] != meta["fingerprint"]
        metrics = pd.read_csv(folder / "metrics.csv")
        assert metrics["epoch"].tolist() == [1]
        assert metrics["test_acc"].iloc[0] > 25  # 94 steps: 32 % default, 56 % mimetic here; chance is 10 %
