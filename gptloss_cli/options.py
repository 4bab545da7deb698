"""Choices and option declarations shared by the commands."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .inputs import DecodeErrors
from .models import Device, Dtype
from .windows import BosPolicy


class Format(str, Enum):
    table = "table"
    json = "json"


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Bundled alias (gemma-3-270m, smollm2-135m-instruct), a .gguf file, a model directory or a hub id.",
    ),
]
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
