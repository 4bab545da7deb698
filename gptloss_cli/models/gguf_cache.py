"""GGUF files, converted once into a cache of safetensors weights and tokenizer.json.

Loading a GGUF file through transformers converts its tokenizer and dequantises
every tensor (over a minute for Gemma-3-270M on two CPU cores). The result is
saved under `<cache>/converted/<sha256>/` so later loads take seconds. The cache
is `$GPTLOSS_CACHE`, else `$XDG_CACHE_HOME/gptloss`, else `~/.cache/gptloss`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import GptlossError, first_line

ConvertProgress = Callable[[str], None]
MARKER = "gptloss.json"  # written last: a directory without it is not a finished conversion
# 2: the tokenizer's pre-tokenizer completed from the file's tokenizer.ggml.pre (see _fix_pre_tokenizer)
FORMAT = 2
# llama.cpp pre-tokenizer types that split digits one by one before the byte-level regex, as the models' own
# tokenizers do; transformers' GGUF conversion keeps only the byte-level part.
DIGITS_FIRST = frozenset({"smollm"})


def cache_dir() -> Path:
    env = os.environ.get("GPTLOSS_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "gptloss"


def converted_dir(sha256: str) -> Path:
    return cache_dir() / "converted" / sha256


def is_converted(sha256: str) -> bool:
    return (converted_dir(sha256) / MARKER).is_file()


def conversion_record(directory: Path) -> dict[str, Any] | None:
    """What the conversion in `directory` recorded (source, sha256, bos_token_id), or None if it is not one."""
    record = read_json(directory / MARKER)
    return record if "bos_token_id" in record else None


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so a large file is hashed once."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = cache_dir() / "hashes.json"
    index = read_json(index_path)
    if key in index:
        return str(index[key])
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    index[key] = digest.hexdigest()
    _write_json_atomic(index_path, index)
    return str(index[key])


def cached_conversion(path: Path, sha256: str, progress: ConvertProgress | None = None, weights: bool = True) -> Path:
    """The converted copy of the GGUF file at `path` (whose sha256 is given), converting it if needed. Without
    `weights` (--backend llama.cpp reads the file itself) the tokenizer is enough: the whole conversion's when
    there is one, else a tokenizer-only one (no dequantised copy written, no float32 model in memory)."""
    target = converted_dir(sha256)
    if not weights and conversion_record(target) is None:
        target = cache_dir() / "tokenizers" / sha256
    record = conversion_record(target)
    if record is not None:
        if record.get("format", 1) < FORMAT:  # an older conversion: its tokenizer completed in place
            _fix_pre_tokenizer(path, target)
            _write_json_atomic(target / MARKER, {**record, "format": FORMAT})
        return target
    notify = progress or (lambda _msg: None)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}-", dir=target.parent))
    try:
        bos_token_id = _convert(path, work, notify, weights)
        _fix_pre_tokenizer(path, work)
        record = {"source": path.name, "sha256": sha256, "bos_token_id": bos_token_id, "format": FORMAT}
        _write_json_atomic(work / MARKER, record)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _convert(path: Path, out: Path, notify: ConvertProgress, weights: bool = True) -> int | None:
    """Write a safetensors (with `weights`) + tokenizer.json copy of the GGUF file into `out`; return the BOS
    token id."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError as exc:
        raise GptlossError("reading a .gguf file needs the gguf package: pip install gguf") from exc
    try:
        notify(f"converting {path.name} (once; the result is cached): tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        if not weights:
            tokenizer.save_pretrained(str(out))
            return tokenizer.bos_token_id
        notify(f"converting {path.name} (once; the result is cached): dequantising weights")
        quantized = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise GptlossError(f"{path}: cannot read this GGUF file ({first_line(exc)})") from exc
    notify(f"converting {path.name} (once; the result is cached): writing safetensors")
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # transformers refuses save_pretrained on a GGUF-loaded model; a fresh model holding its weights saves fine.
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(quantized.state_dict(), strict=True)
    fresh.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return tokenizer.bos_token_id


def _fix_pre_tokenizer(path: Path, directory: Path) -> None:
    """Split digits one by one before the byte-level regex where the GGUF file's tokenizer.ggml.pre says the
    model's tokenizer does (SmolLM2: "\\n\\n  0." is then tokenised as llama.cpp and the original tokenizer do)."""
    from gguf import GGUFReader
    from tokenizers import Tokenizer, pre_tokenizers

    field = GGUFReader(str(path)).fields.get("tokenizer.ggml.pre")
    pre = bytes(field.parts[field.data[0]]).decode("utf-8", "replace") if field is not None else None
    if pre not in DIGITS_FIRST:
        return
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    if "Digits" in json.dumps(json.loads(tokenizer.to_str()).get("pre_tokenizer")):
        return
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), tokenizer.pre_tokenizer]
    )
    tokenizer.save(str(directory / "tokenizer.json"))


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)
