"""What the commands score: files or a dataset, read before the model loads (bad input fails fast),
and chats rendered once the model's template is known."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .console import warn
from .errors import GptlossError
from .inputs import DecodeErrors, Document, read_documents
from .windows import BosPolicy

if TYPE_CHECKING:
    from .dataset import ChatRecord, DatasetOptions
    from .models import LoadedModel
    from .stats import Totals


def read_inputs(
    paths: list[str] | None, encoding: str, errors: DecodeErrors, dataset: DatasetOptions | None
) -> list[Document | ChatRecord]:
    """The files, or the records of --dataset; one clear error for neither or both."""
    if dataset is None:
        return list(read_documents(paths or [], encoding, errors))
    if paths:
        raise GptlossError("give files or --dataset, not both")
    from .dataset import read_dataset

    found = read_dataset(dataset, encoding, errors.value)
    if found.skipped:
        warn(f"skipped {found.skipped} bad record(s); the first: {found.first_problem}")
    return found.items


def documents_for(
    items: Sequence[Document | ChatRecord], loaded: LoadedModel, dataset: DatasetOptions | None, bos: BosPolicy
) -> list[Document]:
    """Documents to score with `loaded`: chats rendered with its template (or --chat-template)."""
    if dataset is None or dataset.mode != "messages":
        return [item for item in items if isinstance(item, Document)]
    from .chat import render_chats
    from .windows import resolve_bos

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
    if problems:
        warn(f"skipped {len(problems)} chat(s) the template could not render; the first: {problems[0]}")
    if not documents:
        raise GptlossError(f"{dataset.name}: no chat could be rendered; the first problem: {problems[0]}")
    return documents


def warn_unscored(documents: Sequence[Document], totals: Sequence[Totals | None]) -> None:
    """A warning for each document with nothing scored, or one line when there are many."""
    empty = [d.source for d, t in zip(documents, totals, strict=True) if t is None or t.tokens_scored == 0]
    warn_empty(empty, "nothing to score (0 tokens)")


def warn_empty(sources: Sequence[str], what: str) -> None:
    """`source: what` for each source, or one line when there are more than three."""
    if len(sources) > 3:
        warn(f"{len(sources)} documents have {what}, such as {sources[0]}")
        return
    for source in sources:
        warn(f"{source}: {what}")


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


def documents_digest(documents: Sequence[Document]) -> str:
    """sha256 of the documents' sources, texts and spans: a resumed run must score the same ones."""
    import hashlib
    import json

    digest = hashlib.sha256()
    for doc in documents:
        digest.update(json.dumps([doc.source, doc.text, doc.spans], ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()
