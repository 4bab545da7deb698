"""Chats rendered with a model's chat template, and the character spans of the turns to score.

The whole conversation is rendered once, as the model saw it in training. A turn's span is
found by rendering the conversation up to it and up to the turn before: the template must
render each prefix of a conversation as a prefix of the whole (templates that do not are
refused, not guessed at). A scored turn spans from the start of its content to the end of
the turn, so its end-of-turn marker (such as ``<|im_end|>``, which the model must predict
to stop) is scored and its role header (``<|im_start|>assistant``) is context; whitespace
the template puts after the turn is not scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import GptlossError, first_line
from .document import Document, Span

if TYPE_CHECKING:
    from ..models.tokenizer import Tokenizer
    from .dataset import ChatRecord


MARKER = "\ue000gptloss-content\ue001"  # private-use characters: no template alters them, no message holds them


class ChatTemplate:
    """A Jinja chat template, rendered as transformers' apply_chat_template does."""

    def __init__(self, source: str, special_tokens: dict[str, str], name: str) -> None:
        self.source = source
        self.special_tokens = special_tokens
        self.name = name

    def render(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = False) -> str:
        from transformers.utils import chat_template_utils

        render: Any = chat_template_utils.render_jinja_template  # returns (texts, generation indices)
        try:
            rendered, _ = render(
                conversations=[list(messages)],
                chat_template=self.source,
                add_generation_prompt=add_generation_prompt,
                **self.special_tokens,
            )
        except Exception as exc:  # Jinja's errors (syntax, raise_exception in the template) have no common base
            raise GptlossError(f"the chat template of {self.name} failed: {first_line(exc)}") from exc
        return str(rendered[0])


def chat_document(
    template: ChatTemplate, messages: Sequence[dict[str, Any]], roles: Sequence[str], source: str, drop_prefix: str
) -> Document:
    """The rendered conversation, with the turns of `roles` as the spans to score.

    drop_prefix: text removed from the start of the rendering when present (the BOS token's text,
    when every window already starts with the BOS token).
    """
    whole = template.render(messages)
    cut = len(drop_prefix) if drop_prefix and whole.startswith(drop_prefix) else 0
    spans: list[Span] = []
    before = _render_empty(template)
    for i, message in enumerate(messages):
        upto = template.render(messages[: i + 1])
        if not upto.startswith(before) or not whole.startswith(upto):
            raise GptlossError(
                f"the chat template of {template.name} renders turn {i + 1} differently once more turns "
                "follow, so its span cannot be found"
            )
        if message["role"] in roles:
            start = _content_start(template, messages, i, before, upto)
            end = len(upto.rstrip())
            if start < end:
                spans.append((max(start, cut) - cut, end - cut))
        before = upto
    return Document(text=whole[cut:], source=source, spans=tuple(spans))


def _render_empty(template: ChatTemplate) -> str:
    try:
        return template.render([])
    except GptlossError:  # a template that reads messages[0] unguarded
        return ""


def _content_start(template: ChatTemplate, messages: Sequence[dict[str, Any]], i: int, before: str, upto: str) -> int:
    """Where turn i's content starts in `upto` (the rendering up to and including it).

    Found by rendering the turn with a marker for its content, so text of the header that happens to
    equal the content (a reply "a" and the "a" of "assistant") is not taken for it.
    """
    probe = [*messages[:i], {**messages[i], "content": MARKER}]
    try:
        marked = template.render(probe)
    except GptlossError:
        marked = ""
    at = marked.find(MARKER, len(before))
    if at >= 0 and upto.startswith(marked[:at]):
        return at
    try:  # a template that alters the marker: search after the header it writes for a reply, if any
        prompt = template.render(messages[:i], add_generation_prompt=True)
    except GptlossError:
        prompt = ""
    start = len(prompt) if upto.startswith(prompt) and len(prompt) > len(before) else len(before)
    content = messages[i]["content"]
    for needle in (content, content.strip()):
        found = upto.find(needle, start) if needle else -1
        if found >= 0:
            return found
    return start


def render_chats(
    items: Sequence[Document | ChatRecord],
    tokenizer: Tokenizer,
    roles: Sequence[str],
    bos_prepended: bool,
    model: str,
    template_file: Path | None = None,
    skip_bad_records: bool = False,
) -> tuple[list[Document], list[str]]:
    """Documents for every item, conversations rendered with `template_file` or the tokenizer's template,
    and what went wrong with the chats skipped (with `skip_bad_records`; else the first stops the run)."""
    if all(isinstance(item, Document) for item in items):
        return [item for item in items if isinstance(item, Document)], []
    render = chat_renderer(tokenizer, roles, bos_prepended, model, template_file)
    documents, problems = [], []
    for item in items:
        if isinstance(item, Document):
            documents.append(item)
            continue
        try:
            documents.append(render(item))
        except GptlossError as exc:
            if not skip_bad_records:
                raise GptlossError(f"{item.source}: {exc}; fix it or pass --skip-bad-records") from exc
            problems.append(f"{item.source}: {exc}")
    return documents, problems


def chat_renderer(
    tokenizer: Tokenizer, roles: Sequence[str], bos_prepended: bool, model: str, template_file: Path | None = None
) -> Callable[[ChatRecord], Document]:
    """What renders one chat into a document (GptlossError when it cannot), with `template_file` or the
    tokenizer's template; one line now when there is neither."""
    if template_file is not None:
        try:
            source = template_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise GptlossError(f"{template_file}: cannot read the chat template ({exc})") from exc
    elif tokenizer.chat_template:
        source = tokenizer.chat_template
    else:
        raise GptlossError(f"{model} has no chat template; give one with --chat-template FILE")
    template = ChatTemplate(source, tokenizer.special_tokens, model)
    bos = tokenizer.special_tokens.get("bos_token", "") if bos_prepended else ""

    def render(item: ChatRecord) -> Document:
        return replace(chat_document(template, item.messages, roles, item.source, bos), label=item.label)

    return render
