"""`gptloss explain`: the loss computation made visible, on the user's own numbers or on a text with a real model."""

from __future__ import annotations

from typing import Annotated

from ..core.plan import WindowSettings
from ..core.windows import BosPolicy
from ..errors import UsageError
from ..models.spec import ModelRequest
from .console import emit, load
from .options import MODEL, BosOpt, Format, FormatOpt, MaybeText, TopKOpt, grouped, text_option

ProbsOpt = Annotated[MaybeText, text_option("Probabilities, comma-separated (0.1,0.3,0.6), summing to 1.")]
LogitsOpt = Annotated[
    MaybeText, text_option("Raw scores, comma-separated (1,2,3), turned into probabilities by softmax.")
]
TargetOpt = Annotated[MaybeText, text_option("A class index (2) or one weight per class (0,0,1 or soft 0.5,0.5,0).")]
TextOpt = Annotated[MaybeText, text_option("A text for --model: per position the target token, p, rank, top choices.")]


@grouped(model=MODEL)
def explain(
    probs: ProbsOpt = None,
    logits: LogitsOpt = None,
    target: TargetOpt = None,
    text: TextOpt = None,
    fmt: FormatOpt = Format.table,
    top_k: TopKOpt = 5,
    bos: BosOpt = BosPolicy.auto,
    *,
    model: ModelRequest,
) -> None:
    """Show how the loss is computed: softmax, -log p, cross-entropy, perplexity, MSE and KL divergence.

    Give --probs or --logits with --target for one prediction, or --text for every position of a text.
    """
    given = [name for name, value in (("--probs", probs), ("--logits", logits), ("--text", text)) if value is not None]
    if len(given) != 1:
        raise UsageError(
            "give exactly one of --probs, --logits or --text" + (f" (got {' and '.join(given)})" if given else "")
        )
    from ..render.explain import explanation_view, positions_table
    from ..render.format import to_json

    if text is not None:
        if target is not None:
            raise UsageError("--target goes with --probs or --logits; with --text each next token is the target")
        from ..tasks.explain import explain_text

        positions = explain_text(load(model), text, settings=WindowSettings(bos=bos), top_k=top_k)
        emit(to_json(positions.to_dict()) if fmt is Format.json else positions_table(positions, top_k), None)
        return
    if target is None:
        raise UsageError(f"{given[0]} needs --target: a class index (2) or one weight per class (0,0,1)")
    from ..tasks.explain import Explanation, parse_numbers, parse_target

    values = parse_numbers(probs or logits or "", given[0])
    goal = parse_target(target, len(values))
    result = Explanation.from_probs(values, goal) if logits is None else Explanation.from_logits(values, goal)
    emit(to_json(result.to_dict()) if fmt is Format.json else explanation_view(result), None)
