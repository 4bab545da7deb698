"""Text that cannot lie about itself: bidi overrides, zero-width and other invisible format characters and
control characters are shown as marks in the terminal and in every HTML report, the rest of the text intact;
token pieces that are part of a character show as their bytes."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

import pytest
from conftest import build_tokenizer
from rich.console import Console, RenderableType

from gptloss_cli.core.plan import WindowSettings
from gptloss_cli.inputs.document import Document
from gptloss_cli.models.tokenizer import _decode_pieces
from gptloss_cli.render.compare import compare_view
from gptloss_cli.render.compare_html import render_compare_report
from gptloss_cli.render.format import visible
from gptloss_cli.render.html import render_report
from gptloss_cli.render.tokens import heatmap, tokens_view
from gptloss_cli.tasks.compare import compare_documents
from gptloss_cli.tasks.tokens import TokenRecord, TokenRun, TopChoice

LIAR = "Say \u202eevil here, a\u200bb and x\u200dy;\x1b[31m red\tand\u00ad\nnext line.\r\n end"
RAW = ("\u202e", "\u200b", "\u200d", "\u00ad", "\x1b", "\r")
MARKS = ("<U+202E>", "<U+200B>", "<U+200D>", "<U+00AD>", "\u241b", "\u240d")
# LIAR as it must read: every character that hides or moves text named, the layout (tab, newline) kept
SHOWN = "Say <U+202E>evil here, a<U+200B>b and x<U+200D>y;\u241b[31m red\tand<U+00AD>\nnext line.\u240d\n end"


def render(renderable: RenderableType, color: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, width=250, force_terminal=color, color_system="truecolor" if color else None)
    console.print(renderable)
    return out.getvalue()


def assert_marked(output: str) -> None:
    for raw in RAW:
        assert raw not in output, repr(raw)
    for mark in MARKS:
        assert mark in output, mark


@pytest.fixture(scope="module")
def liar_records(loaded):
    doc = Document(LIAR, "liar.txt")
    token_run = TokenRun(loaded["gpt2"], [doc], WindowSettings(max_length=128), top_k=5)
    chunks = list(token_run.chunks())
    records = [r for chunk in chunks for r in chunk.records]
    assert "".join(r.text for r in records) == LIAR  # every character reaches the renderers
    return doc, records, token_run, chunks[-1].totals


def test_visible_marks_format_and_control_characters() -> None:
    assert visible(LIAR) == SHOWN
    assert visible("\x00\x7f\x85\u2066\u2069\u061c\u200e\u200f\ufeff\U000e0041") == (
        "\u2400\u2421<U+0085><U+2066><U+2069><U+061C><U+200E><U+200F><U+FEFF><U+E0041>"
    )
    assert visible("naïve 中文 שלום 👩") == "naïve 中文 שלום 👩"  # letters of any script untouched


def test_heatmap_and_table_show_marks(liar_records) -> None:
    doc, records, _, _ = liar_records
    assert re.sub("[\u27e6\u27e7]", "", heatmap(doc.text, records, color=False).plain) == SHOWN
    assert heatmap(doc.text, records, color=True).plain == SHOWN
    for heat in (True, False):
        for color in (True, False):
            output = render(tokens_view([doc], [records], "token", heat, color), color)
            assert "\x1b[31m" not in output  # the text's escape sequence never reaches the terminal
            assert_marked(re.sub(r"\x1b\[[0-9;]*m", "", output) if color else output)  # rich's own colours out


def test_html_report_shows_marks_and_escapes_the_rest(liar_records) -> None:
    doc, records, token_run, totals = liar_records
    assert totals is not None
    page = render_report(token_run.header(), [(doc.source, doc.text, records, totals)])
    for raw in RAW:
        assert raw not in page, repr(raw)
    walk = TextBlock()
    walk.feed(page)
    assert "".join(walk.text) == SHOWN  # the document, every hidden character named, as text
    assert walk.marks["<U+202E>"] == "U+202E RIGHT-TO-LEFT OVERRIDE"  # the mark's title names the character
    assert walk.marks["\u241b"] == "U+001B ESCAPE"
    assert walk.token_spans == len(records)
    worst = page[page.index("Most surprising") :]
    assert "&lt;U+202E&gt;" in worst and "\u241b" in worst  # the worst tokens' context


def test_html_model_expected_shows_whitespace_and_marks() -> None:
    text = "ab cd"
    tops = [(" ", "\u00b7"), ("\n", "\u21b5"), ("\u202e", "&lt;U+202E&gt;"), ("<b>", "&lt;b&gt;")]
    records = [
        TokenRecord(i, i, i + 1, 5.0 - i, token_id=i, token=text[i], top=(TopChoice(9, top, -0.1),))
        for i, (top, _) in enumerate(tops)
    ]
    header = {
        "model": {"spec": "m", "name": "m", "dtype": "float32", "device": "cpu"},
        "settings": {"max_length": 8, "stride": 8, "unit": "token"},
    }
    page = render_report(header, [("s", text, records, token_run_totals(records))])
    expected = re.findall(r'<td class="l ctx">([^<]*(?:<span[^>]*>[^<]*</span>)?)</td></tr>', page)
    assert [re.sub(r"<[^>]+>", "", cell) for cell in expected] == [shown for _, shown in tops]
    assert "\u202e" not in page and "<b>" not in page


def token_run_totals(records: list[TokenRecord]):
    from gptloss_cli.core.totals import Totals

    nll = [r.nll for r in records]
    return Totals(len(nll), sum(nll), 0, 0, sum(x * x for x in nll))


def test_compare_views_show_marks(loaded) -> None:
    result = compare_documents(
        loaded["llama"], loaded["gpt2"], [Document(LIAR, "liar.txt")], settings=WindowSettings(), top_n=50
    )
    assert_marked(render(compare_view(result), color=False).replace("\u00b7", " "))
    page = render_compare_report(result)
    for raw in RAW:
        assert raw not in page, repr(raw)
    walk = TextBlock()
    walk.feed(page)
    assert "".join(walk.text) == SHOWN * 2  # the KL view and the Δ NLL view


class TextBlock(HTMLParser):
    """The text inside the .text blocks, the token spans there, and each mark's title."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.text: list[str] = []
        self.token_spans = 0
        self.marks: dict[str, str] = {}
        self._title: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if self.depth:
            self.depth += 1
            self.token_spans += tag == "span" and attr.get("class") == "t"
            self._title = attr.get("title") if attr.get("class") == "u" else None
        elif attr.get("class") == "text":
            self.depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.text.append(data)
            if self._title is not None:
                self.marks[data] = self._title
                self._title = None


def test_byte_level_pieces_show_their_bytes() -> None:
    from gptloss_cli.models.tokenizer import byte_level, byte_pieces

    backend = build_tokenizer(vocab_size=500).backend_tokenizer
    assert byte_level(backend)
    vocab = backend.get_vocab()
    part, word_part, whole = vocab["\u00e2"], vocab["W\u00c3"], vocab["\u00c3\u00a9"]  # 0xE2, W 0xC3, é
    assert _decode_pieces(backend, [part, word_part, whole]) == ["<0xE2>", "W<0xC3>", "\u00e9"]
    assert byte_pieces(b"\xe2\x80") == "<0xE2><0x80>"
    assert byte_pieces("a\u2014b".encode()[:-2] + b"\xc3") == "a<0xE2><0x80><0xC3>"
    assert byte_pieces("é—".encode()) == "é—"


def test_other_vocabularies_keep_their_names() -> None:
    """A SentencePiece-style byte-fallback vocabulary: not byte-level, its byte tokens keep their own names."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    from gptloss_cli.models.tokenizer import byte_level

    vocab = {"<unk>": 0, "<0xC3>": 1, "\u00c3": 2, "\u2581a": 3, "\u00e2\u0122": 4}
    backend = Tokenizer(models.BPE(vocab, [], unk_token="<unk>", byte_fallback=True))
    backend.normalizer = normalizers.Replace(" ", "\u2581")
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    assert not byte_level(backend)
    assert _decode_pieces(backend, [1, 2, 3, 4]) == ["<0xC3>", "\u00c3", " a", "\u00e2\u0122"]
