"""score's analyses as tables: loss by context position (with a sparkline), membership scores per document,
and how well each per-document score separates the labels."""

from __future__ import annotations

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from ..tasks.analyses import Detection
from ..tasks.score import ScoreResult
from .format import interval, num

SPARKS = "▁▂▃▄▅▆▇█"
MAX_ROWS = 20


def sparkline(values: list[float | None]) -> str:
    """One character per value, its height by value between the smallest and the largest (gaps: space)."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = high - low or 1.0
    return "".join(" " if v is None else SPARKS[round((v - low) / span * (len(SPARKS) - 1))] for v in values)


def by_position_table(result: ScoreResult) -> Table | None:
    buckets = result.corpus.by_position
    if buckets is None:
        return None
    rows = buckets.rows()
    means = [r["mean_nll"] for r in rows]
    table = Table(
        title=f"loss by context position (buckets of {buckets.width} tokens)",
        caption=f"mean NLL by bucket: {sparkline(means)}  (high to the left: early tokens are harder)",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for header in ("context", "tokens", "mean NLL", "± SE", "PPL", "PPL 95% CI"):
        table.add_column(header, justify="right")
    for r in rows:
        ci = None if r["perplexity_ci95"] is None else tuple(r["perplexity_ci95"])
        table.add_row(
            f"{r['context_from']}–{r['context_to'] - 1}",
            str(r["tokens"]),
            num(r["mean_nll"], 4),
            num(r["stderr_mean_nll"], 4),
            num(r["perplexity"], 2),
            interval(ci),
        )
    return table


def membership_table(result: ScoreResult) -> Table | None:
    shown = [d for d in result.documents if d.analyses.membership is not None]
    if not shown or len(shown) > MAX_ROWS:
        return None
    k = shown[0].analyses.membership.k if shown[0].analyses.membership else None
    table = Table(
        title=f"membership scores (k = {k})",
        caption="Min-K% and Min-K%++: mean of the lowest k of log p and of its z-scores; zlib: mean NLL / zlib bytes",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("source", no_wrap=True)
    for header in ("Min-K%", "Min-K%++", "zlib ratio"):
        table.add_column(header, justify="right")
    for d in shown:
        m = d.analyses.membership
        if m is not None:
            table.add_row(Text(d.source), num(m.min_k_prob, 4), num(m.min_k_plus_plus, 4), num(m.zlib_ratio, 5))
    return table


def detection_table(found: list[Detection] | None) -> Table | None:
    """How well each per-document score separates the labels (score and compare)."""
    if not found:
        return None
    first = found[0]
    table = Table(
        title=f"separating the labels ({first.documents[0]} labelled 1, {first.documents[1]} labelled 0)",
        caption="AUROC: P(a label-1 document scores beyond a label-0 one), ties count half; "
        "TPR at FPR: label-1 documents caught when at most that share of label-0 ones is",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for header in ("score", "label 1 when", "AUROC", "TPR@1%FPR", "TPR@5%FPR"):
        table.add_column(header, justify="right" if header not in ("score", "label 1 when") else "left")
    for d in found:
        rates = [num(r["tpr"], 3) for r in d.tpr_at_fpr]
        table.add_row(d.score, d.positive_when, num(d.auroc, 4), *rates)
    return table


def analyses_view(result: ScoreResult) -> list[RenderableType]:
    """The tables of the analyses asked for (none: an empty list)."""
    tables = (by_position_table(result), membership_table(result), detection_table(result.corpus.detection))
    return [t for t in tables if t]
