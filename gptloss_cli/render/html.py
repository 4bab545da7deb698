"""A self-contained HTML report of per-token surprisal: one file, no scripts, no external assets.

Every piece of document or model text goes through `html.escape` (attributes included), and
the page has no script element at all, so nothing in the input can run or load anything.
Characters that would hide or reorder text (bidi controls such as U+202E, zero-width and other
format characters, control characters) are shown as marks, as in the terminal (`format.visible`).
Tooltips are plain `title` attributes; the plot is inline SVG.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.analyses import PositionBuckets
from ..core.totals import Totals
from ..tasks.tokens import AnyRecord, TokenRecord, WordRecord
from .format import bucket, bucket_labels, marked, num, shown_token, visible
from .tokens import BITS_EDGES

PLOT_POINTS = 1200  # most points drawn in the NLL plot (the maximum of each bucket of positions)
PLOT_BUCKETS = 24  # buckets of context in the PPL-by-position plot
LN10 = math.log(10)
WORST = 20  # most surprising tokens listed per document
CONTEXT_CHARS = 40

CSS = """
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h1{font-size:1.3rem}h2{font-size:1.1rem;margin-top:2rem}
.meta{color:#555}.text{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:14px;
border:1px solid #ddd;padding:1rem;border-radius:6px;overflow-wrap:anywhere}
.t{border-radius:2px}.legend span{padding:0 .4rem;margin-right:.3rem;border-radius:2px}
table{border-collapse:collapse}td,th{padding:.15rem .6rem;text-align:right}td.l,th.l{text-align:left}
.ctx{font-family:ui-monospace,monospace;white-space:pre-wrap}.ctx mark{font-weight:bold}
svg{border:1px solid #ddd;border-radius:6px}
.u{color:#555;background:#eee;outline:1px dotted #999;font-size:.85em}
"""
# Light backgrounds for the page: same buckets as the terminal heatmap.
_BG = ("#e8f5e9", "#f1f8e9", "#fff9c4", "#ffe0b2", "#ffcdd2", "#e1bee7")


def escape(text: str) -> str:
    return html.escape(text, quote=True)


def shown(text: str, whitespace: bool = False) -> str:
    """Document or model text for the page: escaped, each character `format.visible` replaces as a mark
    (<U+202E>, ␛) in a span whose title names it; with `whitespace`, spaces and line ends shown (· ↵ →)."""
    return "".join(
        f'<span class="u" title="{escape(name)}">{escape(piece)}</span>' if name else escape(piece)
        for piece, name in marked(text, whitespace)
    )


def legend(edges: Sequence[float], colours: Sequence[str], between: str = "\u2013") -> str:
    labels = bucket_labels(edges, between)
    return "".join(
        f'<span style="background:{bg}">{escape(label)}</span>' for label, bg in zip(labels, colours, strict=True)
    )


def render_report(header: dict[str, Any], documents: Sequence[tuple[str, str, Sequence[AnyRecord], Totals]]) -> str:
    """The whole page. documents: (source, text, records, totals) each."""
    model = header["model"]
    settings = header["settings"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>gptloss \u00b7 {escape(model['spec'])}</title><style>{CSS}</style></head><body>",
        f"<h1>gptloss tokens \u00b7 {escape(model['spec'])}</h1>",
        f'<p class="meta">{escape(model["name"])} \u00b7 {escape(model["dtype"])} on {escape(model["device"])} \u00b7 '
        f"windows of {settings['max_length']} tokens, stride {settings['stride']} \u00b7 "
        f"unit {escape(settings['unit'])}</p>",
        f'<p class="legend">surprisal in bits: {legend(BITS_EDGES, _BG)}</p>',
    ]
    for source, text, records, totals in documents:
        parts.append(_document(source, text, records, totals, settings["unit"]))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _document(source: str, text: str, records: Sequence[AnyRecord], totals: Totals, unit: str) -> str:
    key = "word" if unit == "word" else "token"
    summary = (
        f"{totals.tokens_scored} tokens scored \u00b7 PPL {num(totals.perplexity, 2)} \u00b7 "
        f"bits/byte {num(totals.bits_per_byte, 4)} \u00b7 mean NLL {num(totals.mean_nll, 4)} nats"
    )
    return "\n".join(
        [
            f'<section><h2>{escape(visible(source))}</h2><p class="meta">{summary}</p>',
            f'<div class="text">{_spans(text, records, key)}</div>',
            _position_plot(records) if key == "token" else _plot(records),
            _worst(text, records, key),
            "</section>",
        ]
    )


def _tooltip(r: AnyRecord) -> str:
    lines = [f"#{r.index}  logprob {r.logprob:.3f}  ({r.bits:.2f} bits, p={r.prob:.4f})"]
    if isinstance(r, TokenRecord):
        lines.append(f"rank {r.rank}  entropy {r.entropy:.2f} nats  context {r.context}")
        lines += [f"{shown_token(t.token)}  {t.logprob:.3f}" for t in r.top]
    if isinstance(r, WordRecord):
        lines.append(f"{r.tokens} tokens")
    return "\n".join(lines)


def _spans(text: str, records: Sequence[AnyRecord], key: str) -> str:
    out, at = [], 0
    for r in sorted(records, key=lambda r: r.start):
        if r.start > at:
            out.append(shown(text[at : r.start]))
        bg = _BG[bucket(r.bits, BITS_EDGES)]
        out.append(
            f'<span class="t" data-i="{r.index}" style="background:{bg}" title="{escape(_tooltip(r))}">'
            f"{shown(text[r.start : r.end])}</span>"
        )
        at = max(at, r.end)
    out.append(shown(text[at:]))
    return "".join(out)


def peak_line(
    values: Sequence[float], points: int, width: int, base: float, span: float, floor: float
) -> tuple[str, float, int]:
    """SVG polyline points of the maximum of each run of `step` values (at most `points` of them), scaled so the
    largest (at least `floor`) reaches `base - span`; returns (points, that largest, step)."""
    step = max(1, math.ceil(len(values) / points))
    peaks = [max(values[i : i + step]) for i in range(0, len(values), step)]
    top = max(max(peaks), floor)
    n = max(1, len(peaks) - 1)
    return " ".join(f"{i * width / n:.1f},{base - v / top * span:.1f}" for i, v in enumerate(peaks)), top, step


def _plot(records: Sequence[AnyRecord], width: int = 900, height: int = 160) -> str:
    if not records:
        return ""
    points, top, step = peak_line([r.bits for r in records], PLOT_POINTS, width, height, height - 10, 1e-9)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="surprisal over position"><polyline fill="none" stroke="#b71c1c" stroke-width="1" '
        f'points="{points}"/><text x="4" y="14" font-size="12">max {top:.1f} bits</text>'
        f'<text x="{width - 4}" y="{height - 4}" font-size="12" text-anchor="end">position \u2192 '
        f"({len(records)} {'points' if step == 1 else f'points, max of each {step}'})</text></svg>"
    )


def _position_plot(records: Sequence[AnyRecord], width: int = 900, height: int = 180) -> str:
    """PPL by context position: the tokens' mean NLL in buckets of context, as PPL with its 95% band, on a log
    scale (the first bucket's PPL is often 1,000 times the rest's), with a line and a label at each power of 10."""
    tokens = [r for r in records if isinstance(r, TokenRecord)]
    if not tokens:
        return ""
    context = np.array([r.context for r in tokens], dtype=np.int64)  # (n,)
    bucket_width = max(1, math.ceil((int(context.max()) + 1) / PLOT_BUCKETS))
    nll = np.array([r.nll for r in tokens], dtype=np.float64)  # (n,)
    rows = [r for r in PositionBuckets.of(context, nll, bucket_width).rows() if r["tokens"]]
    mid = [(r["context_from"] + r["context_to"] - 1) / 2 for r in rows]
    log_ppl = [r["mean_nll"] / LN10 for r in rows]  # log10 PPL, finite where PPL itself overflows
    band = [
        [math.log10(v) for v in r["perplexity_ci95"]] if r["perplexity_ci95"] else [y, y]
        for r, y in zip(rows, log_ppl, strict=True)
    ]
    bottom = math.floor(min(min(b[0] for b in band), min(log_ppl)))  # whole powers of 10 bound the axis
    top = max(math.ceil(max(max(b[1] for b in band), max(log_ppl))), bottom + 1)
    right, left = max(mid[-1], 1.0), 48

    def y_of(y: float) -> float:
        return height - 20 - (min(max(y, bottom), top) - bottom) / (top - bottom) * (height - 40)

    def xy(x: float, y: float) -> str:
        return f"{left + x / right * (width - left - 8):.1f},{y_of(y):.1f}"

    line = " ".join(xy(x, y) for x, y in zip(mid, log_ppl, strict=True))
    upper = [xy(x, b[1]) for x, b in zip(mid, band, strict=True)]
    lower = [xy(x, b[0]) for x, b in zip(mid[::-1], band[::-1], strict=True)]
    area = " ".join(upper + lower)
    step = max(1, math.ceil((top - bottom) / 6))  # at most 7 lines
    ticks = "".join(
        f'<line x1="{left}" x2="{width - 8}" y1="{y_of(k):.1f}" y2="{y_of(k):.1f}" stroke="#e0e0e0"/>'
        f'<text x="{left - 4}" y="{y_of(k) + 4:.1f}" font-size="11" text-anchor="end">{_power_of_ten(k)}</text>'
        for k in range(bottom, top + 1, step)
    )
    highest = max(rows, key=lambda r: r["mean_nll"])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="perplexity by context position, log scale">{ticks}<polygon fill="#ef9a9a" '
        f'fill-opacity="0.5" stroke="none" points="{area}"/><polyline fill="none" stroke="#b71c1c" '
        f'stroke-width="1.5" points="{line}"/><text x="{left}" y="14" font-size="12">PPL by context position, '
        f"log scale (buckets of {bucket_width} tokens; band: 95% interval of the mean NLL) \u00b7 highest "
        f"{num(highest['perplexity'], 1)} at context {highest['context_from']}\u2013{highest['context_to'] - 1}</text>"
        f'<text x="{width - 4}" y="{height - 4}" font-size="12" text-anchor="end">tokens of context \u2192 '
        f"{int(context.max())}</text></svg>"
    )


def _power_of_ten(k: int) -> str:
    """10**k as an axis label: 0.01, 1, 1000, then 1e4, 1e5, ..."""
    return f"{10.0**k:g}" if -3 <= k <= 3 else f"1e{k}"


def _worst(text: str, records: Sequence[AnyRecord], key: str) -> str:
    worst = sorted(records, key=lambda r: r.nll, reverse=True)[:WORST]
    if not worst:
        return ""
    rows = []
    for r in worst:
        before = text[max(0, r.start - CONTEXT_CHARS) : r.start]
        after = text[r.end : r.end + CONTEXT_CHARS]
        best = r.top[0].token if isinstance(r, TokenRecord) and r.top else None
        expected = "" if best is None else shown(best, whitespace=True) or "\u2205"  # ∅: an empty token
        rows.append(
            f'<tr><td>{r.index}</td><td>{r.bits:.2f}</td><td class="l ctx">{shown(before)}'
            f"<mark>{shown(text[r.start : r.end])}</mark>{shown(after)}</td>"
            f'<td class="l ctx">{expected}</td></tr>'
        )
    return (
        f'<h3>Most surprising {key}s</h3><table><tr><th>#</th><th>bits</th><th class="l">in context</th>'
        f'<th class="l">model expected</th></tr>{"".join(rows)}</table>'
    )


# Δ NLL (B - A) colour scale: blue where B found the text easier, red where harder.
