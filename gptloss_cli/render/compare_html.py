"""compare's HTML report: one self-contained page, no script, every piece of text escaped (and characters
that would hide or reorder it shown as marks, as in the `tokens` report).

With one tokenizer each document is shown twice, coloured by the per-token KL(P_A‖P_B) and by Δ NLL, each on
a scale taken from the comparison's own percentiles, so that even a bf16-vs-fp32 or Q4-vs-Q8 comparison (tiny
differences everywhere) shows where they are; then KL along the text and a histogram of per-token KL, as
inline SVG. Across tokenizers: Δ NLL per word.
"""

from __future__ import annotations

import numpy as np

from ..core.totals import Totals
from ..tasks.compare.result import CompareResult, DocumentPair
from ..tasks.compare.stats import Distribution, Paired
from .compare import word_ppl
from .format import num, visible
from .html import CSS, escape, peak_line, shown

SCALE = (50.0, 75.0, 90.0, 95.0, 99.0)  # percentiles that bound the colour steps
KL_BG = ("#ffffff", "#fff3e0", "#ffe0b2", "#ffb74d", "#f57c00", "#bf360c")
BETTER_BG = ("#ffffff", "#e3f2fd", "#bbdefb", "#90caf9", "#42a5f5", "#1565c0")  # B lower NLL
WORSE_BG = ("#ffffff", "#ffebee", "#ffcdd2", "#ef9a9a", "#e57373", "#c62828")  # B higher NLL
BINS = 40


def _edges(values: np.ndarray) -> list[float]:
    """Colour-step bounds from the data's own percentiles (strictly increasing; few when the data are flat)."""
    if len(values) == 0:
        return []
    points = np.percentile(values, SCALE).tolist()
    return [p for i, p in enumerate(points) if p > 0 and (i == 0 or p > points[i - 1])]


def _step(value: float, edges: list[float]) -> int:
    return int(np.searchsorted(edges, value, side="right")) if edges else 0


def _legend(edges: list[float], colours: tuple[str, ...], what: str) -> str:
    cells = [f'<span style="background:{colours[0]}">&lt; {edges[0]:.3g}</span>'] if edges else []
    for i, low in enumerate(edges):
        high = f"{edges[i + 1]:.3g}" if i + 1 < len(edges) else "\u2026"
        cells.append(f'<span style="background:{colours[min(i + 1, len(colours) - 1)]}">{low:.3g}\u2013{high}</span>')
    steps = ", ".join(f"{p:g}" for p in SCALE)
    return f'<p class="legend">{escape(what)} (steps at the {steps}th percentiles): {"".join(cells)}</p>'


def render_compare_report(result: CompareResult) -> str:
    a, b = result.a, result.b
    paired, dist = result.paired, result.distribution
    kl_all = np.concatenate([d.kld for d in result.documents if d.kld is not None] or [np.zeros(0)])
    delta_all = np.concatenate([d.nll_b - d.nll_a for d in result.documents] or [np.zeros(0)])
    kl_edges, delta_edges = _edges(kl_all), _edges(np.abs(delta_all))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>gptloss compare \u00b7 {escape(a.spec)} vs {escape(b.spec)}</title><style>{CSS}</style></head><body>",
        f"<h1>A: {escape(a.spec)} ({escape(a.dtype)}) \u00b7 B: {escape(b.spec)} ({escape(b.dtype)})</h1>",
        f'<p class="meta">{escape(_paired_line(result.totals("a"), result.totals("b"), paired, dist))}</p>',
    ]
    if dist is not None:
        parts.append(_legend(kl_edges, KL_BG, "KL(P_A\u2016P_B) per token, nats"))
        parts.append(_histogram(kl_all))
    parts.append(_legend(delta_edges, WORSE_BG, f"|\u0394 NLL| per {paired.unit} (red: B worse, blue: B better)"))
    for doc in result.documents:
        line = _paired_line(doc.totals_a, doc.totals_b, doc.paired(result.unit), doc.distribution())
        parts.append(f'<section><h2>{escape(visible(doc.source))}</h2><p class="meta">{escape(line)}</p>')
        if doc.kld is not None and dist is not None:
            parts.append(f'<h3>KL per token</h3><div class="text">{_spans(doc, doc.kld, kl_edges, "kl")}</div>')
            parts.append(_trace(doc.kld))
        delta = doc.nll_b - doc.nll_a
        parts.append(f'<h3>\u0394 NLL</h3><div class="text">{_spans(doc, delta, delta_edges, "delta")}</div>')
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _paired_line(ta: Totals, tb: Totals, p: Paired, dist: Distribution | None) -> str:
    """Each model's PPL (per word across tokenizers, as the table: the B/A of the paired words), bits per byte,
    the mean Δ NLL, and the distribution comparison when there is one."""
    if p.unit == "word":
        ppl = f"word PPL A {num(word_ppl(p, 'a'), 2)}, B {num(word_ppl(p, 'b'), 2)}, B/A {num(p.ppl_ratio, 4)}"
    else:
        ppl = f"PPL A {num(ta.perplexity, 2)}, B {num(tb.perplexity, 2)}"
    line = (
        f"{ppl} \u00b7 "
        f"bits/byte A {num(ta.bits_per_byte, 4)}, B {num(tb.bits_per_byte, 4)} \u00b7 "
        f"mean \u0394 NLL {num(p.mean_delta_nll, 4)} \u00b1 {num(p.stderr, 4)} over {p.n} {p.unit}s"
    )
    if dist:
        line += f" \u00b7 mean KL {dist.mean_kld:.5f} \u00b7 same top-1 {dist.same_top1:.3f}"
    return line


def _spans(doc: DocumentPair, values: np.ndarray, edges: list[float], kind: str) -> str:
    """The text with each paired span's background by its value's step on `edges`."""
    out, at = [], 0
    text = doc.text
    rows = sorted(zip(doc.spans.tolist(), values.tolist(), doc.nll_a.tolist(), doc.nll_b.tolist(), strict=True))
    for (start, end), value, nll_a, nll_b in rows:
        if start > at:
            out.append(shown(text[at:start]))
        if kind == "kl":
            bg = KL_BG[min(_step(value, edges), len(KL_BG) - 1)]
            tip = f"KL {value:.6f} nats \u00b7 NLL A {nll_a:.4f}, B {nll_b:.4f}"
        else:
            colours = WORSE_BG if value > 0 else BETTER_BG
            bg = colours[min(_step(abs(value), edges), len(colours) - 1)]
            tip = f"\u0394 NLL {value:+.6f} \u00b7 NLL A {nll_a:.4f}, B {nll_b:.4f}"
        out.append(f'<span class="t" style="background:{bg}" title="{escape(tip)}">{shown(text[start:end])}</span>')
        at = max(at, end)
    out.append(shown(text[at:]))
    return "".join(out)


def _trace(kld: np.ndarray, width: int = 900, height: int = 120, points: int = 600) -> str:
    """KL along the text: the maximum of each run of positions."""
    if len(kld) == 0:
        return ""
    line, top, _ = peak_line(kld.tolist(), points, width, height - 14, height - 28, 1e-12)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="KL along the text"><polyline fill="none" stroke="#bf360c" stroke-width="1" points="{line}"/>'
        f'<text x="4" y="12" font-size="11">KL along the text, max {top:.3g} nats</text></svg>'
    )


def _histogram(kld: np.ndarray, width: int = 900, height: int = 140) -> str:
    """Per-token KL in BINS bins from 0 to its 99.9th percentile (the rest in the last bin)."""
    if len(kld) == 0:
        return ""
    high = max(float(np.percentile(kld, 99.9)), 1e-12)
    counts, _ = np.histogram(np.clip(kld, 0.0, high), bins=BINS, range=(0.0, high))
    top = max(int(counts.max()), 1)
    bar = (width - 8) / BINS
    rects = "".join(
        f'<rect x="{4 + i * bar:.1f}" y="{height - 16 - c / top * (height - 32):.1f}" width="{bar - 1:.1f}" '
        f'height="{c / top * (height - 32):.1f}" fill="#f57c00"/>'
        for i, c in enumerate(counts.tolist())
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="histogram of per-token KL">{rects}<text x="4" y="12" font-size="11">per-token KL: '
        f"{len(kld)} tokens in {BINS} bins from 0 to {high:.3g} nats (the 99.9th percentile)</text></svg>"
    )
