"""The text tokenizer: ids identical to 4M's official vocabulary, the fixed layout in a trained one, folders,
truncation, bad ids, and the ``polymodal tokenizer train-text`` command."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch

from polymodal.cli import main
from polymodal.tokenizers.base import TokenizerInputError, load_tokenizer
from polymodal.tokenizers.serializers import SERIALIZERS, boxes_from_world, metadata_from_world
from polymodal.tokenizers.text import TextTokenizer, TextTooLongError, TextTruncationWarning
from polymodal.tokenizers.text_layout import (
    COCO_CLASSES,
    EOS,
    NUM_FIXED,
    PAD,
    SERIALIZER_WORDS,
    coord_id,
    fixed_tokens,
)
from tokenizers import Tokenizer

from .text_helpers import RES, WORLD_EXTRA, official, official_path, trained, world_samples

PHRASES = ["A Wine Glass, a hot dog and a person.", "", "  spaces   and\ttabs ", "Ünïcode café — naïve!",
           "v0=12 v1=3 wine glass [S_1] v3=999", "numbers 3.14 and 1,000,000", "dining table" * 3]


def test_official_fixed_ids():
    tok = official()
    raw = Tokenizer.from_file(str(official_path()))
    assert tok.vocab_size == 30000 and tok.extra_classes == ()
    expect = {"[PAD]": 0, "[UNK]": 1, "[SOS]": 2, "[EOS]": 3, "[S_0]": 4, "[S_1]": 5, "[S_199]": 203,
              "v0=0": 204, "v0=999": 1203, "v1=0": 1204, "v2=0": 2204, "v3=0": 3204, "v3=999": 4203}
    for token, i in expect.items():
        assert raw.token_to_id(token) == i
    assert [raw.id_to_token(i) for i in range(NUM_FIXED)] == fixed_tokens()
    assert tok.tokenize("wine glass") == [raw.token_to_id("wine glass")]
    assert 4204 <= raw.token_to_id("wine glass") < 4284
    assert [raw.token_to_id(c) for c in COCO_CLASSES] == list(range(4204, 4284))
    assert all(len(tok.tokenize(w)) == 1 for w in SERIALIZER_WORDS)  # "human", "point", ... are one piece


def test_official_ids_identical_for_captions_boxes_and_metadata():
    tok, raw = official(), Tokenizer.from_file(str(official_path()))
    samples = world_samples()
    det, meta = SERIALIZERS["det"], SERIALIZERS["metadata"]
    texts = PHRASES + [s["caption"] for s in samples]
    texts += [det.to_text(boxes_from_world(s["det"], RES)) for s in samples]
    texts += [meta.to_text(metadata_from_world(s["metadata"])) for s in samples]
    ours = tok.encode_lists(texts, max_length=10_000)
    assert ours == [e.ids + [EOS] for e in raw.encode_batch(texts)]  # 4M: ids, no [SOS], then [EOS]
    assert not any(2 in ids for ids in ours)


def test_loading_a_file_a_folder_holding_it_and_a_saved_folder(tmp_path):
    official_path()
    (tmp_path / "plain").mkdir()
    shutil.copy(official_path(), tmp_path / "plain")
    a = TextTokenizer.from_pretrained(official_path())
    b = TextTokenizer.from_pretrained(tmp_path / "plain")
    saved = a.save_pretrained(tmp_path / "saved")
    assert json.loads((saved / "config.json").read_text())["_class_name"] == "TextTokenizer"
    c = TextTokenizer.from_pretrained(saved)
    ids = [t.encode_lists(PHRASES) for t in (a, b, c)]
    assert ids[0] == ids[1] == ids[2]
    d = TextTokenizer.from_pretrained(saved, max_length=8, truncation="error")
    assert d.num_tokens == 8 and d.config.truncation == "error"


def test_trained_vocabulary_keeps_the_layout_and_adds_world_classes(tmp_path):
    tok = trained()
    assert [tok.hf.id_to_token(i) for i in range(NUM_FIXED)] == fixed_tokens()
    assert tok.extra_classes == WORLD_EXTRA and "person" not in WORLD_EXTRA
    for k, name in enumerate(WORLD_EXTRA):
        assert tok.tokenize(name) == [NUM_FIXED + k]
        assert tok.tokenize(name.upper()) == [NUM_FIXED + k]  # class names match after lower-casing
    for word in SERIALIZER_WORDS:  # whole pieces, as in the official vocabulary
        assert len(tok.tokenize(word)) == 1
    assert tok.tokenize("person wine glass v2=7 [S_3]") == [4253, 4282, coord_id(2, 7), 7]
    # Flags as 4M's: coordinates are case-sensitive whole words, "spheres" is not the class "sphere".
    assert len(tok.tokenize("V2=7")) > 1 and tok.tokenize("spheres") != tok.tokenize("sphere")
    added = {t["content"]: t for t in json.loads(tok.hf.to_str())["added_tokens"]}
    assert added["v0=5"]["single_word"] and not added["v0=5"]["normalized"]
    assert added["sphere"]["single_word"] and added["sphere"]["normalized"]
    again = TextTokenizer.from_pretrained(tok.save_pretrained(tmp_path / "tok"))
    assert isinstance(load_tokenizer(tmp_path / "tok"), TextTokenizer)  # the generic loader knows the class
    caps = [s["caption"] for s in world_samples()]
    assert again.encode_lists(caps) == tok.encode_lists(caps)
    assert 1 not in sum(tok.encode_lists(caps + [", ; ! ? human polygon"]), [])  # no [UNK]


@pytest.mark.parametrize("get", [trained, official])
def test_encode_pads_and_decode_inverts(get):
    tok = get()
    caps = [s["caption"] for s in world_samples()[:8]]
    ids = tok.encode(caps)
    assert ids.dtype == torch.int64 and ids.shape == (8, tok.num_tokens)
    lists = tok.encode_lists(caps)
    for row, lst in zip(ids.tolist(), lists):
        assert row[:len(lst)] == lst and set(row[len(lst):]) <= {PAD} and lst[-1] == EOS
    text = tok.decode(ids)
    assert tok.encode_lists(text) == lists  # decoding loses nothing the ids hold
    # ... and gives the lower-cased caption up to the WordPiece decoder's spacing (it writes "objects :").
    assert [t.replace(" :", ":") for t in text] == [c.lower() for c in caps]
    assert tok.decode([[5, 4282, 3, 99]]) == ["[S_1] wine glass"]  # stops at [EOS], keeps sentinels and classes


def test_truncation_warns_with_the_count_or_raises():
    tok = trained()
    text = "a b c d e f g h"
    with pytest.warns(TextTruncationWarning, match="9 tokens with \\[EOS\\].*cut by 4"):
        (ids,) = tok.encode_lists([text], max_length=5)
    assert ids == tok.tokenize(text)[:5]  # as 4M: cut after [EOS] is appended, so no [EOS]
    strict = TextTokenizer(tok.hf, type(tok.config)(max_length=5, truncation="error"))
    with pytest.raises(TextTooLongError, match="cut by 4"):
        strict.encode([text])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert strict.encode_lists(["a b c d"]) == [tok.tokenize("a b c d") + [EOS]]


def test_bad_input_errors():
    tok = trained()
    v = tok.vocab_size
    with pytest.raises(TokenizerInputError, match=f"token id {v} .*sequence 1, position 2.*{v} ids"):
        tok.decode([[5, 6], [7, 8, v]])
    with pytest.raises(TokenizerInputError, match="token id -1"):
        tok.decode(torch.tensor([[4, -1]]))
    with pytest.raises(TokenizerInputError, match="integers"):
        tok.decode(torch.zeros(1, 3))
    with pytest.raises(TokenizerInputError, match="shape"):
        tok.decode(torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="single str"):
        tok.encode("a caption")
    with pytest.raises(TokenizerInputError, match="text 1 is a int"):
        tok.encode_lists(["ok", 3])
    with pytest.raises(ValueError, match="truncation"):
        type(tok.config)(truncation="drop")


def test_loading_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        TextTokenizer.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        TextTokenizer.from_pretrained(tmp_path)
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(ValueError, match="not a HF tokenizers JSON"):
        TextTokenizer.from_pretrained(tmp_path)
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(ValueError, match="several JSON files"):
        TextTokenizer.from_pretrained(tmp_path)
    # A WordPiece file without 4M's layout is refused with the first id that differs.
    from tokenizers.models import WordPiece

    plain = Tokenizer(WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    plain.save(str(tmp_path / "plain.json"))
    with pytest.raises(ValueError, match="not a 4M text vocabulary: id 0 is '\\[UNK\\]'"):
        TextTokenizer.from_pretrained(tmp_path / "plain.json")


def test_cli_train_text(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(s["caption"] for s in world_samples()[:20]))
    out = tmp_path / "tok"
    assert main(["tokenizer", "train-text", "--corpus", str(corpus), "--vocab-size", "4500", "--out", str(out)]) == 0
    tok = TextTokenizer.from_pretrained(out)
    assert tok.extra_classes == WORLD_EXTRA and tok.vocab_size <= 4500
    assert str(out) in capsys.readouterr().out
    assert main(["tokenizer", "train-text", "--corpus", str(corpus), "--vocab-size", "4500", "--out",
                 str(tmp_path / "coco"), "--classes"]) == 0
    assert TextTokenizer.from_pretrained(tmp_path / "coco").extra_classes == ()
    capsys.readouterr()
    assert main(["tokenizer", "train-text", "--corpus", str(tmp_path / "missing.txt"), "--vocab-size", "4500",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polymodal tokenizer train-text:") and "not found" in err and err.count("\n") == 1
    assert main(["tokenizer", "train-text", "--corpus", str(corpus), "--vocab-size", "300", "--out", str(out)]) == 2
    assert "vocab_size" in capsys.readouterr().err
