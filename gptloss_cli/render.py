"""Results -> rich renderables and JSON text. Nothing here prints."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from .api import ScoreResult
    from .stats import Totals

DASH = "—"


def to_json(data: dict[str, Any]) -> str:
    """Strict JSON (no NaN or Infinity), two-space indented, ending in a newline."""
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return DASH
    if value >= 1e5:
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def _ci(ci: tuple[float, float] | list[float] | None) -> str:
    return DASH if ci is None else f"{_num(ci[0], 2)}–{_num(ci[1], 2)}"


def _row(name: str, totals: Totals) -> list[str]:
    return [
        name,
        str(totals.tokens_scored),
        _num(totals.perplexity, 2),
        _ci(totals.perplexity_ci95),
        _num(totals.bits_per_byte, 4),
        _num(totals.word_perplexity, 1),
    ]


MAX_ROWS = 20  # more documents than this (a dataset): the total row only


def score_table(result: ScoreResult) -> Table:
    """One row per document and a total row (micro average: sums over all scored tokens).

    Six columns, so the table fits an 80-column terminal; JSON has every field.
    """
    info, plan = result.model, result.plan
    bos = "none" if plan.bos_token_id is None else f"id {plan.bos_token_id}"
    caption = (
        f"windows of {plan.max_length} tokens, stride {plan.stride}, BOS {bos}; the CI treats tokens as independent"
    )
    many = len(result.documents) > 1
    if many:
        total = result.total_dict()
        caption += (
            f"\nmacro mean of per-document PPL: {_num(total['macro_mean_perplexity'], 2)} "
            f"(each of the {sum(1 for d in result.documents if d.totals.tokens_scored)} documents with a scored "
            "token weighs the same; the total row weighs each token the same)"
        )
        if "bootstrap_ci95" in total:
            boot = total["bootstrap"]
            caption += (
                f"\ncorpus PPL 95% bootstrap interval: {_ci(total['bootstrap_ci95'])} "
                f"({boot['resamples']} resamples of the documents, seed {boot['seed']})"
            )
    shown = result.documents if len(result.documents) <= MAX_ROWS else []
    if len(shown) < len(result.documents):
        caption += f"\n{len(result.documents)} documents: per-document rows in -f json or jsonl"
    table = Table(
        title=Text(f"{info.spec} · {info.dtype} on {info.device}"),
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_footer=many,
    )
    headers = ["source", "tokens", "PPL", "PPL 95% CI", "bits/byte", "word PPL"]
    footer = _row("total", result.total)
    longest = max(len(d.source) for d in result.documents)
    table.add_column(headers[0], footer=Text(footer[0], style="bold"), overflow="fold", min_width=min(longest, 24))
    for header, foot in zip(headers[1:], footer[1:], strict=True):
        table.add_column(header, footer=Text(foot, style="bold"), justify="right")
    for doc in shown:
        table.add_row(*(Text(cell) for cell in _row(doc.source, doc.totals)))  # a file name is not markup
    return table
