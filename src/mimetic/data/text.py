"""Text corpora for the language-model experiment: a corpus as token ids, split by a fixed rule
(the data stage writes them once, `prepare_text`; a run reads them, `load_tokens`), and the
windows a step trains on or the validation is measured over.

Corpora (`TEXT_DATASETS`): "shakespeare_char", Tiny Shakespeare (nanoGPT's shakespeare_char);
"wikitext103", WikiText-103 raw; "text", any UTF-8 text file of yours (never downloaded). Their
upstream files are found, verified and downloaded by `mimetic.data._text_sources`.

Tokenizers (`TOKENIZERS`): "char", the corpus' own characters in code-point order (nanoGPT's
shakespeare_char); "byte", its UTF-8 bytes (vocabulary 256, any text, no files); "gpt2", GPT-2's
byte-level BPE (50,257 tokens) through `transformers`, from the hub or a folder of its files. The
split is nanoGPT's, the first 90% of the tokens train and the rest validate, except for WikiText,
which has its own (wiki.train.raw, wiki.valid.raw). A training step's windows come from
(seed, step) alone, so a resumed run draws the batches it would have drawn; the validation split
is read whole, in fixed non-overlapping windows.

The config check imports this module: torch and transformers load on first use only.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mimetic import hub
from mimetic.data import _text_sources as sources
from mimetic.data.core import DATA_DIR, CorruptFile, DatasetError, DatasetUnavailable, Fingerprint

if TYPE_CHECKING:
    import torch

TEXT_DATASETS = ("shakespeare_char", "text", "wikitext103")
TOKENIZERS = ("char", "byte", "gpt2")
VAL_FRACTION = 0.1  # nanoGPT's shakespeare_char: 90% train, 10% validation
GPT2_HUB_ID = "openai-community/gpt2"
GPT2_KEY = "data.gpt2_tokenizer.root"
TEXT_FILES = {"tokens": "tokens-{tokenizer}.npz", "meta": "tokens-{tokenizer}.json"}

# Each split's tokens where they are known before any download, for the config check.
# shakespeare_char: nanoGPT's data/shakespeare_char/prepare.py prints train 1,003,854 and val
# 111,540 tokens of its 1,115,394 characters, all ASCII, so bytes alike; its
# data/shakespeare/prepare.py gives GPT-2's 301,966 + 36,059 = 338,025 tokens, split there by
# characters, here 90/10 by tokens (a token or so may differ at the cut).
# wikitext103: Merity et al. 2016, Table 1: 103,227,021 and 217,646 words (newlines counted);
# every word is at least one character, byte or GPT-2 token, so these are lower bounds.
KNOWN_SPLITS = {
    ("shakespeare_char", "char"): (1_003_854, 111_540),
    ("shakespeare_char", "byte"): (1_003_854, 111_540),
    ("shakespeare_char", "gpt2"): (304_222, 33_803),
    **{("wikitext103", t): (103_227_021, 217_646) for t in TOKENIZERS},
}
SPLIT_RULES = {"text": f"the first {1 - VAL_FRACTION:.0%} of the tokens train, the rest validate (nanoGPT's)",
               "splits": "the corpus' own splits: wiki.train.raw trains, wiki.valid.raw validates (wiki.test.raw "
                         "is not read)"}


@dataclass(frozen=True)
class TextData:
    """A text's train and validation tokens and its vocabulary."""

    train: np.ndarray  # int64 token ids
    val: np.ndarray
    tokenizer: str
    vocab: str | None  # "char": the characters, id i = vocab[i]; "byte", "gpt2": None
    # "char" and "byte" imply it; "gpt2" must give it (the tokenizer's, 50,257 for GPT-2's own).
    vocab_size: int | None = None
    tokenizer_source: str | None = None  # "gpt2": its folder or hub id, for decode

    def __post_init__(self) -> None:
        implied = {"char": len(self.vocab or ""), "byte": 256}.get(self.tokenizer)
        if self.vocab_size is None and implied is None:
            raise ValueError(f"TextData: tokenizer {self.tokenizer!r} needs its vocab_size")
        if implied is not None and self.vocab_size not in (None, implied):
            raise ValueError(f"TextData: vocab_size {self.vocab_size} disagrees with the {self.tokenizer!r} "
                             f"vocabulary ({implied})")
        object.__setattr__(self, "vocab_size", self.vocab_size or implied)  # frozen: set once, here

    def decode(self, ids: np.ndarray) -> str:
        if self.tokenizer == "gpt2":
            if self.tokenizer_source is None:
                raise ValueError("TextData.decode: gpt2 tokens need their tokenizer_source")
            return _gpt2(self.tokenizer_source).decode(np.asarray(ids).tolist())
        if self.vocab is None:
            return bytes(ids.astype(np.uint8).tolist()).decode("utf-8", errors="replace")
        return "".join(self.vocab[i] for i in ids)


def _file_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"text file {str(path)!r} does not exist; give the path of a UTF-8 text file"
    if path.stat().st_size == 0:
        return f"text file {str(path)!r} is empty"
    return None


def read_text(path: str | os.PathLike, tokenizer: str = "char", key: str = "text.root") -> str | bytes:
    """The text of `path`: its raw bytes for "byte", else decoded UTF-8. DatasetError naming the
    config `key` for a missing, empty or (but for "byte") undecodable file."""
    path = Path(path)
    problem = _file_problem(path)
    if problem:
        raise DatasetError(f"{key}: {problem}")
    raw = path.read_bytes()
    if tokenizer == "byte":
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{key}: {str(path)!r} is not UTF-8 text ({e.reason} at byte {e.start}); convert it, "
                           "or train on its bytes (tokenizer: byte)") from None


# --- tokenizing, block by block -----------------------------------------------------------------

Blocks = Callable[[], Iterable[str | bytes]]  # a part of a corpus, read anew at each call
_CODEPOINTS = 0x110000
# A cut before a space or newline that follows a non-space is a boundary of GPT-2's pre-tokenizer
# whatever surrounds it (a token never holds a non-space and then whitespace; its regex looks
# ahead only within whitespace), so text cut there encodes exactly as it does whole.
_SAFE_CUT = re.compile(r"(?<=\S)[ \n]")
_PIECE = 1 << 16  # characters per piece of text the BPE encodes, 64 pieces per batch


@dataclass(frozen=True)
class _Encoded:
    ids: list[np.ndarray]  # one per part: uint16 where the vocabulary fits, else int32
    vocab: str | None
    vocab_size: int
    tokenizer_source: str | None = None


def _dtype(vocab_size: int) -> type[np.integer]:
    return np.uint16 if vocab_size <= 1 << 16 else np.int32


def _concat(arrays: Iterable[np.ndarray], dtype: type[np.integer]) -> np.ndarray:
    arrays = list(arrays)
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def _slices(text: str | bytes, size: int = sources.BLOCK) -> Iterator[str | bytes]:
    return (text[i:i + size] for i in range(0, len(text), size))


def _pieces(blocks: Iterable[str], size: int = _PIECE) -> Iterator[str]:
    """The text of `blocks` in pieces of about `size` characters, cut where the BPE's pre-tokenizer
    cuts anyway (_SAFE_CUT); text with no such place in it stays one piece."""
    carry = ""
    for block in blocks:
        carry += block
        start = 0
        while len(carry) - start > size:
            cut = _SAFE_CUT.search(carry, start + size)
            if cut is None:
                break
            yield carry[start:cut.start()]
            start = cut.start()
        carry = carry[start:]
    if carry:
        yield carry


def _batches(items: Iterable[str], n: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _has_tokenizer_files(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or ((folder / "vocab.json").is_file()
                                                     and (folder / "merges.txt").is_file())


def _gpt2_source(tokenizer_root: str | os.PathLike | None) -> str:
    """The hub id, or the folder of GPT-2's tokenizer files checked to hold them (transformers
    would read a folder that does not exist as a hub id)."""
    if tokenizer_root is None:
        return GPT2_HUB_ID
    folder = Path(tokenizer_root).expanduser()
    if not _has_tokenizer_files(folder):
        raise DatasetUnavailable(f"{GPT2_KEY}: {str(folder)!r} holds neither tokenizer.json nor vocab.json with "
                                 f"merges.txt; give the folder of GPT-2's tokenizer files, or leave it unset to use "
                                 f"{GPT2_HUB_ID!r} from the Hugging Face hub (or its cache)")
    return str(folder)


@functools.lru_cache(maxsize=2)
def _gpt2(source: str) -> Any:
    """GPT-2's tokenizer (transformers' fast one) from a folder or the hub id."""
    from transformers import GPT2TokenizerFast

    hint = (f"download it once where there is internet (transformers.AutoTokenizer.from_pretrained({GPT2_HUB_ID!r})"
            f"), or set {GPT2_KEY} to a folder with vocab.json and merges.txt (or tokenizer.json)")
    try:
        tok = GPT2TokenizerFast.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise DatasetUnavailable(f"{GPT2_KEY}: cannot load GPT-2's tokenizer from {source!r} "
                                 f"({str(e).splitlines()[0]}); {hint}") from e
    # transformers 5 returns an empty tokenizer, not an error, when the hub's files cannot be had.
    if len(tok) <= 256:
        raise DatasetUnavailable(f"{GPT2_KEY}: the tokenizer loaded from {source!r} has {len(tok)} tokens, not a "
                                 f"byte-level BPE's vocabulary (its files were not found); {hint}")
    return tok


def _encode(parts: list[Blocks], tokenizer: str, tokenizer_root: str | os.PathLike | None = None) -> _Encoded:
    """Each part's token ids, one vocabulary for all; the text is read block by block, so memory
    holds the ids, never the whole text (WikiText-103's training text is 540 MB)."""
    if tokenizer == "byte":
        return _Encoded([_concat((np.frombuffer(b, np.uint8).astype(np.uint16) for b in part()), np.uint16)
                         for part in parts], None, 256)
    if tokenizer == "char":
        # Two passes: every character of the corpus is in the vocabulary, sorted, before ids are given.
        seen = np.zeros(_CODEPOINTS, dtype=bool)
        for part in parts:
            for block in part():
                seen[_codepoints(block)] = True
        codes = np.flatnonzero(seen)
        dtype = _dtype(len(codes))
        lookup = np.zeros(_CODEPOINTS, dtype=dtype)
        lookup[codes] = np.arange(len(codes))
        return _Encoded([_concat((lookup[_codepoints(b)] for b in part()), dtype) for part in parts],
                        "".join(map(chr, codes.tolist())), len(codes))
    if tokenizer == "gpt2":
        source = _gpt2_source(tokenizer_root)
        tok = _gpt2(source)
        dtype, ids = _dtype(len(tok)), []
        for part in parts:
            chunks = []
            for batch in _batches(_pieces(part()), 64):
                encodings = tok.backend_tokenizer.encode_batch(batch, add_special_tokens=False)
                chunks += [np.asarray(e.ids, dtype=dtype) for e in encodings]
            ids.append(_concat(chunks, dtype))
        return _Encoded(ids, None, len(tok), source)
    raise ValueError(f"tokenizer={tokenizer!r}: choose one of {TOKENIZERS}")


def _check_tokenizer(tokenizer: str) -> None:
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer={tokenizer!r}: choose one of {TOKENIZERS}")


def tokenize(text: str | bytes, tokenizer: str, tokenizer_root: str | os.PathLike | None = None) -> tuple[
        np.ndarray, str | None]:
    """(int64 token ids, vocabulary) of `text` (bytes for "byte"); "gpt2" reads its files from
    `tokenizer_root` (default: the hub id, or its cache)."""
    _check_tokenizer(tokenizer)
    text = text.encode("utf-8") if tokenizer == "byte" and isinstance(text, str) else text
    encoded = _encode([lambda: _slices(text)], tokenizer, tokenizer_root)
    return encoded.ids[0].astype(np.int64), encoded.vocab


def _split(ids: np.ndarray, what: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    cut = int(len(ids) * (1 - VAL_FRACTION))
    if cut < 2 or len(ids) - cut < 2:
        raise DatasetError(f"{key}: {what} has {len(ids)} tokens, too few to split into training and validation text")
    return ids[:cut], ids[cut:]


def load_text(path: str | os.PathLike, tokenizer: str = "char", key: str = "text.root",
              tokenizer_root: str | os.PathLike | None = None) -> TextData:
    """The text at `path`, tokenized and split: the first 90% of its tokens train, the rest validate."""
    _check_tokenizer(tokenizer)
    text = read_text(path, tokenizer, key)
    encoded = _encode([lambda: _slices(text)], tokenizer, tokenizer_root)
    train, val = _split(encoded.ids[0].astype(np.int64), repr(str(path)), key)
    return TextData(train, val, tokenizer, encoded.vocab, encoded.vocab_size, encoded.tokenizer_source)


# --- the data stage -----------------------------------------------------------------------------

def text_stage_files(dataset: str, tokenizer: str) -> dict[str, str]:
    """key -> the data stage's file of `dataset`'s tokens by `tokenizer` (the workflow's rule outputs;
    wildcards pass through)."""
    return {key: f"{DATA_DIR}/{dataset}/{name.format(tokenizer=tokenizer)}" for key, name in TEXT_FILES.items()}


def _blocks(opener: sources.Opener, tokenizer: str, what: str, key: str) -> Blocks:
    if tokenizer == "byte":
        return lambda: sources.byte_blocks(opener)
    return lambda: sources.text_blocks(opener, what, key)


def fingerprint(train: np.ndarray, val: np.ndarray, tokenizer: str, vocab: str | None, vocab_size: int) -> str:
    """The tokens as a run reads them: both splits' arrays as written, then the tokenizer and its
    vocabulary ("char" ids alone would make "abab" and "cdcd" one text); not the corpus' path."""
    fp = Fingerprint("mimetic.data.text/v1").add_array(train).add_array(val)
    return fp.add({"tokenizer": tokenizer, "vocab": vocab, "vocab_size": vocab_size}).hexdigest()


def prepare_text(dataset: str, root: str | os.PathLike | None, tokenizer: str, outputs: Mapping[str, str | os.PathLike],
                 tokenizer_root: str | os.PathLike | None = None) -> dict:
    """The data stage of a corpus: find and verify its files in `root` (a folder; for "text" the
    file itself; None: the project's own folder, the only one downloaded into), tokenize it, write
    `outputs["tokens"]` (.npz: `train`, `val`) and then `outputs["meta"]` (JSON, last). Nothing is
    written beside the corpus. Returns the metadata."""
    from mimetic import io  # pandas: not for the config check, which imports this module
    if dataset not in TEXT_DATASETS:
        raise ValueError(f"unknown text dataset {dataset!r}; choose one of {TEXT_DATASETS}")
    _check_tokenizer(tokenizer)
    key = sources.config_key(dataset)
    if dataset == "text":
        if root is None:
            raise DatasetUnavailable(f"{key}: set it to your UTF-8 text file")
        path = Path(root).expanduser()
        problem = _file_problem(path)
        if problem:
            raise DatasetUnavailable(f"{key}: {problem}")
        found = sources.Located({"text": lambda: sources.open_file(path)}, {"text": str(path)},
                                [{"file": str(path), "sha256": sources.sha256(path), "verified": False}])
    else:
        found = sources.locate(dataset, root)
    parts = [_blocks(opener, tokenizer, repr(found.names[part]), key) for part, opener in found.parts.items()]
    encoded = _encode(parts, tokenizer, tokenizer_root)
    if "text" in found.parts:
        train, val = _split(encoded.ids[0], repr(found.names["text"]), key)
    else:
        train, val = encoded.ids
    with io.atomic_path(outputs["tokens"]) as tmp, open(tmp, "wb") as f:
        np.savez(f, train=train, val=val)  # a file object: np.savez would append .npz to a name
    meta = {"dataset": dataset, "tokenizer": tokenizer, "vocab_size": encoded.vocab_size, "vocab": encoded.vocab,
            "tokenizer_source": encoded.tokenizer_source, "dtype": str(train.dtype),
            "counts": {"train": len(train), "val": len(val)},
            "split": SPLIT_RULES["text" if "text" in found.parts else "splits"], "sources": found.sources,
            "fingerprint": fingerprint(train, val, tokenizer, encoded.vocab, encoded.vocab_size)}
    io.write_json(outputs["meta"], meta)
    return meta


def load_tokens(tokens_path: str | os.PathLike, meta_path: str | os.PathLike) -> TextData:
    """The data stage's tokens of a corpus (int64), with their tokenizer and vocabulary."""
    tokens_path, meta_path = Path(tokens_path), Path(meta_path)
    for path in (meta_path, tokens_path):
        if not path.is_file():
            raise DatasetUnavailable(f"{path} does not exist: the corpus is not prepared. Run the data stage "
                                     f"(`snakemake --cores 1 {meta_path}`, or `python -m mimetic prepare <corpus> "
                                     f"--tokenizer <tokenizer> --tokens {tokens_path} --meta {meta_path}`)")
    meta = json.loads(meta_path.read_text())
    with np.load(tokens_path) as z:
        train, val = z["train"].astype(np.int64), z["val"].astype(np.int64)
    counts, size = meta["counts"], meta["vocab_size"]
    if (len(train), len(val)) != (counts["train"], counts["val"]) or max(train.max(initial=0),
                                                                         val.max(initial=0)) >= size:
        raise CorruptFile(f"{tokens_path} does not match {meta_path} ({len(train)} and {len(val)} tokens, "
                          f"{counts['train']} and {counts['val']} expected, ids below {size}); run the data stage "
                          "again to write both anew")
    return TextData(train, val, meta["tokenizer"], meta["vocab"], size, meta.get("tokenizer_source"))


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
    starts = torch.randint(0, len(tokens) - context, (batch,), generator=gen)
    if tokens.is_cuda:  # pinned and not blocking: a pageable copy would wait for the queued steps
        starts = starts.pin_memory()
    starts = starts.to(tokens.device, non_blocking=True)
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


# --- the config check ---------------------------------------------------------------------------

def _gpt2_problem(tokenizer_root: str | os.PathLike | None) -> str | None:
    """Why GPT-2's tokenizer files cannot be had: not in the folder given, or neither in the hub
    cache nor downloadable. Checks the cache by hand, as huggingface_hub lays it out."""
    if tokenizer_root is not None:
        folder = Path(tokenizer_root).expanduser()
        if _has_tokenizer_files(folder):
            return None
        return (f"{str(folder)!r} holds neither tokenizer.json nor vocab.json with merges.txt; give the folder of "
                f"GPT-2's tokenizer files, or leave it unset to use {GPT2_HUB_ID!r} from the Hugging Face hub")
    if any(_has_tokenizer_files(snapshot) for snapshot in hub.snapshots(GPT2_HUB_ID).glob("*")):
        return None
    why = hub.unreachable(GPT2_HUB_ID)
    if why is None:
        return None
    return (f"GPT-2's tokenizer {GPT2_HUB_ID!r} is not in the hub cache {hub.cache_dir()} and cannot be downloaded "
            f"({why}); download it once where there is internet (transformers.AutoTokenizer.from_pretrained("
            f"{GPT2_HUB_ID!r})), or set {GPT2_KEY} to a folder with vocab.json and merges.txt (or tokenizer.json)")


def _text_file_problem(root: str | os.PathLike | None, tokenizer: str, key: str) -> str | int | None:
    """What is wrong with the "text" file at `root`, else its length in `tokenizer`'s tokens (None: not
    known before tokenizing, for "gpt2")."""
    if root is None:
        return "set it to your UTF-8 text file"
    path = Path(root).expanduser()
    problem = _file_problem(path)
    if problem:
        return problem
    if tokenizer == "byte":
        return path.stat().st_size
    try:  # block by block: a large file is decoded, never held
        chars = sum(len(block) for block in sources.text_blocks(lambda: sources.open_file(path), repr(str(path)),
                                                                  key))
    except DatasetError as e:
        return str(e).removeprefix(f"{key}: ")
    return chars if tokenizer == "char" else None


def text_problem(dataset: str, root: str | None, tokenizer: str, context: int,
                 tokenizer_root: str | None = None) -> tuple[str, str] | None:
    """(config key, what is wrong) where the data stage or a run of `dataset` by `tokenizer` with
    windows of `context` tokens would fail, before any job; None where they can run. Imports
    neither torch nor transformers and downloads nothing; reads a "text" file once, block by block."""
    if tokenizer not in TOKENIZERS:
        return "tokenizer", f"{tokenizer!r} is not a tokenizer; choose one of {', '.join(TOKENIZERS)}"
    if dataset not in TEXT_DATASETS:
        raise ValueError(f"unknown text dataset {dataset!r}; choose one of {TEXT_DATASETS}")
    key = sources.config_key(dataset)
    if dataset == "text":
        length = _text_file_problem(root, tokenizer, key)
        if isinstance(length, str):
            return key, length
        cut = None if length is None else int(length * (1 - VAL_FRACTION))
        splits = None if length is None else (cut, length - cut)
    else:
        if root is not None and not sources.is_own_folder(dataset, Path(root).expanduser()):
            absent = sources.missing(dataset, Path(root).expanduser())
            if absent:
                return key, (f"{absent}; point it at a folder that holds {sources.wanted(sources.SOURCES[dataset])}, "
                             f"or leave it unset: the data stage downloads it into {sources.own_folder(dataset)}")
        splits = KNOWN_SPLITS[(dataset, tokenizer)]
    if tokenizer == "gpt2":
        problem = _gpt2_problem(tokenizer_root)
        if problem:
            return GPT2_KEY, problem
    if splits is not None and context + 1 > min(splits):
        which = "validation" if splits[1] <= splits[0] else "training"
        bound = "at least " if dataset == "wikitext103" else ""  # its sizes are known in words only
        return "context", (f"{context}: longer than the {which} split of {dataset} ({bound}{min(splits):,} "
                           f"{tokenizer} tokens); use a shorter context or a longer text")
    return None
