"""`gptloss tokens`: per-token (or per-word) records as JSON, JSONL, CSV, a table, a heatmap or an HTML report."""

from __future__ import annotations

import csv
import json
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.rule import Rule
from rich.text import Text

from .console import emit, load, open_output, progress, write_atomic
from .dataset import DatasetOptions
from .errors import GptlossError
from .inputs import DecodeErrors
from .models import DEFAULT_MODEL, Device, Dtype
from .options import (
    BatchSizeOpt,
    BosOpt,
    DeviceOpt,
    DtypeOpt,
    EncodingOpt,
    ErrorsOpt,
    HtmlOpt,
    MaxLengthOpt,
    ModelOpt,
    OutputOpt,
    PathsArg,
    StrideOpt,
    TokenFormat,
    TokenFormatOpt,
    TopKOpt,
    TrustOpt,
    Unit,
    UnitOpt,
    dataset_options,
)
from .windows import BosPolicy


@dataset_options
def tokens(
    paths: PathsArg = None,
    model: ModelOpt = DEFAULT_MODEL,
    fmt: TokenFormatOpt = None,
    top_k: TopKOpt = 5,
    unit: UnitOpt = Unit.token,
    html: HtmlOpt = None,
    max_length: MaxLengthOpt = None,
    stride: StrideOpt = None,
    batch_size: BatchSizeOpt = 8,
    bos: BosOpt = BosPolicy.auto,
    device: DeviceOpt = Device.auto,
    dtype: DtypeOpt = Dtype.auto,
    output: OutputOpt = None,
    encoding: EncodingOpt = "utf-8",
    errors: ErrorsOpt = DecodeErrors.strict,
    trust_remote_code: TrustOpt = False,
    dataset: DatasetOptions | None = None,
) -> None:
    """Each token's log-probability, rank, entropy and the model's top choices; or each word's summed NLL.

    Records give character offsets into the text (text\\[start:end] == token). jsonl and csv are written
    as the windows are scored, so memory stays flat on long texts.
    """
    from .sources import documents_for, nothing_to_score, read_inputs, warn_unscored

    items = read_inputs(paths, encoding, errors, dataset)
    if html is not None and not html.parent.is_dir():
        raise GptlossError(f"{html}: the folder {html.parent} does not exist")
    loaded = load(model, device, dtype, trust_remote_code)
    documents = documents_for(items, loaded, dataset, bos)
    from .engine import WindowSettings
    from .records import TokenRun

    settings = WindowSettings(max_length=max_length, stride=stride, bos=bos, batch_size=batch_size)
    inputs = None if dataset is None else dataset.describe()
    run = TokenRun(loaded, documents, settings, top_k=top_k, unit=unit.value, inputs=inputs)
    if run.tokens_to_score() == 0:
        raise nothing_to_score(documents, dataset)
    fmt = fmt or (TokenFormat.table if html is None or output is not None else None)
    keep = html is not None or fmt in (TokenFormat.table, TokenFormat.heatmap, TokenFormat.json)
    collected: list[list[dict[str, Any]]] = [[] for _ in documents]
    with progress("scoring", len(documents)) as bar:
        bar.total(run.tokens_to_score())
        if fmt in (TokenFormat.jsonl, TokenFormat.csv):
            with open_output(output) as out:
                _stream(run, fmt, out, collected if keep else None, bar)
        else:
            for doc, records in run.chunks(bar.advance, bar.document):
                collected[doc].extend(records)
    warn_unscored(documents, run.totals)
    if fmt is TokenFormat.json:
        emit(_json(run, collected), output)
    elif fmt in (TokenFormat.table, TokenFormat.heatmap):
        emit(_view(run, collected, fmt, color=output is None), output)
    if html is not None:
        from .report import render_report

        pages = [
            (d.source, d.text, recs, t)
            for d, recs, t in zip(documents, collected, run.totals, strict=True)
            if t is not None
        ]
        write_atomic(html, render_report(run.header(), pages))
        if fmt is None:
            Console(stderr=True).print(f"wrote {html}", highlight=False, soft_wrap=True)


def _stream(run: Any, fmt: TokenFormat, out: Any, keep: list[list[dict[str, Any]]] | None, bar: Any) -> None:
    from .token_views import CSV_FIELDS, WORD_CSV_FIELDS, csv_rows

    writer = None
    if fmt is TokenFormat.csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(WORD_CSV_FIELDS if run.unit == "word" else CSV_FIELDS)
    else:
        out.write(json.dumps(run.header(), ensure_ascii=False, allow_nan=False) + "\n")
    for doc, records in run.chunks(bar.advance, bar.document):
        source = run.documents[doc].source
        if writer is not None:
            writer.writerows(csv_rows(source, records, run.unit))
        else:
            out.write("".join(_line({"source": source, **r}) for r in records))
        if keep is not None:
            keep[doc].extend(records)


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"


def _json(run: Any, collected: list[list[dict[str, Any]]]) -> str:
    from .render import to_json

    key = "words" if run.unit == "word" else "tokens"
    docs = [
        {"source": d.source, "totals": t.to_dict() if t is not None else None, key: recs}
        for d, recs, t in zip(run.documents, collected, run.totals, strict=True)
    ]
    return to_json({**run.header(), "documents": docs})


def _view(run: Any, collected: list[list[dict[str, Any]]], fmt: TokenFormat, color: bool) -> RenderableType:
    from .token_views import heatmap, legend, tokens_table

    if fmt is TokenFormat.table:
        return Group(
            *(tokens_table(d.source, recs, run.unit) for d, recs in zip(run.documents, collected, strict=True))
        )
    color = color and not Console().no_color and Console().color_system is not None
    parts: list[RenderableType] = [legend(color)]
    for doc, recs in zip(run.documents, collected, strict=True):
        parts += [Rule(Text(doc.source), align="left"), heatmap(doc.text, recs, color)]
    return Group(*parts)
