"""A binary file given as a text corpus (`polymodal tokenizer train-text --corpus ds/shard-000000.tar`) is one line
naming the file and the first byte that is not UTF-8 text, exit 2, nothing written. It was the tokenizers library's
"Exception: stream did not contain valid UTF-8" with a traceback, naming no file."""

from __future__ import annotations

import pytest

from polymodal.cli import main
from polymodal.tokenizers.text import check_text_file

TAIL = "; give text files, one document per line"


@pytest.mark.parametrize("body, byte, what", [
    (b"a red cube\n\xffrest", 11, "0xff"),  # a byte no UTF-8 sequence starts with
    (b"shard-000000/0.rgb.png\x00\x00\x00", 22, "a NUL"),  # a tar header: valid UTF-8, not text
    (b"caf\xc3", 3, "0xc3"),  # a sequence cut off by the end of the file
])
def test_train_text_names_the_file_and_the_byte(tmp_path, capsys, body, byte, what):
    good, bad = tmp_path / "captions.txt", tmp_path / "shard-000000.tar"
    good.write_text("two red cubes\na green sphere\n")
    bad.write_bytes(body)
    out = tmp_path / "tok"
    assert main(["tokenizer", "train-text", "--corpus", str(good), str(bad), "--vocab-size", "5000",
                 "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"polymodal tokenizer train-text: corpus file {bad}: not UTF-8 text (byte "
                                       f"{byte} is {what}){TAIL}\n")
    assert not out.exists()


def test_the_byte_is_counted_across_chunks(tmp_path):
    text = "naïve café — ünïcode, ok\n".encode() * 3  # 2- and 3-byte sequences land across every chunk border
    path = tmp_path / "c.txt"
    path.write_bytes(text)
    for chunk in (1, 2, 3, 5, 7, 64):
        check_text_file(path, chunk=chunk)  # valid text passes whatever the chunk size
    for at in range(0, len(text), 3):  # some inserts fall inside a sequence: its lead byte is then the bad one
        bad = text[:at] + b"\xfe" + text[at:]
        with pytest.raises(UnicodeDecodeError) as whole:
            bad.decode("utf-8")  # the oracle: the whole file decoded at once
        first = whole.value.start
        path.write_bytes(bad)
        for chunk in (1, 3, 64):
            with pytest.raises(ValueError) as e:
                check_text_file(path, chunk=chunk)
            assert str(e.value) == f"corpus file {path}: not UTF-8 text (byte {first} is 0x{bad[first]:02x}){TAIL}"
