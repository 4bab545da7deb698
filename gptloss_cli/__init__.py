"""gptloss: score text with causal language models (per-token cross-entropy, perplexity, bits per byte).

The package is layered, each folder one step of the flow (checked by an import contract, `make lint`):

    inputs/   files, standard input, datasets and chats -> Documents
    models/   model specs -> a loaded model and tokenizer (bundled models, GGUF cache, hub)
    core/     pure torch/numpy: windows, batches, the engine loop, LM-head losses, totals
    tasks/    the library's entry points (score, tokens, compare, explain, run files) -> typed results
    render/   results -> tables, JSON, heatmaps, HTML (renderables and strings; nothing prints)
    cli/      the Typer app, option groups and the console: the only code that prints or exits

Names are imported lazily, so `import gptloss_cli` (and `gptloss --help`) does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_EXPORTS = {
    "AnnotateSettings": "tasks.annotate",
    "Annotation": "tasks.annotate",
    "Analyses": "tasks.analyses",
    "BosPolicy": "core.windows",
    "CompareResult": "tasks.compare",
    "DatasetOptions": "inputs.dataset",
    "Device": "models.spec",
    "Document": "inputs.document",
    "DocumentScore": "tasks.score",
    "Dtype": "models.spec",
    "GptlossError": "errors",
    "LoadedModel": "models.spec",
    "ModelInfo": "models.spec",
    "ScoreResult": "tasks.score",
    "ScoreRun": "tasks.score",
    "Shard": "core.distributed",
    "TokenRecord": "tasks.tokens",
    "TokenRun": "tasks.tokens",
    "Totals": "core.totals",
    "WindowSettings": "core.plan",
    "WordRecord": "tasks.tokens",
    "World": "core.distributed",
    "RowScorer": "tasks.rows",
    "compare_documents": "tasks.compare",
    "corpus_files": "inputs.corpus",
    "context_curve": "tasks.context_curve",
    "load_model": "models.loader",
    "merge_runs": "tasks.merge",
    "row_options": "tasks.rows",
    "read_dataset": "inputs.dataset",
    "score_documents": "tasks.score",
    "score_texts": "tasks.score",
}
__all__ = [*sorted(_EXPORTS), "__version__"]

if TYPE_CHECKING:
    from .core.distributed import Shard, World
    from .core.plan import WindowSettings
    from .core.totals import Totals
    from .core.windows import BosPolicy
    from .errors import GptlossError
    from .inputs.corpus import corpus_files
    from .inputs.dataset import DatasetOptions, read_dataset
    from .inputs.document import Document
    from .models.loader import load_model
    from .models.spec import Device, Dtype, LoadedModel, ModelInfo
    from .tasks.analyses import Analyses
    from .tasks.annotate import AnnotateSettings, Annotation
    from .tasks.compare import CompareResult, compare_documents
    from .tasks.context_curve import context_curve
    from .tasks.merge import merge_runs
    from .tasks.rows import RowScorer, row_options
    from .tasks.score import DocumentScore, ScoreResult, ScoreRun, score_documents, score_texts
    from .tasks.tokens import TokenRecord, TokenRun, WordRecord


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gptloss_cli' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
