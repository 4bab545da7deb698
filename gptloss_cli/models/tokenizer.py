"""The tokenizer as scoring needs it: ids with character offsets, and the BOS id.

It wraps a `tokenizers.Tokenizer` (the Rust backend); encoding without special
tokens is identical to transformers' fast tokenizers, which wrap the same backend.

Parsing Gemma's tokenizer.json (262,144 tokens, 514,906 merges) takes about two
seconds and holds the GIL. For our own GGUF conversions, `from_dir` therefore
parses it in a child process started before torch is imported, so the two run
on separate cores; the child answers encode and decode requests over a pipe. If
the child fails for any reason the file is parsed in this process instead.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from functools import cache
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import GptlossError
from .gguf_cache import read_json

_LEN = 8  # bytes of each little-endian length prefix on the pipe
_ENCODE, _SPECIAL, _DECODE = b"E", b"S", b"D"  # request tags: encode, encode with special tokens, decode


class Tokenizer:
    def __init__(
        self,
        bos_token_id: int | None,
        backend: Any = None,
        path: Path | None = None,
        chat_template: str | None = None,
        special_tokens: dict[str, str] | None = None,
    ) -> None:
        self.bos_token_id = bos_token_id
        self.chat_template = chat_template  # Jinja source, as transformers' apply_chat_template reads it
        self.special_tokens = special_tokens or {}  # bos_token, eos_token, ...: what a chat template may name
        self._backend = backend
        self._path = path
        self._worker: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # one request at a time on the worker's pipe (a server's threads share it)
        self._pieces: dict[int, str] = {}
        self._eos: tuple[int | None] | None = None  # (eos id,) once known

    @classmethod
    def from_hf(cls, hf_tokenizer: Any) -> Tokenizer:
        """Wrap a transformers tokenizer; it must be a fast one (offsets come from the backend)."""
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is None or not getattr(hf_tokenizer, "is_fast", False):
            raise GptlossError("this model's tokenizer gives no character offsets (a fast tokenizer is needed)")
        bos = getattr(hf_tokenizer, "bos_token_id", None)
        eos = getattr(hf_tokenizer, "eos_token_id", None)
        template = getattr(hf_tokenizer, "chat_template", None)
        special = {k: v for k, v in getattr(hf_tokenizer, "special_tokens_map", {}).items() if isinstance(v, str)}
        tokenizer = cls(
            None if bos is None else int(bos),
            backend=backend,
            chat_template=template if isinstance(template, str) else None,
            special_tokens=special,
        )
        tokenizer._eos = (None if eos is None else int(eos),)
        return tokenizer

    @classmethod
    def from_dir(cls, directory: Path, bos_token_id: int | None) -> Tokenizer:
        """`directory/tokenizer.json`, parsed in a child process; the BOS id comes from our conversion's record.
        The chat template and special tokens come from the files transformers saved beside it."""
        config = read_json(directory / "tokenizer_config.json")
        template = config.get("chat_template")
        jinja = directory / "chat_template.jinja"
        if jinja.is_file():
            template = jinja.read_text(encoding="utf-8")
        special = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
        tokenizer = cls(
            bos_token_id,
            path=directory / "tokenizer.json",
            chat_template=template if isinstance(template, str) else None,
            special_tokens=special,
        )
        tokenizer._start_worker()
        return tokenizer

    @property
    def adds_bos(self) -> bool:
        """Whether the tokenizer's defaults (its post-processor) put the BOS token first, as Gemma's do."""
        ids, _ = self.encode("a", special=True)
        return self.bos_token_id is not None and len(ids) > 0 and int(ids[0]) == self.bos_token_id

    @property
    def eos_token_id(self) -> int | None:
        """The end-of-sequence token's id (looked up in the vocabulary on first use), or None."""
        if self._eos is None:
            name = self.special_tokens.get("eos_token")
            found = self.backend.token_to_id(name) if name else None
            self._eos = (None if found is None else int(found),)
        return self._eos[0]

    @property
    def backend(self) -> Any:
        """The `tokenizers.Tokenizer`, parsed in this process on first use if a child holds it."""
        if self._backend is None:
            from tokenizers import Tokenizer as Backend

            self._backend = Backend.from_file(str(self._path))
        return self._backend

    def encode(self, text: str, special: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Token ids (n,) and character offsets (n, 2) of `text`; with `special`, the special tokens the
        tokenizer's post-processor adds (Gemma's BOS, say; offsets (0, 0)), as `tokenizer(text)` gives them."""
        with self._lock:
            if self._worker is not None:
                try:
                    return _request(self._worker, text, special)
                except (OSError, ValueError):
                    self._stop_worker()
        enc = self.backend.encode(text, add_special_tokens=special)
        ids = np.asarray(enc.ids, dtype=np.int64)  # (n,)
        offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)  # (n, 2)
        return ids, offsets

    def pieces(self, ids: list[int]) -> list[str]:
        """The text of each token id on its own (cached): what a top-k alternative would add to the text.

        A token that is part of a character decodes to nothing printable and is shown by its bytes instead:
        a byte-fallback piece by its vocabulary name, such as <0xE2>; a byte-level one (GPT-2's alphabet,
        as SmolLM2's) the same way, its whole characters decoded and the rest as bytes (W<0xC3>).
        """
        missing = sorted({i for i in ids if i not in self._pieces})
        if missing:
            texts = None
            with self._lock:
                if self._worker is not None:
                    try:
                        texts = _request_pieces(self._worker, missing)
                    except (OSError, ValueError):
                        self._stop_worker()
            self._pieces.update(zip(missing, texts or _decode_pieces(self.backend, missing), strict=True))
        return [self._pieces[i] for i in ids]

    def _start_worker(self) -> None:
        try:
            self._worker = subprocess.Popen(
                [sys.executable, "-m", "gptloss_cli.models.tokenizer", str(self._path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            self._worker = None

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker.wait()
            self._worker = None

    def __del__(self) -> None:
        worker = getattr(self, "_worker", None)
        if worker is not None and worker.stdin is not None:
            worker.stdin.close()  # the child exits when its input ends


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise ValueError("tokenizer process ended early")
    return data


def _decode_pieces(backend: Any, ids: list[int]) -> list[str]:
    alphabet = _byte_alphabet() if byte_level(backend) else None
    out = []
    for i in ids:
        text = backend.decode([i], skip_special_tokens=False)
        if text and "\ufffd" not in text:
            out.append(text)
            continue
        name = backend.id_to_token(i) or ""
        if alphabet is not None and name and all(c in alphabet for c in name):
            out.append(byte_pieces(bytes(alphabet[c] for c in name)))
        else:
            out.append(name or text)
    return out


def byte_level(backend: Any) -> bool:
    """Whether `backend` (a tokenizers.Tokenizer) spells its tokens in GPT-2's byte-level alphabet: its
    decoder or pre-tokenizer is ByteLevel, alone or in a sequence."""
    for part in (backend.decoder, backend.pre_tokenizer):
        if part is not None and _has_type(json.loads(part.__getstate__()), "ByteLevel"):
            return True
    return False


def _has_type(node: Any, name: str) -> bool:
    if isinstance(node, dict):
        return node.get("type") == name or any(_has_type(v, name) for v in node.values())
    return isinstance(node, list) and any(_has_type(v, name) for v in node)


@cache
def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character -> byte: printable Latin-1 bytes spell themselves, the other
    68 bytes are the characters from U+0100 on, in byte order (Ġ is the space, 0x20)."""
    own = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in own]
    return {chr(b): b for b in own} | {chr(0x100 + n): b for n, b in enumerate(others)}


_STRAY = re.compile("[\udc80-\udcff]")  # a byte that is not UTF-8, as "surrogateescape" decodes it


def byte_pieces(data: bytes) -> str:
    """Bytes as text: the whole UTF-8 characters decoded, each stray byte as <0xNN> (b"W\\xc3" -> W<0xC3>),
    as SentencePiece names its byte-fallback tokens."""
    return _STRAY.sub(lambda m: f"<0x{ord(m.group()) - 0xDC00:02X}>", data.decode("utf-8", "surrogateescape"))


def _request_pieces(worker: subprocess.Popen[bytes], ids: list[int]) -> list[str]:
    assert worker.stdin is not None and worker.stdout is not None
    payload = json.dumps(ids).encode()
    worker.stdin.write(_DECODE + len(payload).to_bytes(_LEN, "little") + payload)
    worker.stdin.flush()
    n = int.from_bytes(_read_exact(worker.stdout, _LEN), "little")
    texts = json.loads(_read_exact(worker.stdout, n).decode("ascii"))
    if not isinstance(texts, list) or len(texts) != len(ids):
        raise ValueError("tokenizer process answered out of turn")
    return [str(t) for t in texts]


def _request(worker: subprocess.Popen[bytes], text: str, special: bool) -> tuple[np.ndarray, np.ndarray]:
    assert worker.stdin is not None and worker.stdout is not None
    payload = text.encode("utf-8", "surrogatepass")
    worker.stdin.write((_SPECIAL if special else _ENCODE) + len(payload).to_bytes(_LEN, "little") + payload)
    worker.stdin.flush()
    n = int.from_bytes(_read_exact(worker.stdout, _LEN), "little")
    ids = np.frombuffer(_read_exact(worker.stdout, 8 * n), dtype="<i8").astype(np.int64)  # (n,)
    offsets = np.frombuffer(_read_exact(worker.stdout, 16 * n), dtype="<i8").astype(np.int64).reshape(n, 2)
    return ids, offsets


def _serve(vocab_path: str) -> None:
    """Child process: parse tokenizer.json, then answer tagged, length-prefixed requests until stdin ends."""
    from tokenizers import Tokenizer as Backend

    backend = Backend.from_file(vocab_path)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while tag := source.read(1):
        body = _read_exact(source, int.from_bytes(_read_exact(source, _LEN), "little"))
        if tag == _DECODE:
            answer = json.dumps(_decode_pieces(backend, json.loads(body))).encode()  # ASCII: json escapes the rest
            sink.write(len(answer).to_bytes(_LEN, "little") + answer)
            sink.flush()
            continue
        text = body.decode("utf-8", "surrogatepass")
        enc = backend.encode(text, add_special_tokens=tag == _SPECIAL)
        ids = np.asarray(enc.ids, dtype="<i8")
        offsets = np.asarray(enc.offsets, dtype="<i8").reshape(-1, 2)
        sink.write(len(ids).to_bytes(_LEN, "little") + ids.tobytes() + offsets.tobytes())
        sink.flush()


if __name__ == "__main__":
    _serve(sys.argv[1])
