"""Documents for a loaded model (chats rendered with its template), and what to say when nothing is scored."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.plan import Plan
from ..core.totals import Totals
from ..core.windows import BosPolicy, resolve_bos
from ..errors import GptlossError
from ..inputs.chat import render_chats
from ..inputs.dataset import ChatRecord, DatasetOptions
from ..inputs.document import Document
from ..models.spec import LoadedModel


def documents_for(
    items: Sequence[Document | ChatRecord], loaded: LoadedModel, dataset: DatasetOptions | None, bos: BosPolicy
) -> tuple[list[Document], list[str]]:
    """Documents to score with `loaded`, chats rendered with its template (or --chat-template), and a
    warning for the chats skipped."""
    if dataset is None or dataset.mode != "messages":
        return [item for item in items if isinstance(item, Document)], []
    prepended = resolve_bos(loaded.tokenizer, bos) is not None
    documents, problems = render_chats(
        items,
        loaded.tokenizer,
        dataset.roles,
        prepended,
        loaded.info.spec,
        dataset.chat_template,
        dataset.skip_bad_records,
    )
    if not documents:
        raise GptlossError(f"{dataset.name}: no chat could be rendered; the first problem: {problems[0]}")
    if not problems:
        return documents, []
    return documents, [f"skipped {len(problems)} chat(s) the template could not render; the first: {problems[0]}"]


def unscored(documents: Sequence[Document], totals: Sequence[Totals | None]) -> list[str]:
    """Warnings for the documents with nothing scored."""
    empty = [d.source for d, t in zip(documents, totals, strict=True) if t is None or t.tokens_scored == 0]
    return empty_warnings(empty, "nothing to score (0 tokens)")


def empty_warnings(sources: Sequence[str], what: str) -> list[str]:
    """`source: what` for each source, or one line when there are more than three."""
    if len(sources) > 3:
        return [f"{len(sources)} documents have {what}, such as {sources[0]}"]
    return [f"{source}: {what}" for source in sources]


def nothing_to_score(documents: Sequence[Document], dataset: DatasetOptions | None) -> GptlossError:
    """The error for a run in which no token gets a loss, saying why."""
    if dataset is not None and any(d.spans is not None for d in documents):
        what = {
            "prompt": "the completion",
            "messages": f"a turn of {', '.join(dataset.roles)}",
        }.get(dataset.mode, "the --span-column spans")
        return GptlossError(f"{dataset.name}: nothing to score: no record has a token in {what}")
    which = documents[0].source if len(documents) == 1 else "none of the inputs"
    return GptlossError(f"{which}: nothing to score (no token has a preceding token or BOS to be predicted from)")


def refuse_masks(plan: Plan, documents: Sequence[Document]) -> None:
    """A preset reproduces a peer's score of whole texts, which no peer masks: refuse a loss mask under one."""
    if plan.preset.takes_masks or all(d.spans is None for d in documents):
        return
    raise GptlossError(
        f"--protocol {plan.preset.name} reproduces its tool's score of whole texts, which takes no loss mask "
        "(--completion-column, --messages-column, --span-column): drop the mask or the protocol"
    )
