"""A self-contained HTML report of per-token surprisal: one file, no scripts, no external assets.

Every piece of document or model text goes through `html.escape` (attributes included), and
the page has no script element at all, so nothing in the input can run or load anything.
Tooltips are plain `title` attributes; the plot is inline SVG.
"""

from __future__ import annotations

import html
import math
from typing import Any

from .stats import Totals
from .token_views import BITS_EDGES, bucket

PLOT_POINTS = 1200  # most points drawn in the NLL plot (the maximum of each bucket of positions)
WORST = 20  # most surprising tokens listed per document
CONTEXT_CHARS = 40

_CSS = """
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h1{font-size:1.3rem}h2{font-size:1.1rem;margin-top:2rem}
.meta{color:#555}.text{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:14px;
border:1px solid #ddd;padding:1rem;border-radius:6px;overflow-wrap:anywhere}
.t{border-radius:2px}.legend span{padding:0 .4rem;margin-right:.3rem;border-radius:2px}
table{border-collapse:collapse}td,th{padding:.15rem .6rem;text-align:right}td.l,th.l{text-align:left}
.ctx{font-family:ui-monospace,monospace;white-space:pre-wrap}.ctx mark{font-weight:bold}
svg{border:1px solid #ddd;border-radius:6px}
"""
# Light backgrounds for the page: same buckets as the terminal heatmap.
_BG = ("#e8f5e9", "#f1f8e9", "#fff9c4", "#ffe0b2", "#ffcdd2", "#e1bee7")


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "\u2014" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def render_report(header: dict[str, Any], documents: list[tuple[str, str, list[dict[str, Any]], Totals]]) -> str:
    """The whole page. documents: (source, text, records, totals) each."""
    model = header["model"]
    settings = header["settings"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>gptloss \u00b7 {_e(model['spec'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>gptloss tokens \u00b7 {_e(model['spec'])}</h1>",
        f'<p class="meta">{_e(model["name"])} \u00b7 {_e(model["dtype"])} on {_e(model["device"])} \u00b7 '
        f"windows of {settings['max_length']} tokens, stride {settings['stride']} \u00b7 unit {_e(settings['unit'])}"
        "</p>",
        _legend(),
    ]
    for source, text, records, totals in documents:
        parts.append(_document(source, text, records, totals, settings["unit"]))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _legend() -> str:
    labels = [f"&lt;{BITS_EDGES[0]:g}"]
    labels += [f"{lo:g}\u2013{hi:g}" for lo, hi in zip(BITS_EDGES, BITS_EDGES[1:], strict=False)]
    labels.append(f"\u2265{BITS_EDGES[-1]:g}")
    spans = "".join(f'<span style="background:{bg}">{label}</span>' for label, bg in zip(labels, _BG, strict=True))
    return f'<p class="legend">surprisal in bits: {spans}</p>'


def _document(source: str, text: str, records: list[dict[str, Any]], totals: Totals, unit: str) -> str:
    key = "word" if unit == "word" else "token"
    summary = (
        f"{totals.tokens_scored} tokens scored \u00b7 PPL {_fmt(totals.perplexity, 2)} \u00b7 "
        f"bits/byte {_fmt(totals.bits_per_byte, 4)} \u00b7 mean NLL {_fmt(totals.mean_nll, 4)} nats"
    )
    return "\n".join(
        [
            f'<section><h2>{_e(source)}</h2><p class="meta">{summary}</p>',
            f'<div class="text">{_spans(text, records, key)}</div>',
            _plot(records),
            _worst(text, records, key),
            "</section>",
        ]
    )


def _tooltip(r: dict[str, Any]) -> str:
    lines = [f"#{r['index']}  logprob {r['logprob']:.3f}  ({r['bits']:.2f} bits, p={r['prob']:.4f})"]
    if "rank" in r:
        lines.append(f"rank {r['rank']}  entropy {r['entropy']:.2f} nats  context {r['context']}")
    if "tokens" in r:
        lines.append(f"{r['tokens']} tokens")
    for t in r.get("top", []):
        lines.append(f"{t['token']!r}  {t['logprob']:.3f}")
    return "\n".join(lines)


def _spans(text: str, records: list[dict[str, Any]], key: str) -> str:
    out, at = [], 0
    for r in sorted(records, key=lambda r: r["start"]):
        if r["start"] > at:
            out.append(_e(text[at : r["start"]]))
        bg = _BG[bucket(r["bits"])]
        out.append(
            f'<span class="t" data-i="{r["index"]}" style="background:{bg}" title="{_e(_tooltip(r))}">'
            f"{_e(text[r['start'] : r['end']])}</span>"
        )
        at = max(at, r["end"])
    out.append(_e(text[at:]))
    return "".join(out)


def _plot(records: list[dict[str, Any]], width: int = 900, height: int = 160) -> str:
    if not records:
        return ""
    values = [r["bits"] for r in records]
    step = max(1, math.ceil(len(values) / PLOT_POINTS))
    peaks = [max(values[i : i + step]) for i in range(0, len(values), step)]
    top = max(max(peaks), 1e-9)
    n = max(1, len(peaks) - 1)
    points = " ".join(f"{i * width / n:.1f},{height - v / top * (height - 10):.1f}" for i, v in enumerate(peaks))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="surprisal over position"><polyline fill="none" stroke="#b71c1c" stroke-width="1" '
        f'points="{points}"/><text x="4" y="14" font-size="12">max {top:.1f} bits</text>'
        f'<text x="{width - 4}" y="{height - 4}" font-size="12" text-anchor="end">position \u2192 '
        f"({len(records)} {'points' if step == 1 else f'points, max of each {step}'})</text></svg>"
    )


def _worst(text: str, records: list[dict[str, Any]], key: str) -> str:
    worst = sorted(records, key=lambda r: r["nll"], reverse=True)[:WORST]
    if not worst:
        return ""
    rows = []
    for r in worst:
        before = text[max(0, r["start"] - CONTEXT_CHARS) : r["start"]]
        after = text[r["end"] : r["end"] + CONTEXT_CHARS]
        best = r.get("top", [{}])[0].get("token") if r.get("top") else None
        rows.append(
            f'<tr><td>{r["index"]}</td><td>{r["bits"]:.2f}</td><td class="l ctx">{_e(before)}'
            f"<mark>{_e(text[r['start'] : r['end']])}</mark>{_e(after)}</td>"
            f'<td class="l ctx">{_e(best) if best is not None else ""}</td></tr>'
        )
    return (
        f'<h3>Most surprising {key}s</h3><table><tr><th>#</th><th>bits</th><th class="l">in context</th>'
        f'<th class="l">model expected</th></tr>{"".join(rows)}</table>'
    )
