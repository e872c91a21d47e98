"""The 4M text tokenizer: WordPiece with 4M's fixed layout of special, sentinel, coordinate and class tokens.

One vocabulary serves every sequence modality (caption, det, metadata, color_palette, human_poses, sam_instance);
`text_layout` lists its fixed ids. A `TextTokenizer` loads the official 30k JSON of the released 4M-7 / 4M-21
models (a path to it, or a folder holding it) with identical ids, or a vocabulary trained here with
`train_text_tokenizer`, which keeps the same fixed ids and may add class names as single tokens after the 80 COCO
ones (the world's ``sphere``, ``torus``, ...). With the official vocabulary such names are ordinary words
(``torus`` -> ``tor ##us``); either way a name decodes back to itself.

How 4M writes a sequence for the model (``fourm/data/masking.py``): the text's WordPiece ids, **no [SOS]**, then
``[EOS]`` (id 3); a sequence longer than the modality's maximum is cut to the maximum *after* ``[EOS]`` is
appended, so a cut sequence has no ``[EOS]`` (its text goes on). `encode` does exactly this and, as configured,
warns with the number of tokens cut (``truncation="warn"``, a `TextTruncationWarning`) or raises
(``"error"``, a `TextTooLongError`).

A tokenizer folder is ``config.json`` (``_class_name``, ``max_length``, ``truncation``) + ``tokenizer.json`` (the HF
``tokenizers`` file) + ``README.md``; no weights.
"""

from __future__ import annotations

import codecs
import json
import string
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers.models import WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

from tokenizers import AddedToken, Tokenizer, decoders, trainers

from .. import config as config_lib
from .. import hub
from .base import CONFIG, TokenizerInputError, TokenizerLoadError, read_config
from .text_layout import (
    CLASS_BASE,
    COCO_CLASSES,
    EOS,
    NUM_FIXED,
    PAD,
    SERIALIZER_WORDS,
    SOS,
    SPECIAL_TOKENS,
    fixed_tokens,
    layout_mismatch,
)

TOKENIZER_FILE = "tokenizer.json"
TRUNCATION_MODES = ("warn", "error")


class TextTooLongError(TokenizerInputError):
    """A sequence longer than the modality allows, with ``truncation="error"``."""


class TextTruncationWarning(UserWarning):
    """A sequence was cut to the modality's maximum length (``truncation="warn"``)."""


@dataclass(frozen=True)
class TextTokenizerConfig:
    """max_length: tokens of an encoded sequence, [EOS] included (256: 4M's caption and det); truncation: what
    a longer sequence does, ``"warn"`` (cut, as 4M) or ``"error"``."""

    max_length: int = 256
    truncation: str = "warn"

    def __post_init__(self) -> None:
        if self.truncation not in TRUNCATION_MODES:
            raise ValueError(f"truncation must be one of {TRUNCATION_MODES}, got {self.truncation!r}")
        if not isinstance(self.max_length, int) or self.max_length < 1:
            raise ValueError(f"max_length must be a positive integer, got {self.max_length!r}")


class TextTokenizer:
    """WordPiece text tokenizer in 4M's layout (see the module docstring and `text_layout`).

    ``encode(texts) -> (B, max_length)`` int64 ids padded with [PAD]; ``encode_lists(texts)`` the same unpadded;
    ``decode(ids) -> list[str]``. ``vocab_size`` (30000 for the official file), ``num_tokens`` (= max_length).
    """

    def __init__(self, tokenizer: Tokenizer, cfg: TextTokenizerConfig | None = None) -> None:
        problem = layout_mismatch(tokenizer.id_to_token)
        if problem is not None:
            raise ValueError(f"not a 4M text vocabulary: {problem}")
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.hf = tokenizer  # the `tokenizers.Tokenizer` backend
        self.config = cfg or TextTokenizerConfig()
        self._pieces: dict[str, list[int]] = {}
        self._texts: dict[tuple[int, ...], str] = {}
        self._vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)  # slow to ask (builds the vocab)

    # ------------------------------------------------------------------------------------------ properties

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def num_tokens(self) -> int:
        return self.config.max_length

    @property
    def extra_classes(self) -> tuple[str, ...]:
        """Single-token class names after the 80 COCO ones (empty for the official vocabulary)."""
        added = self.hf.get_added_tokens_decoder()
        return tuple(added[i].content for i in sorted(added) if i >= NUM_FIXED)

    @property
    def class_names(self) -> tuple[str, ...]:
        return COCO_CLASSES + self.extra_classes

    def __repr__(self) -> str:
        extra = f", {len(self.extra_classes)} extra classes" if self.extra_classes else ""
        return f"TextTokenizer(vocab_size={self.vocab_size}, max_length={self.num_tokens}{extra})"

    # -------------------------------------------------------------------------------------------- encoding

    def tokenize(self, text: str) -> list[int]:
        """The WordPiece ids of ``text`` alone: no [EOS], no length limit."""
        return self.hf.encode(text).ids

    def piece_ids(self, piece: str) -> list[int]:
        """Ids of a word or phrase that serializers write between coordinate tokens (cached)."""
        ids = self._pieces.get(piece)
        if ids is None:
            ids = self._pieces[piece] = self.hf.encode(piece).ids
        return ids

    def encode_lists(self, texts: Sequence[str], *, max_length: int | None = None) -> list[list[int]]:
        """Each text as 4M feeds it to the model: ids + [EOS], cut to ``max_length`` (default: the config's)."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of strings, got a single str (wrap it in a list)")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TokenizerInputError(f"text {bad[0]} is a {type(texts[bad[0]]).__name__}, not a str")
        limit = self.config.max_length if max_length is None else max_length
        out = []
        for b, enc in enumerate(self.hf.encode_batch(list(texts))):
            ids = enc.ids + [EOS]
            if len(ids) > limit:
                self.overflow(f"text {b} is {len(ids)} tokens with [EOS], over the maximum of {limit}: "
                              f"cut by {len(ids) - limit} tokens (the cut sequence has no [EOS], as in 4M)")
                ids = ids[:limit]
            out.append(ids)
        return out

    def encode(self, texts: Sequence[str], *, max_length: int | None = None) -> torch.Tensor:
        """(B, max_length) int64: `encode_lists` padded with [PAD] (0)."""
        rows = self.encode_lists(texts, max_length=max_length)
        width = self.config.max_length if max_length is None else max_length
        out = torch.full((len(rows), width), PAD, dtype=torch.long)
        for b, ids in enumerate(rows):
            out[b, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def overflow(self, message: str) -> None:
        """Report a sequence that does not fit: a warning or a `TextTooLongError`, as configured."""
        if self.config.truncation == "error":
            raise TextTooLongError(message)
        warnings.warn(message, TextTruncationWarning, stacklevel=3)

    # -------------------------------------------------------------------------------------------- decoding

    def check_ids(self, ids) -> list[list[int]]:
        """(B, L) ids (tensor, array or lists) as lists of ints, or a TokenizerInputError naming the bad id."""
        if isinstance(ids, torch.Tensor) or hasattr(ids, "__array__"):
            t = torch.as_tensor(ids)
            if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
                raise TokenizerInputError(f"token ids must be integers, got {t.dtype}")
            if t.ndim != 2:
                raise TokenizerInputError(f"expected ids of shape (B, L), got {tuple(t.shape)}")
            rows = t.tolist()
        else:
            rows = [list(r) for r in ids]
        v = self.vocab_size
        for b, row in enumerate(rows):
            if row and not all(isinstance(i, int) for i in row):
                raise TokenizerInputError(f"sequence {b}: token ids must be integers, got {row!r:.80}")
            if row and (min(row) < 0 or max(row) >= v):
                j = next(j for j, i in enumerate(row) if not 0 <= i < v)
                raise TokenizerInputError(f"token id {row[j]} (sequence {b}, position {j}) is outside the vocabulary:"
                                          f" the text tokenizer has {v} ids (0 to {v - 1})")
        return rows

    def decode(self, ids) -> list[str]:
        """(B, L) ids -> B strings: each read up to its first [EOS], without [PAD] and [SOS]; sentinels, class names
        and coordinate tokens appear as their text (``[S_1]``, ``wine glass``, ``v0=12``)."""
        rows = []
        for row in self.check_ids(ids):
            if EOS in row:
                row = row[:row.index(EOS)]
            rows.append([i for i in row if i != PAD and i != SOS])
        return self.hf.decode_batch(rows, skip_special_tokens=False)

    def decode_piece(self, ids: Sequence[int]) -> str:
        """Text of a run of ids as they are (no [EOS] or [PAD] handling); ids must be valid. Cached: serializers
        decode the same class names and keywords over and over."""
        key = tuple(ids)
        text = self._texts.get(key)
        if text is None:
            if len(self._texts) > 100_000:  # model outputs can hold any runs: keep the cache bounded
                self._texts.clear()
            text = self._texts[key] = self.hf.decode(list(key), skip_special_tokens=False)
        return text

    # ---------------------------------------------------------------------------------------------- folders

    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.hf.save(str(path / TOKENIZER_FILE))
        data = {"_class_name": type(self).__name__, **config_lib.to_dict(self.config)}
        (path / CONFIG).write_text(json.dumps(data, indent=2) + "\n")
        extra = ", ".join(self.extra_classes) or "none"
        (path / "README.md").write_text(
            f"# 4M text tokenizer\n\nWordPiece, {self.vocab_size} ids, lower-cased BERT normalization. Fixed ids: "
            f"[PAD]=0 [UNK]=1 [SOS]=2 [EOS]=3, [S_0]..[S_199]=4..203, v0=0..v3=999=204..4203, the 80 COCO class "
            f"names=4204..4283.\nExtra single-token classes from {NUM_FIXED}: {extra}.\n\n"
            f"Load with `polymodal.tokenizers.text.TextTokenizer.from_pretrained(folder)`.\n")
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, *, max_length: int | None = None,
                        truncation: str | None = None) -> TextTokenizer:
        """A polymodal text tokenizer folder, a HF ``tokenizers`` JSON file (e.g. 4M's
        ``text_tokenizer_4m_wordpiece_30k.json``), a folder holding one such file, or a Hub repo id holding one
        (`polymodal.hub.resolve`). Keyword options override the folder's config."""
        file, settings = _resolve(hub.resolve(path, allow_patterns=("*.json", "*.md"), what="file or folder"))
        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as e:  # the Rust side raises plain Exceptions
            raise TokenizerLoadError(f"{file}: not a HF tokenizers JSON file ({e})") from None
        if max_length is not None:
            settings["max_length"] = max_length
        if truncation is not None:
            settings["truncation"] = truncation
        cfg = config_lib.from_dict(TextTokenizerConfig, settings, source=str(file))
        try:
            return cls(tok, cfg)
        except ValueError as e:
            raise ValueError(f"{file}: {e}") from None


def _resolve(path: Path) -> tuple[Path, dict]:
    """(tokenizer JSON file, config settings) of whatever `from_pretrained` was given."""
    if path.is_file():
        if path.name == CONFIG:
            return _resolve(path.parent)
        return path, {}
    if not path.is_dir():
        raise FileNotFoundError(f"text tokenizer {path}: no such file or folder")
    if (path / CONFIG).is_file():
        data = read_config(path)
        if data["_class_name"] != TextTokenizer.__name__:
            raise ValueError(f"{path} holds a {data['_class_name']}, not a TextTokenizer")
        if not (path / TOKENIZER_FILE).is_file():
            raise FileNotFoundError(f"{path}: no {TOKENIZER_FILE}")
        return path / TOKENIZER_FILE, {k: v for k, v in data.items() if not k.startswith("_")}
    for name in (TOKENIZER_FILE, hub.TEXT_TOKENIZER_FILE):  # ours, then 4M's (beside other JSON in a repo)
        if (path / name).is_file():
            return path / name, {}
    files = sorted(path.glob("*.json"))
    if len(files) == 1:
        return files[0], {}
    if not files:
        raise FileNotFoundError(f"{path}: no {TOKENIZER_FILE}, {CONFIG} or other tokenizer JSON file")
    raise ValueError(f"{path} holds several JSON files ({', '.join(f.name for f in files)}); "
                     "pass the tokenizer file itself")


# ----------------------------------------------------------------------------------------------- training


def normalize_class_name(name: str) -> str:
    """How a class name is matched: lower case, single spaces (what the BERT normalizer does to the text)."""
    return " ".join(str(name).lower().split())


def check_text_file(path: Path, *, chunk: int = 1 << 20) -> None:
    """A `ValueError` naming ``path`` and the first byte that is not UTF-8 text (a NUL, or a byte no UTF-8
    sequence allows): a binary file (a shard .tar, an image) given as a corpus. Reads 1 MB at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    done = 0  # bytes of the file before the current chunk
    with open(path, "rb") as fp:
        while True:
            data = fp.read(chunk)
            pending = len(decoder.getstate()[0])  # an unfinished sequence carried from the last chunk
            bad = []  # (offset in the file, what is there): the first one is named
            if (nul := data.find(0)) >= 0:  # valid UTF-8 but no text: tar headers, UTF-16
                bad.append((done + nul, "a NUL"))
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as e:
                bad.append((done - pending + e.start, f"0x{e.object[e.start]:02x}"))
            if bad:
                at, what = min(bad)
                raise ValueError(f"corpus file {path}: not UTF-8 text (byte {at} is {what}); give text files, one "
                                 "document per line")
            if not data:
                return
            done += len(data)


def train_text_tokenizer(files: Iterable[str | Path], *, vocab_size: int, extra_classes: Iterable[str] = (),
                         min_frequency: int = 0, max_length: int = 256, truncation: str = "warn",
                         show_progress: bool = False) -> TextTokenizer:
    """Train a WordPiece vocabulary on text files (one document per line) in 4M's layout.

    Ids 0..4283 are 4M's fixed tokens (identical to the official vocabulary); ``extra_classes`` become single
    tokens from id 4284 in the given order (names that are COCO classes already are skipped); the rest is
    learned. Lower-case ASCII letters, digits and punctuation are always in the alphabet, so a small corpus never
    turns a comma into [UNK], and the serializers' words (`SERIALIZER_WORDS`: ``human``, ``pose``, ``point``,
    ...) are whole-word pieces as in the official vocabulary (appended to the vocabulary when the corpus did not
    teach them; ``vocab_size`` counts them).
    """
    files = [Path(f) for f in files]
    missing = [str(f) for f in files if not f.is_file()]
    if not files or missing:
        raise FileNotFoundError(f"corpus file(s) not found: {', '.join(missing)}" if missing else "no corpus files")
    for f in files:  # before training: the trainer's own error names no file ("stream did not contain valid UTF-8")
        check_text_file(f)
    extras: list[str] = []
    fixed = set(fixed_tokens())
    for name in extra_classes:
        norm = normalize_class_name(name)
        if not norm or "[" in norm or norm.split("=")[0] in ("v0", "v1", "v2", "v3"):
            raise ValueError(f"extra class name {name!r} is empty or looks like a special or coordinate token")
        if norm not in fixed and norm not in extras:
            extras.append(norm)
    alphabet = list(string.ascii_lowercase + string.digits + string.punctuation)
    need = NUM_FIXED + len(extras) + len(alphabet) + len(SERIALIZER_WORDS)
    if vocab_size < need + 1:
        raise ValueError(f"vocab_size {vocab_size} leaves no room for learned pieces: the fixed tokens, "
                         f"{len(extras)} extra classes and the alphabet take {need}")

    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    special = [AddedToken(t, single_word=False, normalized=False, special=True) for t in SPECIAL_TOKENS]
    # Sentinels and coordinates: whole words, case-sensitive. Class names: whole words after lower-casing.
    special += [AddedToken(t, single_word=True, normalized=False, special=True)
                for t in fixed_tokens()[len(SPECIAL_TOKENS):CLASS_BASE]]
    special += [AddedToken(t, single_word=True, normalized=True, special=True) for t in (*COCO_CLASSES, *extras)]
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size - len(SERIALIZER_WORDS), min_frequency=min_frequency,
                                        show_progress=show_progress, special_tokens=special,
                                        initial_alphabet=alphabet, continuing_subword_prefix="##")
    tok.train([str(f) for f in files], trainer=trainer)
    tok = _with_whole_words(tok, SERIALIZER_WORDS)
    out = TextTokenizer(tok, TextTokenizerConfig(max_length=max_length, truncation=truncation))
    if out.extra_classes != tuple(extras):  # the trainer places special tokens first, in order
        raise RuntimeError(f"trained vocabulary has extra classes {out.extra_classes}, expected {tuple(extras)}")
    return out


def _with_whole_words(tok: Tokenizer, words: Sequence[str]) -> Tokenizer:
    """``tok`` with each of ``words`` in its WordPiece vocabulary (new ids at the end) where it is not one piece.
    WordPiece matches the longest vocabulary entry first, so a word in the vocabulary is always one piece."""
    missing = [w for w in words if tok.encode(w).ids != [tok.token_to_id(w)]]
    if not missing:
        return tok
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    for w in missing:
        vocab[w] = len(vocab)
    return Tokenizer.from_str(json.dumps(data))
