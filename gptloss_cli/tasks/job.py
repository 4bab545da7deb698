"""What every task starts from: documents tokenized and windows planned for one model."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from typing import Any, Protocol

from .._version import __version__
from ..core.batches import tokens_to_score
from ..core.distributed import SOLO, World
from ..core.plan import Plan, WindowSettings, make_plan, tokenize_document
from ..core.windows import TokenizedDocument
from ..inputs.dataset import DatasetOptions
from ..inputs.document import Document
from ..models.spec import LoadedModel
from .documents import nothing_to_score, refuse_masks
from .protocols import ProtocolCard, protocol_card


class Tracker(Protocol):
    """Where a long task reports how far it is (the command line draws a progress bar from it)."""

    def start(self, tokens: int, documents: int) -> None:
        """The work ahead: tokens to score, in so many documents."""

    def advance(self, tokens: int) -> None:
        """So many more tokens scored."""

    def document(self) -> None:
        """One more document done."""


class Quiet:
    """A Tracker that reports nothing."""

    def start(self, tokens: int, documents: int) -> None:
        pass

    def advance(self, tokens: int) -> None:
        pass

    def document(self) -> None:
        pass


QUIET = Quiet()


def settings_dict(plan: Plan, card: ProtocolCard | None = None) -> dict[str, Any]:
    """The `settings` block of every result: the plan, the protocol card and the versions that made it."""
    import torch
    import transformers

    return {
        **plan.to_dict(),
        **({"protocol": card.to_dict()} if card is not None else {}),
        "versions": {
            "gptloss": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }


class Job:
    """Documents tokenized and planned for one model."""

    def __init__(
        self, loaded: LoadedModel, documents: Sequence[Document], settings: WindowSettings, world: World = SOLO
    ) -> None:
        self.loaded = loaded
        self.documents = list(documents)
        self.settings = settings
        self.world = world  # the ranks that share the work (core.distributed); every rank gets every result
        self.plan = make_plan(loaded, settings)
        refuse_masks(self.plan, self.documents)
        self.tokenized = [self.tokenize(doc) for doc in self.documents]

    def tokenize(self, document: Document) -> TokenizedDocument:
        """One document's tokens as this job's plan sees them, with its loss mask (a kind of job that scores
        fewer tokens narrows the mask here)."""
        return tokenize_document(self.plan, self.loaded.tokenizer, document)

    @cached_property
    def card(self) -> ProtocolCard:
        """How this job's numbers are made (the protocol, its windows and what they score)."""
        return protocol_card(self.plan, self.tokenized)

    def settings_dict(self) -> dict[str, Any]:
        return settings_dict(self.plan, self.card)

    def tokens_to_score(self, skip: frozenset[int] = frozenset()) -> int:
        """How many tokens get a loss (those of the documents in `skip` left out)."""
        return tokens_to_score(self.tokenized, self.plan, skip)

    def require_tokens(self, dataset: DatasetOptions | None = None) -> None:
        """Refuse, saying why, a job in which no token gets a loss (the whole job's: a shard may hold none)."""
        if tokens_to_score(self.tokenized, self.plan) == 0:
            raise nothing_to_score(self.documents, dataset)


class Pretokenized:
    """Mixed into a Job whose documents were tokenized already (by earlier jobs, or built from token ids): the
    documents are named by their place in `tokens` (`named`), and `tokenize` gives their tokens back instead
    of tokenizing again. Set `tokens` before the Job's __init__ runs."""

    tokens: list[TokenizedDocument]

    def named(self) -> list[Document]:
        return [replace(t.document, source=str(i)) for i, t in enumerate(self.tokens)]

    def tokenize(self, document: Document) -> TokenizedDocument:
        return replace(self.tokens[int(document.source)], document=document)
