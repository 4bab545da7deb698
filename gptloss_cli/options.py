"""Choices and option declarations shared by the commands."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .errors import GptlossError
from .inputs import DecodeErrors
from .models import Device, Dtype
from .windows import BosPolicy


class Format(str, Enum):
    table = "table"
    json = "json"


class ScoreFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"


def score_format(output: Path | None) -> ScoreFormat:
    """The format an --output file's name asks for: .jsonl or .json, else a table."""
    suffix = "" if output is None else output.suffix.lower()
    return {".jsonl": ScoreFormat.jsonl, ".json": ScoreFormat.json}.get(suffix, ScoreFormat.table)


PathsArg = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Argument(help="Text files to score; - reads standard input.", show_default=False),
]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Bundled alias (gemma-3-270m, smollm2-135m-instruct), a .gguf file, a model directory or a hub id.",
    ),
]
ScoreFormatOpt = Annotated[
    Optional[ScoreFormat],  # noqa: UP045
    typer.Option(
        "--format",
        "-f",
        help="table for people; json, or jsonl (a line per document as it is done) for programs. "
        "Default: from the --output suffix (.json, .jsonl), else table.",
        show_default=False,
    ),
]
ResumeOpt = Annotated[
    bool, typer.Option(help="Carry on the run in --output (jsonl): skip the documents it already holds.")
]
BootstrapOpt = Annotated[
    int,
    typer.Option(min=0, help="Resample the documents N times for a 95% interval of the corpus PPL; 0 = off."),
]
SeedOpt = Annotated[int, typer.Option(help="Seed of the bootstrap resampling.")]
DeviceOpt = Annotated[Device, typer.Option(help="Where to run the model; auto: cuda, else mps, else cpu.")]
DtypeOpt = Annotated[
    Dtype, typer.Option(help="Weights and activations dtype; auto: float32 on CPU/MPS, bfloat16 on CUDA.")
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table for people, json for programs.")]
MaxLengthOpt = Annotated[
    Optional[int],  # noqa: UP045  (typer reads the annotation at run time)
    typer.Option(min=2, help="Tokens per window, BOS included (default: the model's context, at most 2048)."),
]
StrideOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(min=1, help="New tokens per window; the rest of the window is context (default: max-length)."),
]
BatchSizeOpt = Annotated[
    int, typer.Option(min=1, help="Most windows per forward pass (fewer when they exceed 8,192 tokens on CPU).")
]
BosOpt = Annotated[
    BosPolicy, typer.Option(help="Start each window with the BOS token: auto = when the tokenizer has one.")
]
OutputOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--output", "-o", dir_okay=False, help="Write the result to this file (atomically) instead of stdout."
    ),
]
EncodingOpt = Annotated[str, typer.Option(help="Encoding of the input files.")]
ErrorsOpt = Annotated[DecodeErrors, typer.Option(help="What to do with bytes that do not decode.")]
TrustOpt = Annotated[
    bool, typer.Option("--trust-remote-code", help="Allow code shipped with a hub model to run (off by default).")
]


class TokenFormat(str, Enum):
    table = "table"
    heatmap = "heatmap"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


class Unit(str, Enum):
    token = "token"
    word = "word"


TokenFormatOpt = Annotated[
    Optional[TokenFormat],  # noqa: UP045
    typer.Option(
        "--format",
        "-f",
        help="table or heatmap for people; json, jsonl (streamed, one record per line) or csv for programs. "
        "Default: table, or nothing on stdout when --html is given.",
        show_default=False,
    ),
]
TopKOpt = Annotated[int, typer.Option(min=0, max=100, help="Most likely tokens listed with each token; 0 = none.")]
UnitOpt = Annotated[Unit, typer.Option(help="token, or word: whitespace-separated words, NLL summed over tokens.")]
HtmlOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--html", dir_okay=False, help="Also write a self-contained HTML report to this file."),
]


# Dataset input, shared by score, tokens and compare through `dataset_options`.
_PANEL = "Dataset input"
_DATASET_PARAMS: dict[str, Any] = {
    "dataset": Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--dataset",
            help="A dataset instead of files: a .jsonl/.json/.csv/.parquet/.txt file, a folder, or a hub id "
            "(one document per record).",
            rich_help_panel=_PANEL,
            show_default=False,
        ),
    ],
    "config": Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--config", help="The dataset's configuration (hub datasets).", rich_help_panel=_PANEL),
    ],
    "split": Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="The split to read (default: the only one).", rich_help_panel=_PANEL),
    ],
    "text_column": Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Column with the text to score (default: text).", rich_help_panel=_PANEL),
    ],
    "prompt_column": Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Column with a prompt: context only (needs --completion-column).", rich_help_panel=_PANEL),
    ],
    "completion_column": Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Column with the completion: the text is prompt + completion, and a token is scored when "
            "any of its characters is in the completion.",
            rich_help_panel=_PANEL,
        ),
    ],
    "messages_column": Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Column with a chat ([{role, content}, ...]), rendered with the model's chat template.",
            rich_help_panel=_PANEL,
        ),
    ],
    "score_roles": Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Comma-separated roles whose turns are scored (content and end-of-turn marker; default: assistant).",
            rich_help_panel=_PANEL,
        ),
    ],
    "chat_template": Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            dir_okay=False, help="A Jinja chat template file, for models that ship none.", rich_help_panel=_PANEL
        ),
    ],
    "span_column": Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Column with \\[\\[start, end], ...] character spans of the text: only their tokens are scored.",
            rich_help_panel=_PANEL,
        ),
    ],
    "limit": Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(min=1, help="Read at most this many records.", rich_help_panel=_PANEL),
    ],
    "streaming": Annotated[
        bool, typer.Option(help="Stream the dataset instead of preparing it whole first.", rich_help_panel=_PANEL)
    ],
    "skip_bad_records": Annotated[
        bool,
        typer.Option(
            "--skip-bad-records", help="Skip and count malformed records instead of stopping.", rich_help_panel=_PANEL
        ),
    ],
}
_DATASET_DEFAULTS: dict[str, Any] = {"streaming": False, "skip_bad_records": False}


def dataset_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give `command` the dataset input options; it receives them as one `dataset: DatasetOptions | None`."""
    from .dataset import DatasetOptions

    signature = inspect.signature(command, eval_str=True)
    kept = [p for name, p in signature.parameters.items() if name != "dataset"]
    added = [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=_DATASET_DEFAULTS.get(name), annotation=annotation
        )
        for name, annotation in _DATASET_PARAMS.items()
    ]

    def wrapper(**kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in _DATASET_PARAMS}
        name = given.pop("dataset")
        template = given.pop("chat_template")
        if name is None:
            used = [n for n, v in given.items() if v not in (None, False)]
            if used or template is not None:
                flag = "--" + (used[0] if used else "chat_template").replace("_", "-")
                raise GptlossError(f"{flag} needs --dataset")
            return command(**kwargs, dataset=None)
        roles = given.pop("score_roles")
        options = DatasetOptions(
            name=name,
            score_roles=None if roles is None else tuple(r.strip() for r in roles.split(",") if r.strip()),
            chat_template=template,
            **given,
        )
        return command(**kwargs, dataset=options)

    wrapper.__name__ = command.__name__
    wrapper.__qualname__ = command.__qualname__
    wrapper.__doc__ = command.__doc__
    wrapper.__module__ = command.__module__
    parameters = [*kept, *added]
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper
