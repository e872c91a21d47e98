"""`load_tokenizer` on what users have: our folders, 4M's bare official text-tokenizer JSON (a file, or a folder
holding only it), and clear errors for everything else."""

from __future__ import annotations

import json
import shutil

import pytest
from tokenizers.models import WordPiece

from polymodal.tokenizers.base import load_tokenizer
from polymodal.tokenizers.serializers import SERIALIZERS, boxes_from_world, metadata_from_world
from polymodal.tokenizers.text import TextTokenizer
from polymodal.tokenizers.text_layout import EOS
from tokenizers import Tokenizer

from .text_helpers import RES, official_path, trained, world_samples


def _texts() -> list[str]:
    samples = world_samples()
    return ([s["caption"] for s in samples] + [SERIALIZERS["det"].to_text(boxes_from_world(s["det"], RES))
                                               for s in samples]
            + [SERIALIZERS["metadata"].to_text(metadata_from_world(s["metadata"])) for s in samples])


def test_official_json_file_and_a_folder_holding_only_it(tmp_path):
    path = official_path()  # skips without the fixtures folder
    raw = Tokenizer.from_file(str(path))
    folder = tmp_path / "official"
    folder.mkdir()
    shutil.copy(path, folder)
    texts = _texts()
    expect = [e.ids + [EOS] for e in raw.encode_batch(texts)]  # 4M's sequence: ids, no [SOS], then [EOS]
    for source in (path, folder, str(path)):
        tok = load_tokenizer(source)
        assert isinstance(tok, TextTokenizer) and tok.vocab_size == 30000
        assert tok.encode_lists(texts, max_length=10_000) == expect


def test_a_bare_trained_json_loads_too(tmp_path):
    tok = trained()
    tok.hf.save(str(tmp_path / "vocab.json"))
    texts = _texts()
    assert load_tokenizer(tmp_path / "vocab.json").encode_lists(texts) == tok.encode_lists(texts)
    assert load_tokenizer(tmp_path).encode_lists(texts) == tok.encode_lists(texts)  # the folder holding it


def test_clear_errors_for_what_is_not_a_tokenizer(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json and no tokenizer JSON"):
        load_tokenizer(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"not a tokenizer: .* got a \.txt file"):
        load_tokenizer(tmp_path / "notes.txt")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a HF tokenizers JSON file"):
        load_tokenizer(tmp_path / "other.json")
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.json", "b.json"):
        trained().hf.save(str(two / name))
    with pytest.raises(ValueError, match="several JSON files"):
        load_tokenizer(two)
    (tmp_path / "bert").mkdir()  # a WordPiece JSON without 4M's fixed ids
    Tokenizer(WordPiece({"[UNK]": 0, "[CLS]": 1, "a": 2}, unk_token="[UNK]")).save(str(tmp_path / "bert" / "t.json"))
    with pytest.raises(ValueError, match="not a 4M text vocabulary"):
        load_tokenizer(tmp_path / "bert")
