"""The `compare` table: each model's PPL and bits per byte, the paired Δ NLL, KL and the largest differences."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..core.totals import Totals
from ..models.spec import ModelInfo
from ..tasks.compare_result import CompareResult, Distribution, DocumentPair, Paired
from .analyses import detection_table
from .fit import FitNames
from .format import interval, middle_cut, num, shown_token
from .score import MAX_ROWS


def _label(model: ModelInfo) -> str:
    return f"{model.spec} · {model.dtype}"


def _row(name: str, a: Totals, b: Totals, paired: Paired) -> list[str]:
    delta = "—" if paired.mean_delta_nll is None else f"{paired.mean_delta_nll:+.4f} ± {num(paired.stderr, 4)}"
    return [
        name,
        num(a.perplexity, 2),
        num(b.perplexity, 2),
        num(paired.ppl_ratio, 4),  # per paired unit: per word when the tokenizers differ
        delta,
        num(a.bits_per_byte, 4),
        num(b.bits_per_byte, 4),
    ]


def _table(result: CompareResult, width: int | None) -> Table:
    table = Table(
        title=Text(f"A: {_label(result.a)}   B: {_label(result.b)}"),
        caption=f"Δ NLL = B − A per {result.unit} (nats), ± paired standard error; B/A = exp(mean Δ NLL)",
        caption_justify="left",
        box=None,
        pad_edge=False,
        show_footer=len(result.documents) > 1,
    )
    total_row = _row("total", result.totals("a"), result.totals("b"), result.paired)
    for header, foot in zip(
        ["source", "PPL A", "PPL B", "B/A", "Δ NLL ± SE", "bpb A", "bpb B"], total_row, strict=True
    ):
        left = header == "source"
        table.add_column(header, footer=Text(foot, style="bold"), justify="left" if left else "right", no_wrap=left)
    for doc in _shown(result):
        name = doc.source if width is None else middle_cut(doc.source, width)
        table.add_row(*(Text(c) for c in _row(name, doc.totals_a, doc.totals_b, doc.paired(result.unit))))
    return table


def _shown(result: CompareResult) -> list[DocumentPair]:
    return result.documents if len(result.documents) <= MAX_ROWS else []


def _notes(result: CompareResult) -> list[str]:
    notes = []
    if len(_shown(result)) < len(result.documents):
        notes.append(f"{len(result.documents)} documents: per-document rows in -f json")
    paired = result.paired
    if paired.bootstrap is not None:
        notes.append(
            f"B/A 95% bootstrap interval: {interval(paired.ppl_ratio_bootstrap_ci95, 4)} "
            f"({paired.bootstrap.resamples} resamples of the documents, seed {paired.bootstrap.seed})"
        )
    return notes


def _distribution_line(dist: Distribution | None) -> str:
    if dist is None:
        return "different tokenizers: no per-position distribution comparison; paired by word"
    kld = dist.kld_percentiles
    return (
        f"KL(A‖B) mean {dist.mean_kld:.5f} ± {num(dist.mean_kld_stderr, 5)} nats "
        f"(median {kld['50']:.5f}, 99% {kld['99']:.5f}, max {kld['max']:.4f}) · "
        f"same top-1 {dist.same_top1:.3f} · "
        f"Δp mean {dist.delta_p_mean:+.5f}, RMS {dist.rms_delta_p:.5f}"
    )


def _differences(result: CompareResult, width: int | None) -> Table:
    tops = Table(title=f"largest |Δ NLL| ({result.unit}s)", box=None, pad_edge=False, title_justify="left")
    for header in ("source", "text", "NLL A", "NLL B", "Δ"):
        tops.add_column(header, justify="left" if header in ("source", "text") else "right", no_wrap=header == "source")
    for t in result.top_differences():
        source = t.source if width is None else middle_cut(t.source, width)
        cells = [source, shown_token(t.text), f"{t.nll_a:.2f}", f"{t.nll_b:.2f}", f"{t.delta_nll:+.2f}"]
        tops.add_row(*(Text(c) for c in cells))
    return tops


def compare_view(result: CompareResult) -> RenderableType:
    longest = max((len(d.source) for d in _shown(result)), default=0)
    parts: list[RenderableType] = [FitNames(lambda width: _table(result, width), longest)]
    parts += [Text(n) for n in _notes(result)]
    parts.append(Text(_distribution_line(result.distribution)))
    if result.top_differences():
        longest = max(len(t.source) for t in result.top_differences())
        parts.append(FitNames(lambda width: _differences(result, width), longest))
    found = detection_table(result.detection)
    return Group(*parts, *([found] if found else []))
