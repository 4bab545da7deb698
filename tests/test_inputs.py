"""Reading inputs: every bad input is one clear GptlossError naming the file."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from gptloss_cli.errors import GptlossError
from gptloss_cli.inputs.files import TEXT, DecodeErrors, FileSettings
from gptloss_cli.inputs.read import ReadSettings, read_inputs


def read_documents(paths: list[str], files: FileSettings = TEXT) -> list:
    """The files' documents, as the commands read them."""
    return read_inputs(ReadSettings(tuple(paths), files)).items


def test_reads_files_in_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("first", encoding="utf-8")
    b.write_text("zweite Zeile ü", encoding="utf-8")
    docs = read_documents([str(a), str(b)])
    assert [(d.source, d.text) for d in docs] == [(str(a), "first"), (str(b), "zweite Zeile ü")]


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("from stdin ✓".encode())))
    docs = read_documents(["-"])
    assert docs[0].text == "from stdin ✓" and docs[0].source == "<stdin>"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.txt", None, "no such file"),
        ("folder", "dir", "no text files in"),
        ("blob.bin", b"PK\x03\x04\x00\x00binary", "binary file (NUL byte at offset 4)"),
        ("latin1.txt", "café".encode("latin-1"), "not valid utf-8 at byte offset 3 (byte 0xe9)"),
    ],
)
def test_bad_inputs(tmp_path: Path, name: str, content: object, message: str) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(GptlossError) as err:
        read_documents([str(path)])
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_encoding_and_errors_options(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("café".encode("latin-1"))
    assert read_documents([str(path)], FileSettings(encoding="latin-1"))[0].text == "café"
    assert read_documents([str(path)], FileSettings(errors=DecodeErrors.replace))[0].text == "caf\ufffd"
    with pytest.raises(GptlossError, match="unknown encoding"):
        read_documents([str(path)], FileSettings(encoding="no-such-codec"))


def test_utf16_is_not_mistaken_for_binary(tmp_path: Path) -> None:
    path = tmp_path / "u16.txt"
    path.write_bytes("hello".encode("utf-16"))
    assert read_documents([str(path)], FileSettings(encoding="utf-16"))[0].text == "hello"


def test_stdin_only_once() -> None:
    with pytest.raises(GptlossError, match="only once"):
        read_documents(["-", "-"])


@pytest.mark.parametrize("pre", ["smollm", "default"])
def test_gguf_conversion_completes_the_pre_tokenizer(tmp_path: Path, pre: str) -> None:
    """Where the GGUF file's tokenizer.ggml.pre splits digits one by one (SmolLM2's "smollm"), so does the
    converted tokenizer; other types are left as transformers converts them."""
    from conftest import build_tokenizer
    from gguf import GGUFWriter
    from tokenizers import Tokenizer

    from gptloss_cli.models.gguf_cache import _fix_pre_tokenizer

    gguf_path = tmp_path / "m.gguf"
    writer = GGUFWriter(str(gguf_path), "llama")
    writer.add_tokenizer_pre(pre)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    build_tokenizer().save_pretrained(tmp_path / "tok")
    before = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json")).encode("bolts: 312").tokens
    for _ in range(2):  # a second pass changes nothing
        _fix_pre_tokenizer(gguf_path, tmp_path / "tok")
    after = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json")).encode("bolts: 312").tokens
    digits = [t for t in after if any(c.isdigit() for c in t)]
    if pre == "smollm":
        assert digits == ["3", "1", "2"] and before != after
    else:
        assert after == before
