"""`explain` as tables: the softmax and loss terms per class, the summary values with a reading each, and
per position of a text the target, its probability, rank, top choices and the running loss."""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..tasks.explain.prediction import Explanation
from ..tasks.explain.text import ExplainPosition, TextExplanation
from .format import shown_token, sig4

CONTEXT_CHARS = 20  # the text before a position, shown up to this many characters (its tail)
TOP_CHARS = 10  # a top choice's token is shown up to this many characters (JSON has it whole)
MSE_READING = (
    "squared distance of the whole distribution from t; small even when the target's p is low, "
    "which is why language models train on cross-entropy"
)


def explanation_view(ex: Explanation) -> RenderableType:
    return Group(_steps_table(ex), _summary_table(ex))


def _steps_table(ex: Explanation) -> Group:
    """Softmax (for logits), then one row per class with each loss term; the footers are column sums, so CE
    and KL can be read off. Below: the units and the notes on the input."""
    rows, sm, t = ex.rows(), ex.softmax, ex.target
    if t.target_class is not None:
        title = f"class {t.target_class}"
    elif t.normalised:
        title = f"{_vector(t.given)} normalised to {_vector(t.weights)}"
    else:
        title = _vector(t.weights)
    parts: list[RenderableType] = []
    if sm is not None:
        softmax_columns = [("logit", "logit", ""), ("logit − max", "shifted_logit", ""), ("exp", "exp", sig4(sm.sum))]
        softmax_columns.append(("p = exp / Σ", "p", sig4(math.fsum(ex.probs.tolist()))))
        parts.append(_columns("step 1 · softmax: p = exp(logit − max) / Σ", rows, softmax_columns))
        parts.append(Text(f"subtracting the max ({sig4(sm.max)}) changes no p but keeps exp from overflowing\n"))
    columns = [
        ("p", "p", sig4(math.fsum(ex.probs.tolist()))),
        ("t", "t", sig4(math.fsum(t.weights.tolist()))),
        ("−log p", "neg_log_p", ""),
        ("t·(−log p)", "ce_term", sig4(ex.cross_entropy)),
        ("(p − t)²", "squared_error", sig4(math.fsum(r["squared_error"] for r in rows))),
        ("t·log(t/p)", "kl_term", sig4(ex.kl_divergence)),
    ]
    parts.append(_columns(f"step {1 + (sm is not None)} · the loss terms against t = {title}", rows, columns))
    lines = ["natural logs: values in nats (÷ ln 2 for bits); a term with t = 0 counts 0 (0·log 0 = 0)"]
    return Group(*parts, Text("\n".join(lines + ex.notes()) + "\n"))


def _columns(title: str, rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> Table:
    """A table of `rows` with a class column and (header, row key, footer) columns; footers are sums."""
    table = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_footer=True)
    table.add_column("class", footer="Σ", justify="right")
    for header, _, footer in columns:
        table.add_column(header, footer=footer, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(str(r["class"]), *(sig4(r[key]) for _, key, _ in columns))
    return table


def _vector(values: Any) -> str:
    return "[" + ", ".join(sig4(float(v)) for v in values) + "]"


def _summary_table(ex: Explanation) -> Table:
    """The summary values, each with a one-line reading."""
    ce, h, ppl = ex.cross_entropy, ex.target_entropy, ex.perplexity
    t = ex.target
    hot = [i for i, w in enumerate(t.weights.tolist()) if w > 0]
    if math.isinf(ce):
        ce_reading = "infinite, as the model gave probability 0 to a class the target needs"
    elif len(hot) == 1:
        p = float(ex.probs[hot[0]])
        ce_reading = f"the model gave the target {100 * p:.3g}% (−ln {sig4(p)})"
        if p == 0:
            ce_reading = "the target's p underflows to 0, so −log p = log Σ − (logit − max)"
    else:
        ce_reading = "the target-weighted mean of −log p over the classes (soft target)"
    ppl_reading = f"exp(CE): as unsure as a fair choice among {sig4(ppl)} options"
    if math.isinf(ppl):
        ppl_reading = "exp(CE): infinite as well" if math.isinf(ce) else "exp(CE): beyond float range"
    elif h > 0:
        ppl_reading += f"; at least exp(H(t)) = {sig4(math.exp(h))} here"
    rows = [
        ("cross-entropy", f"{sig4(ce)} nats", f"−Σ t log p: {ce_reading}"),
        ("entropy H(t)", f"{sig4(h)} nats", "−Σ t log t: the target's own spread, the least CE can be"),
        ("KL(t‖p)", f"{sig4(ex.kl_divergence)} nats", "Σ t log(t/p) = CE − H(t); equals CE for a one-hot target"),
        ("perplexity", sig4(ppl), ppl_reading),
        ("MSE", sig4(ex.mse), f"mean((p − t)²): {MSE_READING}"),
    ]
    table = Table(title=Text("the summary values"), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("measure")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("reading")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _clip(token: str, size: int) -> str:
    return token if len(token) <= size else token[: size - 1] + "…"


def positions_table(ex: TextExplanation, top_k: int) -> Table:
    """The table a teacher would draw: per position the context, the target token, its p and rank, the
    model's top choices (the target in bold), the entropy, and the running mean loss and perplexity."""
    caption = [
        "p: the model's probability of the target token; loss = −ln p; H: entropy of the prediction (nats)",
        "mean loss: mean of −ln p over the positions so far; PPL = exp(mean loss)",
    ]
    if top_k:
        caption.append(f"top {top_k}: the model's likeliest tokens as token:p, the target in bold")
    if ex.positions[0].record.index > 0:
        caption.append("the first token is context only: with no BOS there is nothing to predict it from")
    table = Table(
        title=Text(f"{ex.model.spec} · {len(ex.positions)} positions"),
        caption=Text("\n".join(caption)),
        caption_justify="left",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("#", justify="right")
    table.add_column("context", justify="right", overflow="fold")  # the column that gives way when narrow
    table.add_column("target", no_wrap=True)
    for name in ("p", "rank"):
        table.add_column(name, justify="right", no_wrap=True)
    if top_k:
        table.add_column(f"top {top_k}", ratio=1)
    for name in ("H", "mean\nloss", "PPL"):
        table.add_column(name, justify="right", no_wrap=True)
    for position in ex.positions:
        table.add_row(*_position_cells(ex.text, position, top_k))
    return table


def _position_cells(text: str, position: ExplainPosition, top_k: int) -> list[Text]:
    r = position.record
    before = text[: r.start]
    context = before if len(before) <= CONTEXT_CHARS else "…" + before[-(CONTEXT_CHARS - 1) :]
    shown = Text(shown_token(context)) if context else Text("BOS", style="dim")  # predicted from BOS alone
    cells = [Text(str(r.index)), shown, Text(shown_token(r.token), style="bold")]
    cells += [Text(f"{r.prob:.3g}"), Text(str(r.rank))]
    if top_k:
        top = Text()
        for i, choice in enumerate(r.top):
            top.append(" " if i else "")
            top.append(
                _clip(shown_token(choice.token), TOP_CHARS), style="bold" if choice.token_id == r.token_id else ""
            )
            top.append(f":{math.exp(choice.logprob):.2f}")  # no space: a line breaks between choices
        cells.append(top)
    ppl = position.running_perplexity
    shown_ppl = "—" if ppl is None else f"{ppl:.1f}"
    return [*cells, Text(f"{r.entropy:.2f}"), Text(f"{position.running_mean_nll:.2f}"), Text(shown_ppl)]
