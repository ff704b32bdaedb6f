"""Text data: a character-level language-model corpus (`text:FILE`) and a text-classification
CSV (`csv:FILE` with `text` and `label` columns).

Vocabularies are built from the training split only and travel in the checkpoint, so evaluation
maps text to the same ids the model was trained with. Tokens never seen in training map to <unk>.
"""

from __future__ import annotations

import collections
import csv
import io
import os
import re
from pathlib import Path
from typing import Sequence

import torch

from ..errors import DataError
from .base import DataBundle, DataSpec, TensorSplit, stratified_split

PAD, UNK = "<pad>", "<unk>"
VAL_FRACTION = 0.1
SPLIT_SEED = 1234
DEFAULT_LM_SEQ_LEN = 128
MAX_CLASSIFY_SEQ_LEN = 256
MAX_WORD_VOCAB = 50_000
_WORD = re.compile(r"\w+|[^\w\s]")


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a text file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if b"\x00" in raw[:4096]:
        raise DataError(f"{path}: looks like a binary file, expected UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 text (byte {exc.start}: {exc.reason})") from None


def encode(tokens: Sequence[str], stoi: dict[str, int]) -> list[int]:
    unk = stoi[UNK]
    return [stoi.get(t, unk) for t in tokens]


def load_char_lm(path: str | os.PathLike, seq_len: int | None = None, vocab: list[str] | None = None) -> DataBundle:
    """Character-level LM: the first 90% of the file trains, the last 10% validates.

    Each example is a window of seq_len characters and its targets the same window shifted by one.
    `vocab` (from a checkpoint) replaces the vocabulary built from the training text.
    """
    path = Path(path)
    seq_len = seq_len or DEFAULT_LM_SEQ_LEN
    if seq_len < 1:
        raise DataError(f"{path}: seq_len must be at least 1, got {seq_len}")
    text = _read_text(path)
    if not text:
        raise DataError(f"{path}: file is empty")
    n_val = max(seq_len + 1, int(len(text) * VAL_FRACTION))
    if len(text) < n_val + seq_len + 1:
        raise DataError(f"{path}: {len(text)} characters is too short for a training and a validation window "
                        f"of seq_len={seq_len} (need at least {n_val + seq_len + 1}); use a longer file or a "
                        f"smaller seq_len")
    train_text, val_text = text[:-n_val], text[-n_val:]
    if vocab is None:
        vocab = [UNK] + sorted(set(train_text))
    stoi = {t: i for i, t in enumerate(vocab)}
    if UNK not in stoi:
        raise DataError(f"{path}: the vocabulary has no {UNK} token")

    def windows(part: str) -> TensorSplit:
        ids = torch.tensor(encode(part, stoi), dtype=torch.long)
        n = (ids.numel() - 1) // seq_len
        x = ids[: n * seq_len].view(n, seq_len)
        y = ids[1 : n * seq_len + 1].view(n, seq_len)
        return TensorSplit(x, y)

    splits = {"train": windows(train_text), "val": windows(val_text)}
    spec = DataSpec("tokens", "lm", (seq_len,), len(vocab), vocab_size=len(vocab), pad_index=None)
    return DataBundle(f"text:{path}", spec, splits, vocab=vocab, source=str(path),
                      meta={"seq_len": seq_len, "characters": len(text)})


def tokenize_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def read_label_csv(path: Path) -> tuple[list[str], list[str]]:
    """(texts, labels) from a CSV with a header naming `text` and `label` columns."""
    content = _read_text(path)
    if not content.strip():
        raise DataError(f"{path}: file is empty (expected a CSV with a header row: text,label)")
    reader = csv.reader(io.StringIO(content))
    try:
        header = [h.strip().lower() for h in next(reader)]
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
    if "text" not in header or "label" not in header:
        raise DataError(f"{path}: the header row must name a 'text' and a 'label' column, got {header}")
    ti, li = header.index("text"), header.index("label")
    texts, labels = [], []
    for lineno, row in enumerate(rows, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}: line {lineno} has {len(row)} fields, the header has {len(header)}")
        if not row[li].strip():
            raise DataError(f"{path}: line {lineno} has an empty label")
        texts.append(row[ti])
        labels.append(row[li].strip())
    if not texts:
        raise DataError(f"{path}: no data rows after the header")
    return texts, labels


def load_csv_classify(path: str | os.PathLike, seq_len: int | None = None, vocab: list[str] | None = None,
                      classes: list[str] | None = None) -> DataBundle:
    """Word-level text classification; 10% of every class (stratified) validates.

    Sequences are left-padded with <pad> (id 0) to seq_len (default: the longest training text,
    at most 256 tokens), so the last step of a sequence is always its last real token.
    """
    path = Path(path)
    texts, labels = read_label_csv(path)
    if classes is None:
        classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(f"{path}: need at least 2 distinct labels to classify, found {classes}")
    cls_index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(cls_index))
    if unknown:
        raise DataError(f"{path}: labels {unknown[:5]} are not among the model's classes {classes[:20]}")
    y = torch.tensor([cls_index[l] for l in labels], dtype=torch.long)
    keep, held = stratified_split(y, VAL_FRACTION, SPLIT_SEED)
    tokens = [tokenize_words(t) for t in texts]
    if vocab is None:
        counts = collections.Counter(tok for i in keep.tolist() for tok in tokens[i])
        vocab = [PAD, UNK] + [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:MAX_WORD_VOCAB]
    stoi = {t: i for i, t in enumerate(vocab)}
    if stoi.get(PAD) != 0 or UNK not in stoi:
        raise DataError(f"{path}: the vocabulary must start with {PAD} and contain {UNK}")
    if seq_len is None:
        seq_len = max(1, min(MAX_CLASSIFY_SEQ_LEN, max(len(tokens[i]) for i in keep.tolist())))
    x = torch.zeros(len(tokens), seq_len, dtype=torch.long)
    for i, toks in enumerate(tokens):
        ids = encode(toks[-seq_len:], stoi)
        if ids:
            x[i, seq_len - len(ids):] = torch.tensor(ids, dtype=torch.long)
    splits = {"train": TensorSplit(x[keep], y[keep]), "val": TensorSplit(x[held], y[held])}
    spec = DataSpec("tokens", "classify", (seq_len,), len(classes), vocab_size=len(vocab), pad_index=0)
    return DataBundle(f"csv:{path}", spec, splits, classes=list(classes), vocab=vocab, source=str(path),
                      meta={"seq_len": seq_len, "rows": len(texts)})
