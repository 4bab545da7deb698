"""Rows into score columns: the part of `annotate` that a pipeline of its own can use (gptloss_cli.ray runs it
in Ray Data actors). Each row is a document of `score` (its text from the row options' columns, its loss mask
too), so its numbers are score's; a batch of rows is scored together, batched by length as `score` batches its
documents. A row that cannot be scored keeps its place with null scores and `gptloss_error` saying why."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.distributed import SOLO, World
from ..core.plan import WindowSettings
from ..core.totals import Totals
from ..errors import GptlossError
from ..inputs.chat import chat_renderer
from ..inputs.corpus import ColumnType
from ..inputs.dataset import ChatRecord, DatasetOptions, record_item
from ..inputs.document import Document
from ..inputs.fields import BadRecord
from ..models.spec import LoadedModel
from .analyses import Analyses
from .runfile import MODEL_KEYS
from .score import ScoreRun

SCORES: dict[str, ColumnType] = {
    "gptloss_tokens": "int64",
    "gptloss_nll_sum": "float64",
    "gptloss_mean_nll": "float64",
    "gptloss_perplexity": "float64",
    "gptloss_bits_per_byte": "float64",
}
MEMBERSHIP: dict[str, ColumnType] = {
    "gptloss_min_k": "float64",
    "gptloss_min_k_plus_plus": "float64",
    "gptloss_zlib_ratio": "float64",
}
ERROR = "gptloss_error"
Columns = dict[str, tuple[ColumnType, list[Any]]]  # name -> (type, one value per row)


@dataclass(frozen=True)
class ScoredRows:
    """A batch of rows' score columns, and the total of their scored tokens (as `score` would give it)."""

    columns: Columns
    total: Totals

    @property
    def errors(self) -> int:
        return sum(1 for e in self.columns[ERROR][1] if e is not None)


def row_options(
    text_column: str | None = None,
    prompt_column: str | None = None,
    completion_column: str | None = None,
    messages_column: str | None = None,
    span_column: str | None = None,
    score_roles: tuple[str, ...] | None = None,
    chat_template: Path | None = None,
) -> DatasetOptions:
    """Which columns of a row make its document, and which of its characters are scored (score's dataset
    options; the text is `text_column`, by default `text`)."""
    options = DatasetOptions(
        "rows",
        text_column=text_column,
        prompt_column=prompt_column,
        completion_column=completion_column,
        messages_column=messages_column,
        span_column=span_column,
        score_roles=score_roles,
        chat_template=chat_template,
    )
    options.check()
    return options


class RowScorer:
    """Rows into score columns with one loaded model: each row is a document of `score` (its text from the
    row options' columns, its loss mask too), scored a batch of rows at a time; a row that cannot be scored
    gets null scores and `gptloss_error` saying why."""

    def __init__(
        self,
        loaded: LoadedModel,
        options: DatasetOptions | None = None,
        settings: WindowSettings | None = None,
        analyses: Analyses | None = None,
        world: World = SOLO,
    ) -> None:
        self.loaded = loaded
        self.options = options or row_options()
        self.settings = settings or WindowSettings()
        self.analyses = analyses or Analyses()
        self.world = world
        self.render: Callable[[ChatRecord], Document] | None = None
        if self.options.mode == "messages":
            from ..core.windows import resolve_bos

            prepended = resolve_bos(loaded.tokenizer, self.settings.bos) is not None
            self.render = chat_renderer(
                loaded.tokenizer, self.options.roles, prepended, loaded.info.spec, self.options.chat_template
            )
        ScoreRun(loaded, [], self.settings, analyses=self.analyses)  # refuses settings that cannot work, now

    @property
    def reads(self) -> list[str]:
        """The columns a row's document is made from."""
        return self.options.columns

    def types(self) -> dict[str, ColumnType]:
        """The columns added, in order, with their types."""
        member = MEMBERSHIP if self.analyses.min_k is not None else {}
        return {**SCORES, **member, ERROR: "string"}

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with the run it carries on: the model, the windows, the columns."""
        from ..core.plan import make_plan

        info = self.loaded.info.to_dict()
        plan = make_plan(self.loaded, self.settings)
        return {
            **{f"model {k}": info.get(k) for k in MODEL_KEYS},
            "protocol": plan.preset.name,
            **plan.to_dict(),
            "analyses": self.analyses.to_dict(),
            "rows": {k: v for k, v in self.options.describe().items() if k not in ("dataset", "limit", "split")},
        }

    def score(
        self, records: Sequence[dict[str, Any]], where: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> ScoredRows:
        """The score columns of these rows (each a dict of at least the columns `reads` names)."""
        documents: list[Document] = []
        rows: list[int] = []
        errors: list[str | None] = [None] * len(records)
        for i, (record, name) in enumerate(zip(records, where, strict=True)):
            try:
                item = record_item(record, name, self.options)
                if isinstance(item, ChatRecord):
                    assert self.render is not None
                    item = self.render(item)
            except (BadRecord, GptlossError) as exc:
                errors[i] = _reason(str(exc), name)
                continue
            if item.text == "":
                errors[i] = "empty text"
                continue
            documents.append(item)
            rows.append(i)
        values: dict[str, list[Any]] = {name: [None] * len(records) for name in self.types()}
        run = ScoreRun(self.loaded, documents, self.settings, self.world, analyses=self.analyses)
        total = run.accumulator()
        if documents:
            for score in run.scores(progress, keep_losses=False):
                total.update(score)
                row, totals = rows[score.index], score.totals
                if totals.tokens_scored == 0:
                    masked = documents[score.index].spans is not None
                    errors[row] = "nothing to score after the mask" if masked else "nothing to score (0 tokens)"
                    continue
                values["gptloss_tokens"][row] = totals.tokens_scored
                values["gptloss_nll_sum"][row] = totals.nll_sum
                values["gptloss_mean_nll"][row] = totals.mean_nll
                values["gptloss_perplexity"][row] = totals.perplexity
                values["gptloss_bits_per_byte"][row] = totals.bits_per_byte
                member = score.analyses.membership
                if member is not None:
                    values["gptloss_min_k"][row] = member.min_k_prob
                    values["gptloss_min_k_plus_plus"][row] = member.min_k_plus_plus
                    values["gptloss_zlib_ratio"][row] = member.zlib_ratio
        values[ERROR] = errors
        columns = {name: (kind, values[name]) for name, kind in self.types().items()}
        return ScoredRows(columns, total.compute().totals)


def _reason(message: str, where: str) -> str:
    """A row's error without its name in front (the row is where it is)."""
    return message[len(where) + 2 :] if message.startswith(f"{where}: ") else message
