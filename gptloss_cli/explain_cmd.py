"""`gptloss explain`: the loss computation made visible, on the user's own numbers or on a text with a real model."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .console import emit, load
from .errors import GptlossError
from .models import DEFAULT_MODEL, Device, Dtype
from .options import BosOpt, DeviceOpt, DtypeOpt, Format, FormatOpt, ModelOpt, TopKOpt, TrustOpt
from .windows import BosPolicy

if TYPE_CHECKING:
    from .explain import Explanation

CONTEXT_CHARS = 20  # the text before a position, shown up to this many characters (its tail)
TOP_CHARS = 10  # a top choice's token is shown up to this many characters (JSON has it whole)
MSE_READING = (
    "squared distance of the whole distribution from t; small even when the target's p is low, "
    "which is why language models train on cross-entropy"
)
ProbsOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="Probabilities, comma-separated (0.1,0.3,0.6), summing to 1.", show_default=False),
]
LogitsOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="Raw scores, comma-separated (1,2,3), turned into probabilities by softmax.", show_default=False),
]
TargetOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="A class index (2) or one weight per class (0,0,1 or soft 0.5,0.5,0).", show_default=False),
]
TextOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="A text for --model: per position the target token, p, rank, top choices.", show_default=False),
]


def explain(
    probs: ProbsOpt = None,
    logits: LogitsOpt = None,
    target: TargetOpt = None,
    text: TextOpt = None,
    model: ModelOpt = DEFAULT_MODEL,
    fmt: FormatOpt = Format.table,
    top_k: TopKOpt = 5,
    bos: BosOpt = BosPolicy.auto,
    device: DeviceOpt = Device.auto,
    dtype: DtypeOpt = Dtype.auto,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Show how the loss is computed: softmax, -log p, cross-entropy, perplexity, MSE and KL divergence.

    Give --probs or --logits with --target for one prediction, or --text for every position of a text.
    """
    given = [name for name, value in (("--probs", probs), ("--logits", logits), ("--text", text)) if value is not None]
    if len(given) != 1:
        raise GptlossError(
            "give exactly one of --probs, --logits or --text" + (f" (got {' and '.join(given)})" if given else "")
        )
    if text is not None:
        if target is not None:
            raise GptlossError("--target goes with --probs or --logits; with --text each next token is the target")
        _explain_text(text, model, fmt, top_k, bos, device, dtype, trust_remote_code)
        return
    if target is None:
        raise GptlossError(f"{given[0]} needs --target: a class index (2) or one weight per class (0,0,1)")
    from .explain import Explanation, parse_numbers, parse_target

    values = parse_numbers(probs or logits or "", given[0])
    goal = parse_target(target, len(values))
    result = Explanation.from_probs(values, goal) if logits is None else Explanation.from_logits(values, goal)
    if fmt is Format.json:
        from .render import to_json

        emit(to_json(result.to_dict()), None)
    else:
        emit(Group(_steps_table(result), _summary_table(result)), None)


def _num(x: float | None) -> str:
    """A value for a cell: 4 significant digits below 1 and from 1e6, else 4 decimals without trailing zeros."""
    if x is None or math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x == 0:
        return "0"
    if abs(x) < 1 or abs(x) >= 1e6:
        return f"{x:.4g}"
    return f"{x:.4f}".rstrip("0").rstrip(".")


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
        softmax_columns = [("logit", "logit", ""), ("logit − max", "shifted_logit", ""), ("exp", "exp", _num(sm.sum))]
        softmax_columns.append(("p = exp / Σ", "p", _num(math.fsum(ex.probs.tolist()))))
        parts.append(_columns("step 1 · softmax: p = exp(logit − max) / Σ", rows, softmax_columns))
        parts.append(Text(f"subtracting the max ({_num(sm.max)}) changes no p but keeps exp from overflowing\n"))
    columns = [
        ("p", "p", _num(math.fsum(ex.probs.tolist()))),
        ("t", "t", _num(math.fsum(t.weights.tolist()))),
        ("−log p", "neg_log_p", ""),
        ("t·(−log p)", "ce_term", _num(ex.cross_entropy)),
        ("(p − t)²", "squared_error", _num(math.fsum(r["squared_error"] for r in rows))),
        ("t·log(t/p)", "kl_term", _num(ex.kl_divergence)),
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
        table.add_row(str(r["class"]), *(_num(r[key]) for _, key, _ in columns))
    return table


def _vector(values: Any) -> str:
    return "[" + ", ".join(_num(float(v)) for v in values) + "]"


def _summary_table(ex: Explanation) -> Table:
    """The summary values, each with a one-line reading."""
    ce, h, ppl = ex.cross_entropy, ex.target_entropy, ex.perplexity
    t = ex.target
    hot = [i for i, w in enumerate(t.weights.tolist()) if w > 0]
    if math.isinf(ce):
        ce_reading = "infinite, as the model gave probability 0 to a class the target needs"
    elif len(hot) == 1:
        p = float(ex.probs[hot[0]])
        ce_reading = f"the model gave the target {100 * p:.3g}% (−ln {_num(p)})"
        if p == 0:
            ce_reading = "the target's p underflows to 0, so −log p = log Σ − (logit − max)"
    else:
        ce_reading = "the target-weighted mean of −log p over the classes (soft target)"
    ppl_reading = f"exp(CE): as unsure as a fair choice among {_num(ppl)} options"
    if math.isinf(ppl):
        ppl_reading = "exp(CE): infinite as well" if math.isinf(ce) else "exp(CE): beyond float range"
    elif h > 0:
        ppl_reading += f"; at least exp(H(t)) = {_num(math.exp(h))} here"
    rows = [
        ("cross-entropy", f"{_num(ce)} nats", f"−Σ t log p: {ce_reading}"),
        ("entropy H(t)", f"{_num(h)} nats", "−Σ t log t: the target's own spread, the least CE can be"),
        ("KL(t‖p)", f"{_num(ex.kl_divergence)} nats", "Σ t log(t/p) = CE − H(t); equals CE for a one-hot target"),
        ("perplexity", _num(ppl), ppl_reading),
        ("MSE", _num(ex.mse), f"mean((p − t)²): {MSE_READING}"),
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


def _explain_text(
    text: str, model: str, fmt: Format, top_k: int, bos: BosPolicy, device: Device, dtype: Dtype, trust: bool
) -> None:
    """Score `text` with the same machinery as `gptloss tokens`, adding running means, as a table or JSON."""
    loaded = load(model, device, dtype, trust)
    from .engine import WindowSettings
    from .explain import SCHEMA, finite, safe_exp, with_running_means
    from .inputs import Document
    from .records import TokenRun

    run = TokenRun(loaded, [Document(text=text, source="<text>")], WindowSettings(bos=bos), top_k=top_k, unit="token")
    if run.tokens_to_score() == 0:
        raise GptlossError("--text: nothing to score (no token has a preceding token or BOS to be predicted from)")
    records = [record for _, chunk in run.chunks() for record in chunk]
    positions = with_running_means(records)
    mean = positions[-1]["running_mean_nll"]
    if fmt is Format.json:
        from .render import to_json

        data = {"schema": SCHEMA, "input": "text", "model": loaded.info.to_dict(), "settings": run.header()["settings"]}
        data |= {"text": text, "positions": positions, "mean_nll": mean, "perplexity": finite(safe_exp(mean))}
        emit(to_json(data), None)
    else:
        emit(_positions_table(text, positions, loaded.info.spec, top_k), None)


def _positions_table(text: str, positions: list[dict[str, Any]], spec: str, top_k: int) -> Table:
    """The table a teacher would draw: per position the context, the target token, its p and rank, the
    model's top choices (the target in bold), the entropy, and the running mean loss and perplexity."""
    from .token_views import shown_token

    caption = [
        "p: the model's probability of the target token; loss = −ln p; H: entropy of the prediction (nats)",
        "mean loss: mean of −ln p over the positions so far; PPL = exp(mean loss)",
    ]
    if top_k:
        caption.append(f"top {top_k}: the model's likeliest tokens as token:p, the target in bold")
    if positions[0]["index"] > 0:
        caption.append("the first token is context only: with no BOS there is nothing to predict it from")
    table = Table(
        title=Text(f"{spec} · {len(positions)} positions"),
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
    for r in positions:
        before = text[: r["start"]]
        context = before if len(before) <= CONTEXT_CHARS else "…" + before[-(CONTEXT_CHARS - 1) :]
        shown = Text(shown_token(context)) if context else Text("BOS", style="dim")  # predicted from BOS alone
        cells = [Text(str(r["index"])), shown, Text(shown_token(r["token"]), style="bold")]
        cells += [Text(f"{r['prob']:.3g}"), Text(str(r["rank"]))]
        if top_k:
            top = Text()
            for i, choice in enumerate(r["top"]):
                top.append(" " if i else "")
                token = _clip(shown_token(choice["token"]), TOP_CHARS)
                top.append(token, style="bold" if choice["token_id"] == r["token_id"] else "")
                top.append(f":{math.exp(choice['logprob']):.2f}")  # no space: a line breaks between choices
            cells.append(top)
        cells += [
            Text(f"{r['entropy']:.2f}"),
            Text(f"{r['running_mean_nll']:.2f}"),
            Text("—" if r["running_perplexity"] is None else f"{r['running_perplexity']:.1f}"),
        ]
        table.add_row(*cells)
    return table
