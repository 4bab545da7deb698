"""The `score` table: a row per document and the corpus total."""

from __future__ import annotations

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from ..core.totals import Totals
from ..tasks.score import ScoreResult
from .fit import FitNames
from .format import interval, middle_cut, num

MAX_ROWS = 20  # more documents than this (a dataset): the total row only


def _row(name: str, totals: Totals) -> list[str]:
    return [
        name,
        str(totals.tokens_scored),
        num(totals.perplexity, 2),
        interval(totals.perplexity_ci95),
        num(totals.bits_per_byte, 4),
        num(totals.word_perplexity, 1),
    ]


def _caption(result: ScoreResult) -> str:
    plan = result.plan
    bos = "none" if plan.bos_token_id is None else f"id {plan.bos_token_id}"
    caption = f"windows of {plan.max_length} tokens, stride {plan.stride}, BOS {bos}"
    if result.card is not None:
        caption = result.card.line()
    caption += "; the CI treats tokens as independent"
    if len(result.documents) > 1:
        total = result.corpus
        caption += (
            f"\nmacro mean of per-document PPL: {num(total.macro_mean_perplexity, 2)} "
            f"(each of the {sum(1 for d in result.documents if d.totals.tokens_scored)} documents with a scored "
            "token weighs the same; the total row weighs each token the same)"
        )
        if total.bootstrap is not None:
            caption += (
                f"\ncorpus PPL 95% bootstrap interval: {interval(total.bootstrap_ci95)} "
                f"({total.bootstrap.resamples} resamples of the documents, seed {total.bootstrap.seed})"
            )
    if len(result.documents) > MAX_ROWS:
        caption += f"\n{len(result.documents)} documents: per-document rows in -f json or jsonl"
    return caption


def score_table(result: ScoreResult) -> RenderableType:
    """One row per document and a total row (micro average: sums over all scored tokens).

    Six columns, so the table fits an 80-column terminal; JSON has every field. File names stay on one
    line, cut in the middle when the terminal is too narrow.
    """
    shown = result.documents if len(result.documents) <= MAX_ROWS else []

    def build(width: int | None) -> Table:
        table = Table(
            title=Text(f"{result.model.spec} · {result.model.dtype} on {result.model.device}"),
            caption=_caption(result),
            caption_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            show_footer=len(result.documents) > 1,
        )
        headers = ["source", "tokens", "PPL", "PPL 95% CI", "bits/byte", "word PPL"]
        footer = _row("total", result.total)
        table.add_column(headers[0], footer=Text(footer[0], style="bold"), no_wrap=True)
        for header, foot in zip(headers[1:], footer[1:], strict=True):
            table.add_column(header, footer=Text(foot, style="bold"), justify="right")
        for doc in shown:
            name = doc.source if width is None else middle_cut(doc.source, width)
            table.add_row(*(Text(cell) for cell in _row(name, doc.totals)))  # a file name is not markup
        return table

    return FitNames(build, max((len(d.source) for d in shown), default=0))
