"""The `compare` table: each model's PPL and bits per byte, the paired Δ NLL, KL and the largest differences."""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..core.totals import Totals
from ..models.spec import ModelInfo
from ..tasks.compare.result import CompareResult, DocumentPair, FailedCandidate
from ..tasks.compare.stats import Distribution, Paired
from .analyses import detection_table
from .fit import FitNames
from .format import interval, middle_cut, num, shown_token, visible
from .score import MAX_ROWS


def _label(model: ModelInfo) -> str:
    return f"{model.spec} · {model.dtype}"


def word_ppl(paired: Paired, side: str) -> float | None:
    """exp(mean NLL per paired word) of one model: across tokenizers, the PPL whose ratio B/A is."""
    ratio = paired.llama_cpp
    ln_ppl = None if ratio is None else ratio.ln_ppl_a if side == "a" else ratio.ln_ppl_b
    return None if ln_ppl is None or ln_ppl > 700 else math.exp(ln_ppl)


def _row(name: str, a: Totals, b: Totals, paired: Paired) -> list[str]:
    """One row; across tokenizers (paired by word) every number is per word, so that B/A is the ratio of the
    two PPLs beside it (each model's per-token PPL counts other tokens: it is in -f json)."""
    delta = "—" if paired.mean_delta_nll is None else f"{paired.mean_delta_nll:+.4f} ± {num(paired.stderr, 4)}"
    by_word = paired.unit == "word"
    return [
        name,
        num(word_ppl(paired, "a") if by_word else a.perplexity, 2),
        num(word_ppl(paired, "b") if by_word else b.perplexity, 2),
        num(paired.ppl_ratio, 4),
        delta,
        num(a.bits_per_byte, 4),
        num(b.bits_per_byte, 4),
    ]


def _table(result: CompareResult, width: int | None) -> Table:
    unit = result.unit
    caption = f"Δ NLL = B − A per {unit} (nats), ± paired standard error; B/A = exp(mean Δ NLL)"
    if unit == "word":
        caption += (
            " = word PPL B / word PPL A; word PPL = exp(mean NLL of a word, its tokens' summed) over the words "
            "both models scored; the tokenizers differ, so per-token PPLs (in -f json) count different tokens"
        )
    table = Table(
        title=Text(f"A: {_label(result.a)}   B: {_label(result.b)}"),
        caption=caption,
        caption_justify="left",
        box=None,
        pad_edge=False,
        show_footer=len(result.documents) > 1,
    )
    total_row = _row("total", result.totals("a"), result.totals("b"), result.paired)
    ppl = "word PPL" if unit == "word" else "PPL"
    for header, foot in zip(
        ["source", f"{ppl} A", f"{ppl} B", "B/A", "Δ NLL ± SE", "bpb A", "bpb B"], total_row, strict=True
    ):
        left = header == "source"
        table.add_column(header, footer=Text(foot, style="bold"), justify="left" if left else "right", no_wrap=left)
    for doc in _shown(result):
        name = visible(doc.source) if width is None else middle_cut(visible(doc.source), width)
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


def _percentile_name(key: str) -> str:
    return {"max": "Maximum", "50": "Median", "min": "Minimum"}.get(key) or f"{float(key):4.1f}%"


def llama_cpp_block(paired: Paired, dist: Distribution) -> str:
    """The report llama-perplexity --kl-divergence prints, same definitions, B as Q and A as base."""
    ratio = paired.llama_cpp
    if ratio is None:
        return ""
    u_a, u_b, cov = ratio.ln_ppl_a_stderr or 0.0, ratio.ln_ppl_b_stderr or 0.0, ratio.ln_ppl_covariance or 0.0
    ppl_a, ppl_b = math.exp(ratio.ln_ppl_a), math.exp(ratio.ln_ppl_b)
    ppl_ratio, u_ratio = math.exp(ratio.ln_ppl_ratio), ratio.ln_ppl_ratio_stderr or 0.0
    u_diff = math.sqrt(max(0.0, (ppl_a * u_a) ** 2 + (ppl_b * u_b) ** 2 - 2 * cov * ppl_a * ppl_b))
    cor = "—" if ratio.ln_ppl_correlation is None else f"{100 * ratio.ln_ppl_correlation:6.2f}%"
    lines = [
        "====== Perplexity statistics ======",
        f"Mean PPL(Q)                   : {ppl_b:10.6f} ± {ppl_b * u_b:10.6f}",
        f"Mean PPL(base)                : {ppl_a:10.6f} ± {ppl_a * u_a:10.6f}",
        f"Cor(ln(PPL(Q)), ln(PPL(base))): {cor}",
        f"Mean ln(PPL(Q)/PPL(base))     : {ratio.ln_ppl_ratio:10.6f} ± {u_ratio:10.6f}",
        f"Mean PPL(Q)/PPL(base)         : {ppl_ratio:10.6f} ± {ppl_ratio * u_ratio:10.6f}",
        f"Mean PPL(Q)-PPL(base)         : {ppl_b - ppl_a:10.6f} ± {u_diff:10.6f}",
        "",
        "====== KL divergence statistics ======",
        f"Mean    KLD: {dist.mean_kld:10.6f} ± {dist.mean_kld_stderr or 0.0:10.6f}",
    ]
    lines += [f"{_percentile_name(k):<7} KLD: {v:10.6f}" for k, v in dist.kld_percentiles.items()]
    if dist.mean_kld_reverse is not None:
        lines.append(
            f"Mean reverse KLD (Q‖base): {dist.mean_kld_reverse:10.6f} ± {dist.mean_kld_reverse_stderr or 0.0:10.6f}"
        )
    lines += ["", "====== Token probability statistics ======"]
    lines.append(f"Mean    Δp: {100 * dist.delta_p_mean:6.3f} ± {100 * (dist.delta_p_stderr or 0.0):5.3f} %")
    lines += [f"{_percentile_name(k):<7} Δp: {100 * v:6.3f}%" for k, v in dist.delta_p_percentiles.items()]
    lines.append(f"RMS Δp    : {100 * dist.rms_delta_p:6.3f} %")
    lines.append(f"Same top p: {100 * dist.same_top1:6.3f} ± {100 * (dist.same_top1_stderr or 0.0):5.3f} %")
    return "\n".join(lines)


def _differences(result: CompareResult, width: int | None) -> Table:
    tops = Table(title=f"largest |Δ NLL| ({result.unit}s)", box=None, pad_edge=False, title_justify="left")
    for header in ("source", "text", "NLL A", "NLL B", "Δ"):
        tops.add_column(header, justify="left" if header in ("source", "text") else "right", no_wrap=header == "source")
    for t in result.top_differences():
        source = visible(t.source) if width is None else middle_cut(visible(t.source), width)
        cells = [source, shown_token(t.text), f"{t.nll_a:.2f}", f"{t.nll_b:.2f}", f"{t.delta_nll:+.2f}"]
        tops.add_row(*(Text(c) for c in cells))
    return tops


def compare_view(result: CompareResult) -> RenderableType:
    longest = max((len(d.source) for d in _shown(result)), default=0)
    parts: list[RenderableType] = [FitNames(lambda width: _table(result, width), longest)]
    parts += [Text(n) for n in _notes(result)]
    parts.append(Text(_distribution_line(result.distribution)))
    if result.binoculars:
        parts.append(Text(f"Binoculars (A observes, B performs), pooled: {num(result.binoculars_score, 5)}"))
    if result.distribution is not None:
        parts.append(Text(llama_cpp_block(result.paired, result.distribution)))
    if result.top_differences():
        longest = max(len(t.source) for t in result.top_differences())
        parts.append(FitNames(lambda width: _differences(result, width), longest))
    found = detection_table(result.detection)
    return Group(*parts, *([found] if found else []))


def sweep_json(results: list[CompareResult | FailedCandidate]) -> dict[str, Any]:
    """Several candidates against one base: the base, and each candidate's whole comparison (or its error)."""
    base = next((r.a for r in results if isinstance(r, CompareResult)), None)
    return {
        "schema": "gptloss.compare-sweep/v1",
        "base": None if base is None else base.to_dict(),
        "candidates": [r.to_dict() for r in results],
    }


def sweep_view(results: list[CompareResult | FailedCandidate]) -> RenderableType:
    """The candidates' table, then why each failed one failed."""
    failures = [Text(f"{r.spec} · {r.dtype}: {r.error}") for r in results if isinstance(r, FailedCandidate)]
    return Group(sweep_table(results), *failures)


def sweep_table(results: list[CompareResult | FailedCandidate]) -> Table:
    """One row per candidate against the base: PPL, ln(PPL(Q)/PPL(base)) ± as llama-perplexity, KL, top-1."""
    base = next(r for r in results if isinstance(r, CompareResult))
    table = Table(
        title=Text(f"against {base.a.spec} · {base.a.dtype} (PPL {num(base.totals('a').perplexity, 4)})"),
        caption="ln ratio: mean ln(PPL(candidate)/PPL(base)) ± its uncertainty with the covariance term "
        "(llama-perplexity's; — across tokenizers); mean KL(base‖candidate) in nats; -f json has every statistic",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for header in ("candidate", "PPL", "ln ratio ± u", "mean KL", "same top-1"):
        table.add_column(header, justify="left" if header == "candidate" else "right")
    for r in results:
        if isinstance(r, FailedCandidate):
            table.add_row(Text(f"{r.spec} · {r.dtype}"), "failed", "(below)", "", "")
            continue
        ratio = r.paired.llama_cpp if r.same_vocabulary else None  # per word across tokenizers: not a PPL ratio
        dist = r.distribution
        spread = "" if ratio is None or ratio.ln_ppl_ratio_stderr is None else f" ± {ratio.ln_ppl_ratio_stderr:.5f}"
        table.add_row(
            Text(f"{r.b.spec} · {r.b.dtype}"),
            num(r.totals("b").perplexity, 4),
            "—" if ratio is None else f"{ratio.ln_ppl_ratio:+.5f}{spread}",
            "—" if dist is None else f"{dist.mean_kld:.6f}",
            "—" if dist is None else f"{100 * dist.same_top1:.2f}%",
        )
    return table
