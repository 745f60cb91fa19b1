"""Text corpora for the language-model experiment: a text as token ids, split by a fixed rule,
and the windows a step trains on or the validation is measured over.

Tokenizers (`TOKENIZERS`): "char", the corpus' own characters in code-point order (nanoGPT's
shakespeare_char), and "byte", its UTF-8 bytes (vocabulary 256, any text, no files). The split
is nanoGPT's: the first 90% of the tokens train, the rest validate. A training step's windows
come from (seed, step) alone, so a resumed run draws the batches it would have drawn; the
validation split is read whole, in fixed non-overlapping windows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mimetic.data.core import DatasetError

if TYPE_CHECKING:
    import torch

TOKENIZERS = ("char", "byte")
VAL_FRACTION = 0.1  # nanoGPT's shakespeare_char: 90% train, 10% validation


@dataclass(frozen=True)
class TextData:
    """A text's train and validation tokens and its vocabulary."""

    train: np.ndarray  # int64 token ids
    val: np.ndarray
    tokenizer: str
    vocab: str | None  # "char": the characters, id i = vocab[i]; "byte": None (id = the byte)

    @property
    def vocab_size(self) -> int:
        return 256 if self.vocab is None else len(self.vocab)

    def decode(self, ids: np.ndarray) -> str:
        if self.vocab is None:
            return bytes(ids.astype(np.uint8).tolist()).decode("utf-8", errors="replace")
        return "".join(self.vocab[i] for i in ids)


def read_text(path: str | os.PathLike, tokenizer: str = "char", key: str = "text.root") -> str | bytes:
    """The text of `path`: decoded UTF-8 for "char", its raw bytes for "byte". DatasetError naming
    the config `key` for a missing, empty or (for "char") undecodable file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{key}: text file {str(path)!r} does not exist; give the path of a UTF-8 text file")
    raw = path.read_bytes()
    if not raw:
        raise DatasetError(f"{key}: text file {str(path)!r} is empty")
    if tokenizer == "byte":
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{key}: {str(path)!r} is not UTF-8 text ({e.reason} at byte {e.start}); convert it, "
                           "or train on its bytes (tokenizer: byte)") from None


def tokenize(text: str | bytes, tokenizer: str) -> tuple[np.ndarray, str | None]:
    """(token ids, vocabulary) of `text` (bytes for "byte")."""
    if tokenizer == "char":
        vocab = "".join(sorted(set(text)))
        lookup = {c: i for i, c in enumerate(vocab)}
        return np.fromiter((lookup[c] for c in text), dtype=np.int64, count=len(text)), vocab
    if tokenizer == "byte":
        raw = text.encode("utf-8") if isinstance(text, str) else text
        return np.frombuffer(raw, dtype=np.uint8).astype(np.int64), None
    raise ValueError(f"tokenizer={tokenizer!r}: choose one of {TOKENIZERS}")


def load_text(path: str | os.PathLike, tokenizer: str = "char", key: str = "text.root") -> TextData:
    """The text at `path`, tokenized and split: the first 90% of its tokens train, the rest validate."""
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer={tokenizer!r}: choose one of {TOKENIZERS}")
    ids, vocab = tokenize(read_text(path, tokenizer, key), tokenizer)
    cut = int(len(ids) * (1 - VAL_FRACTION))
    if cut < 2 or len(ids) - cut < 2:
        raise DatasetError(f"{key}: {str(path)!r} has {len(ids)} tokens, too few to split into training and "
                           "validation text")
    return TextData(ids[:cut], ids[cut:], tokenizer, vocab)


def check_context(data: TextData, context: int, key: str = "context") -> None:
    """ValueError naming `key` unless both splits hold at least one window of `context` tokens and its target."""
    shortest = min(len(data.train), len(data.val))
    if context + 1 > shortest:
        raise ValueError(f"{key}={context}: longer than the text's shorter split ({shortest} tokens, "
                         f"{'validation' if len(data.val) <= len(data.train) else 'training'}); use a shorter "
                         "context or a longer text")


def train_windows(tokens: torch.Tensor, context: int, batch: int, seed: int, step: int) -> tuple[torch.Tensor,
                                                                                                 torch.Tensor]:
    """Step `step`'s (inputs, targets), each (batch, context): windows at offsets drawn from
    (seed, step) alone, on `tokens`' device; the targets are the inputs shifted by one."""
    import torch

    # One stream per (seed, step), whatever came before: numpy's SeedSequence mixes the pair.
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1, np.uint64)[0]))
    starts = torch.randint(0, len(tokens) - context, (batch,), generator=gen).to(tokens.device)
    index = starts[:, None] + torch.arange(context + 1, device=tokens.device)
    window = tokens[index]
    return window[:, :-1], window[:, 1:]


def eval_windows(tokens: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split in fixed non-overlapping windows of `context` tokens (inputs, targets);
    the tail shorter than a window is left out."""
    n = (len(tokens) - 1) // context
    return tokens[:n * context].view(n, context), tokens[1:n * context + 1].view(n, context)


def unigram_entropy(tokens: np.ndarray, vocab_size: int) -> float:
    """Entropy of the tokens' frequencies in nats: the loss of a model that ignores context."""
    counts = np.bincount(tokens, minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
