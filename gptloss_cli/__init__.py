"""gptloss: score text with causal language models (per-token cross-entropy, perplexity, bits per byte).

Names are imported lazily, so `import gptloss_cli` (and `gptloss --help`) does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BosPolicy": "windows",
    "Device": "models",
    "Document": "inputs",
    "DocumentScore": "api",
    "Dtype": "models",
    "GptlossError": "errors",
    "LoadedModel": "models",
    "ModelInfo": "models",
    "ScoreResult": "api",
    "Totals": "stats",
    "WindowSettings": "engine",
    "load_model": "models",
    "score_documents": "api",
    "score_texts": "api",
}
__all__ = [*sorted(_EXPORTS), "__version__"]

if TYPE_CHECKING:
    from .api import DocumentScore, ScoreResult, score_documents, score_texts
    from .engine import WindowSettings
    from .errors import GptlossError
    from .inputs import Document
    from .models import Device, Dtype, LoadedModel, ModelInfo, load_model
    from .stats import Totals
    from .windows import BosPolicy


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gptloss_cli' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
