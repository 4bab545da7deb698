"""The input options of score, tokens and compare: files, or a dataset and its columns."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import UsageError
from ..inputs.dataset import DatasetOptions
from ..inputs.files import MAX_BYTES, DecodeErrors, FileSettings
from ..inputs.read import ReadSettings
from .options import OptionGroup

PANEL = "Dataset input"


def _text(help: str, **kwargs: Any) -> Any:
    """An optional string option of the dataset panel."""
    return Annotated[Optional[str], typer.Option(help=help, rich_help_panel=PANEL, **kwargs)]  # noqa: UP045


_FILE_PARAMS: dict[str, Any] = {
    "paths": Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(
            metavar="[PATH]...",
            help="Text files, or folders of them (their text files, recursively, in sorted order; hidden and binary "
            "files skipped); - reads standard input.",
            show_default=False,
        ),
    ],
    "glob": Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            metavar="PATTERN",
            help="In folders, read only the files whose name matches (*.txt), or with a / whose path within the "
            "folder matches (books/*.md).",
            show_default=False,
        ),
    ],
    "encoding": Annotated[str, typer.Option(help="Encoding of the input files.")],
    "errors": Annotated[DecodeErrors, typer.Option(help="What to do with bytes that do not decode.")],
    "max_bytes": Annotated[
        int,
        typer.Option(
            min=1,
            help="The largest text read from one file or standard input (a dataset: one JSONL line); a longer one "
            "is refused before the model loads.",
        ),
    ],
}
_DATASET_PARAMS: dict[str, Any] = {
    "dataset": _text(
        "A dataset instead of files: a .jsonl/.json/.csv/.parquet/.txt file, a folder, or a hub id "
        "(one document per record).",
        show_default=False,
    ),
    "config": _text("The dataset's configuration (hub datasets)."),
    "split": _text("The split to read (default: the only one)."),
    "text_column": _text("Column with the text to score (default: text)."),
    "prompt_column": _text("Column with a prompt: context only (needs --completion-column)."),
    "completion_column": _text(
        "Column with the completion: the text is prompt + completion, and a token is scored when "
        "any of its characters is in the completion."
    ),
    "messages_column": _text("Column with a chat ([{role, content}, ...]), rendered with the model's chat template."),
    "score_roles": _text(
        "Comma-separated roles whose turns are scored (content and end-of-turn marker; default: assistant)."
    ),
    "chat_template": Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            dir_okay=False, help="A Jinja chat template file, for models that ship none.", rich_help_panel=PANEL
        ),
    ],
    "span_column": _text(
        "Column with \\[\\[start, end], ...] character spans of the text: only their tokens are scored."
    ),
    "label_column": _text(
        "Column with each record's class, 0/1 or true/false: score and compare report how well each "
        "per-document score separates them (AUROC, TPR at 1% and 5% FPR)."
    ),
    "limit": Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(min=1, help="Read at most this many records.", rich_help_panel=PANEL),
    ],
    "streaming": Annotated[
        bool, typer.Option(help="Stream the dataset instead of preparing it whole first.", rich_help_panel=PANEL)
    ],
    "skip_bad_records": Annotated[
        bool,
        typer.Option(
            "--skip-bad-records", help="Skip and count malformed records instead of stopping.", rich_help_panel=PANEL
        ),
    ],
}


def _dataset(given: dict[str, Any]) -> DatasetOptions | None:
    name = given.pop("dataset")
    template = given.pop("chat_template")
    if name is None:
        used = [n for n, v in given.items() if v not in (None, False)]
        if used or template is not None:
            flag = "--" + (used[0] if used else "chat_template").replace("_", "-")
            raise UsageError(f"{flag} needs --dataset")
        return None
    roles = given.pop("score_roles")
    return DatasetOptions(
        name=name,
        score_roles=None if roles is None else tuple(r.strip() for r in roles.split(",") if r.strip()),
        chat_template=template,
        **given,
    )


def _build(
    paths: list[str] | None, glob: str | None, encoding: str, errors: DecodeErrors, max_bytes: int, **dataset: Any
) -> ReadSettings:
    if glob is not None and dataset["dataset"] is not None:
        raise UsageError("--glob picks files in folders given as paths, not in a --dataset")
    files = FileSettings(encoding, errors, max_bytes, glob)
    return ReadSettings(tuple(paths or ()), files, _dataset(dataset))


INPUTS = OptionGroup(
    {**_FILE_PARAMS, **_DATASET_PARAMS},
    _build,
    {
        "encoding": "utf-8",
        "errors": DecodeErrors.strict,
        "max_bytes": MAX_BYTES,
        "streaming": False,
        "skip_bad_records": False,
    },
)
