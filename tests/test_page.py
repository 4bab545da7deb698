"""`gptloss serve`'s page at / in a real browser (Chromium through Playwright), against a server started as
the command line starts it: a text typed and scored, its tokens, colours, hover panel and totals read back and
checked against the API's own answer for the same text; two models and the compare view; text that looks like
markup or hides itself shown as text; the API key asked for after a 401. And the per-token values /v1/compare
gives the page (spans: true).

Without Playwright or Chromium the browser tests are skipped, but under CI (which installs both) they fail.
With GPTLOSS_PAGE_SCREENSHOTS set to a folder, the one-model and two-model views are saved there as
gptloss-page-1.png and gptloss-page-2.png.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gptloss_cli
from gptloss_cli.render.format import bucket, shown_token
from gptloss_cli.render.html import _BG as SURPRISAL_BG
from gptloss_cli.render.tokens import BITS_EDGES

CHROMIUM = "/usr/bin/chromium"
KEY = "page-test-key"
MAX_CHARS = 2000
REL = 1e-6
TEXT = "The cat sat on the mat.\nThe dog sat on  the log.\n\tdef plan(length, size):\n"
HOSTILE = (
    "<script>window.pwned=1</script>\n"
    '"><img src=x onerror="window.pwned=2">\n'
    "left \u202eright to left\u200b zero\u200bwidth &amp; <b>bold</b> \U0001f600 end"
)
SHOTS = os.environ.get("GPTLOSS_PAGE_SCREENSHOTS")
GLTR = {"b10": 10, "b100": 100, "b1000": 1000, "brest": math.inf}  # rank buckets: the page's classes
GLTR_RGB = {"b10": "rgb(173, 255, 128)", "b100": "rgb(255, 234, 128)", "b1000": "rgb(255, 146, 128)",
            "brest": "rgb(229, 176, 255)"}  # fmt: skip


def need(missing: list[str], what: str) -> None:
    """Skip without `missing`, but fail under CI, which installs them."""
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install {' and '.join(missing)} for {what}")
        pytest.skip(f"no {' and '.join(missing)} for {what}")


def need_browser() -> None:
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if not os.path.exists(CHROMIUM):
        missing.append(f"{CHROMIUM} (Debian: apt-get install chromium)")
    need(missing, "the page's browser tests")


def need_server() -> None:
    need([m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None], "gptloss serve")


class Server:
    """`gptloss serve` in a subprocess: its URL, the served model ids, and its stderr lines."""

    def __init__(self, *args: str) -> None:
        root = Path(gptloss_cli.__file__).resolve().parents[1]  # the tree under test, for the subprocess too
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
        }
        env.pop("GPTLOSS_API_KEY", None)
        command = [sys.executable, "-m", "gptloss_cli", "serve", *args, "--host", "127.0.0.1", "--port", "0"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()  # the request log must not fill the pipe
        self.url = self._ready(time.monotonic() + 120)
        self._healthy(time.monotonic() + 30)

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            self.lines.put(line)
        self.lines.put("")

    def _ready(self, deadline: float) -> str:
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            found = re.search(r"^serving .* at (http://127\.0\.0\.1:\d+) ", line)
            if found:
                return found.group(1)
            if line == "":
                break
        self.stop()
        pytest.fail(f"gptloss serve did not start: {''.join(self.log)}")

    def _healthy(self, deadline: float) -> None:
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
                    if json.loads(response.read())["status"] == "ok":
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def call(self, path: str, body: dict[str, Any] | None = None, key: str | None = KEY) -> Any:
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())

    def error(self, path: str, body: dict[str, Any]) -> tuple[int, str]:
        """The status and error.message of a request that fails."""
        with pytest.raises(urllib.error.HTTPError) as failed:
            self.call(path, body)
        return failed.value.code, json.loads(failed.value.read())["error"]["message"]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="module")
def server(model_dirs: dict[str, Path]) -> Iterator[Server]:
    """Two tiny models (one tokenizer), an API key and a small character limit."""
    need_server()
    started = Server("-m", str(model_dirs["gpt2"]), "-m", str(model_dirs["llama"]), "--api-key", KEY,
                     "--max-chars", str(MAX_CHARS))  # fmt: skip
    yield started
    assert started.stop() == 0, "".join(started.log)  # SIGTERM: a clean stop


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh tab that holds the API key in its sessionStorage, as the page keeps it once given."""
    context = browser.new_context(viewport={"width": 1100, "height": 1300})
    context.add_init_script(f"sessionStorage.setItem('gptloss-api-key', {json.dumps(KEY)})")
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Failed to load" not in m.text else None)
    tab.goto(server.url + "/")
    models_loaded(tab)
    yield tab
    context.close()
    assert errors == []  # no script error, no Content-Security-Policy violation


def until(tab: Any, expression: str, timeout: float = 60.0) -> None:
    """Wait for a JavaScript expression to hold (Playwright's wait_for_function evaluates a string, which the
    page's Content-Security-Policy forbids)."""
    deadline = time.monotonic() + timeout
    while not tab.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def models_loaded(tab: Any) -> None:
    until(tab, "document.querySelector('#model').value !== ''")


def submit(tab: Any) -> None:
    """Click Score and wait for the answer (the page counts them in body's data-runs)."""
    before = tab.evaluate("Number(document.body.dataset.runs || 0)")
    tab.click("#submit")
    until(tab, f"Number(document.body.dataset.runs || 0) > {before}")


def tokens(tab: Any) -> list[dict[str, Any]]:
    return tab.eval_on_selector_all(
        "#tokens .tok",
        "els => els.map(e => ({text: e.textContent, index: Number(e.dataset.index), start: Number(e.dataset.start),"
        " end: Number(e.dataset.end), logprob: e.dataset.logprob, rank: e.dataset.rank, delta: e.dataset.delta,"
        " kl: e.dataset.kl, classes: e.className.split(' ')}))",
    )


def backgrounds(tab: Any) -> list[tuple[list[str], str]]:
    """Each token's classes and background colour as the browser computes it."""
    return tab.eval_on_selector_all(
        "#tokens .tok", "ts => ts.map(t => [t.className.split(' '), getComputedStyle(t).backgroundColor])"
    )


def rgb(colour: str) -> str:
    """#e8f5e9 as the browser writes a computed colour: rgb(232, 245, 233)."""
    return f"rgb({int(colour[1:3], 16)}, {int(colour[3:5], 16)}, {int(colour[5:7], 16)})"


def number(tab: Any, selector: str, attribute: str) -> float:
    return float(tab.get_attribute(selector, attribute))


def tip(tab: Any, index: int) -> dict[str, str]:
    """Hover token `index`; the panel's rows by field, and its alternatives as alt-N."""
    tab.hover(f"#tokens .tok[data-index='{index}']")
    tab.wait_for_selector("#tip", state="visible")
    rows = tab.eval_on_selector_all(
        "#tip tr[data-field]", "rs => rs.map(r => [r.dataset.field, r.cells[1].textContent])"
    )
    alts = tab.eval_on_selector_all(
        "#tip tr[data-alt]", "rs => rs.map(r => [r.cells[0].textContent, r.cells[1].textContent])"
    )
    return {**dict(rows), **{f"alt-{i}": alt for i, alt in enumerate(alts)}}


def reads(shown: str, value: float, rel: float) -> bool:
    """The number a panel shows (before any unit) is `value` to the shown precision."""
    return math.isclose(float(re.sub(r"[^0-9eE.+-]", "", shown.split(" ")[0])), value, rel_tol=rel, abs_tol=1e-12)


def test_a_typed_text_shows_the_apis_tokens_colours_and_totals(page: Any, server: Server) -> None:
    page.locator("#text").press_sequentially(TEXT)
    assert page.input_value("#text") == TEXT
    submit(page)
    model = page.input_value("#model")
    expected = server.call("/v1/tokens", {"model": model, "texts": [TEXT], "top_k": 5})["documents"][0]
    records = expected["tokens"]
    shown = tokens(page)
    assert len(shown) == len(records) > 10
    assert "".join(t["text"] for t in shown) == TEXT == page.text_content("#tokens")
    assert page.eval_on_selector("#tokens", "e => getComputedStyle(e).whiteSpace") == "pre-wrap"
    for token, record in zip(shown, records, strict=True):
        assert token["text"] == TEXT[record["start"] : record["end"]]
        assert math.isclose(float(token["logprob"]), record["logprob"], rel_tol=REL)
        assert int(token["rank"]) == record["rank"]
        assert next(c for c, limit in GLTR.items() if record["rank"] <= limit) in token["classes"]
        assert f"s{bucket(record['bits'], BITS_EDGES)}" in token["classes"]
    for classes, colour in backgrounds(page):  # the tokens report's colours
        assert colour == rgb(SURPRISAL_BG[next(int(c[1:]) for c in classes if re.fullmatch(r"s\d", c))])
    totals = expected["totals"]
    assert math.isclose(number(page, "#totals [data-ppl]", "data-ppl"), totals["perplexity"], rel_tol=REL)
    assert page.text_content("#totals [data-ppl]") == f"{totals['perplexity']:.2f}"
    assert math.isclose(number(page, "#totals [data-bpb]", "data-bpb"), totals["bits_per_byte"], rel_tol=REL)
    assert page.text_content("#totals [data-tokens]") == str(totals["tokens_scored"])

    worst = max(records, key=lambda r: r["nll"])  # the hover panel of the most surprising token
    panel = tip(page, worst["index"])
    assert reads(panel["prob"], math.exp(worst["logprob"]), 5e-3)
    assert reads(panel["logprob"], worst["logprob"], 1e-4)
    assert panel["rank"].startswith(f"{worst['rank']} (")
    assert reads(panel["entropy"], worst["entropy"], 1e-3)
    for i, alt in enumerate(worst["top"]):
        assert panel[f"alt-{i}"][0] == shown_token(alt["token"])  # the command line's way to show a token
        assert reads(panel[f"alt-{i}"][1], math.exp(alt["logprob"]), 5e-3)
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / "gptloss-page-1.png"), full_page=True)

    page.click("#mode-rank-l")  # the rank buckets' colours, GLTR's
    assert page.get_attribute("#tokens", "class") == "text by-rank"
    assert page.text_content("#legend").count("top ") == 3
    for classes, colour in backgrounds(page):
        assert colour == GLTR_RGB[next(c for c in classes if c in GLTR)]


def test_two_models_show_the_compare_apis_totals_and_differences(page: Any, server: Server, model_dirs) -> None:
    model_b = str(model_dirs["llama"])
    page.fill("#text", TEXT)
    page.select_option("#model-b", model_b)
    submit(page)
    model = page.input_value("#model")
    body = {"model": model, "model_b": model_b, "texts": [TEXT]}
    compare = server.call("/v1/compare", body)
    for side in ("a", "b"):
        total = compare[side]["total"]
        row = f"#totals tr[data-side={side}]"
        assert math.isclose(number(page, f"{row} [data-ppl]", "data-ppl"), total["perplexity"], rel_tol=REL)
        assert math.isclose(number(page, f"{row} [data-bpb]", "data-bpb"), total["bits_per_byte"], rel_tol=REL)
        assert page.text_content(f"{row} [data-ppl]") == f"{total['perplexity']:.2f}"
    paired = compare["paired"]
    assert math.isclose(number(page, "[data-ppl-ratio]", "data-ppl-ratio"), paired["ppl_ratio"], rel_tol=REL)
    assert math.isclose(number(page, "[data-delta-nll]", "data-delta-nll"), paired["mean_delta_nll"], rel_tol=REL)
    assert math.isclose(number(page, "#totals [data-kl]", "data-kl"), compare["distribution"]["mean_kld"], rel_tol=REL)

    assert page.get_attribute("#tokens", "class") == "text by-delta"  # two models open on the Δ NLL view
    spans = server.call("/v1/compare", {**body, "spans": True})["documents"][0]["spans"]
    shown = tokens(page)
    assert len(shown) == len(spans) and "".join(t["text"] for t in shown) == TEXT
    for token, span in zip(shown, spans, strict=True):
        assert (token["start"], token["end"]) == (span["start"], span["end"])
        assert math.isclose(float(token["delta"]), span["delta_nll"], rel_tol=REL)
        assert math.isclose(float(token["kl"]), span["kl"], rel_tol=REL, abs_tol=1e-12)
        assert any(c.startswith("dp" if span["delta_nll"] > 0 else "dm") for c in token["classes"])
    biggest = max(range(len(spans)), key=lambda i: abs(spans[i]["delta_nll"]))
    panel = tip(page, biggest)
    assert reads(panel["nll-a"], spans[biggest]["nll_a"], 1e-4) and reads(panel["nll-b"], spans[biggest]["nll_b"], 1e-4)
    assert reads(panel["delta"], spans[biggest]["delta_nll"], 1e-3) and reads(panel["kl"], spans[biggest]["kl"], 1e-3)
    assert "rank" in panel and "alt-0" in panel  # model A's own token values are there too
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / "gptloss-page-2.png"), full_page=True)
    page.click("#mode-kl-l")
    assert page.get_attribute("#tokens", "class") == "text by-kl"
    assert "KL" in page.text_content("#legend")


def test_compare_spans_are_the_paired_tokens(server: Server, model_dirs) -> None:
    """/v1/compare with spans: each paired token's NLLs (A's the same as /v1/tokens gives), Δ NLL and KL, whose
    means are the totals', and whose largest |Δ NLL| are the top differences."""
    a, b = str(model_dirs["gpt2"]), str(model_dirs["llama"])
    found = server.call("/v1/compare", {"model": a, "model_b": b, "texts": [TEXT], "spans": True})
    spans = found["documents"][0]["spans"]
    assert "spans" not in server.call("/v1/compare", {"model": a, "model_b": b, "texts": [TEXT]})["documents"][0]
    records = server.call("/v1/tokens", {"model": a, "texts": [TEXT]})["documents"][0]["tokens"]
    assert [(s["start"], s["end"]) for s in spans] == [(r["start"], r["end"]) for r in records]
    assert [s["nll_a"] for s in spans] == pytest.approx([r["nll"] for r in records], rel=1e-5)
    assert len(spans) == found["paired"]["n"]
    mean = math.fsum(s["delta_nll"] for s in spans) / len(spans)
    assert math.isclose(mean, found["paired"]["mean_delta_nll"], rel_tol=1e-6)
    assert math.isclose(math.fsum(s["kl"] for s in spans) / len(spans), found["distribution"]["mean_kld"], rel_tol=1e-5)
    top = found["top_differences"][0]
    assert max(abs(s["delta_nll"]) for s in spans) == pytest.approx(abs(top["delta_nll"]), rel=1e-12)


def test_text_that_looks_like_markup_or_hides_itself_stays_text(page: Any, server: Server) -> None:
    page.fill("#text", HOSTILE)
    submit(page)
    shown = tokens(page)
    assert "".join(t["text"] for t in shown) == HOSTILE == page.text_content("#tokens")
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("document.images.length") == 0 and page.evaluate("document.scripts.length") == 1
    assert page.eval_on_selector_all("#tokens .u", "us => us.map(u => [u.dataset.mark, u.textContent])") == [
        ["<U+202E>", "\u202e"], ["<U+200B>", "\u200b"], ["<U+200B>", "\u200b"],
    ]  # fmt: skip
    panels = page.evaluate(  # every token's hover panel, the hostile tokens' among them
        """() => Array.from(document.querySelectorAll("#tokens .tok"), (token) => {
            token.dispatchEvent(new MouseEvent("mouseover", {bubbles: true}));
            return document.querySelector("#tip code").textContent;
        })"""
    )
    assert panels == [
        shown_token(r) for r in page.eval_on_selector_all("#tokens .tok", "ts => ts.map(t => t.textContent)")
    ]
    assert page.evaluate("document.images.length") == 0 and page.evaluate("typeof window.pwned") == "undefined"

    # a dropped file whose name is markup: its text goes in the box, its name is shown as text
    name = '<img src=x onerror="window.pwned=3">.txt'
    page.evaluate(
        """([name, content]) => {
            const files = new DataTransfer();
            files.items.add(new File([content], name, {type: "text/plain"}));
            const box = document.getElementById("text");
            for (const kind of ["dragenter", "dragover", "drop"])
                box.dispatchEvent(new DragEvent(kind, {dataTransfer: files, bubbles: true, cancelable: true}));
        }""",
        [name, "dropped " + HOSTILE],
    )
    until(page, "document.querySelector('#text').value.startsWith('dropped ')")
    assert page.input_value("#text") == "dropped " + HOSTILE
    assert page.text_content("#file-name").startswith(name + " · ")

    # the API's errors are shown as their message, as text (a model name that is markup, a text over the limit)
    bad = "<img src=x onerror=window.pwned=4>"
    page.evaluate("name => document.querySelector('#model').add(new Option(name, name, true, true))", bad)
    submit(page)
    status, message = server.error("/v1/tokens", {"model": bad, "texts": [page.input_value("#text")]})
    assert status == 404 and page.text_content("#error") == message and bad in message
    page.select_option("#model", index=0)
    page.fill("#text", "x" * (MAX_CHARS + 1))
    submit(page)
    status, message = server.error("/v1/tokens", {"texts": ["x" * (MAX_CHARS + 1)]})
    assert status == 413 and page.text_content("#error") == message
    assert page.evaluate("document.images.length") == 0 and page.evaluate("typeof window.pwned") == "undefined"


def test_the_page_asks_for_the_api_key_after_a_401(browser: Any, server: Server) -> None:
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(server.url + "/")  # the page itself needs no key; its first API call gets 401
    tab.wait_for_selector("#key-form", state="visible")
    with pytest.raises(urllib.error.HTTPError) as refused:
        server.call("/v1/models", key=None)
    assert refused.value.code == 401
    assert tab.text_content("#error") == json.loads(refused.value.read())["error"]["message"]
    tab.fill("#api-key", "not-the-key")
    tab.click("#key-save")
    tab.wait_for_selector("#key-form", state="visible")
    assert "refused" in tab.text_content("#key-note")
    tab.fill("#api-key", KEY)
    tab.press("#api-key", "Enter")
    models_loaded(tab)
    assert tab.is_hidden("#key-form") and tab.is_hidden("#error")
    tab.fill("#text", TEXT)
    submit(tab)
    count = server.call("/v1/tokens", {"texts": [TEXT]})["documents"][0]["totals"]["tokens_scored"]
    assert len(tokens(tab)) == count
    tab.reload()  # kept for this tab
    models_loaded(tab)
    assert tab.is_hidden("#key-form")
    context.close()


def test_the_panel_stays_with_a_token_the_browser_scrolled_to(page: Any) -> None:
    """Hovering a token below the fold scrolls it into view first; the scroll event that follows must not take
    the panel away while the pointer is on the token, and leaving the tokens still hides it."""
    page.set_viewport_size({"width": 1100, "height": 500})
    page.fill("#text", "".join(f"line {i} of a long text\n" for i in range(60)))
    submit(page)
    last = len(tokens(page)) - 1
    page.hover(f"#tokens .tok[data-index='{last}']")
    until(page, "window.scrollY > 0")
    time.sleep(0.3)  # the scroll event comes after the pointer's
    assert page.is_visible("#tip")
    token = page.eval_on_selector(f"#tokens .tok[data-index='{last}']", "e => e.getBoundingClientRect().toJSON()")
    panel = page.eval_on_selector("#tip", "e => e.getBoundingClientRect().toJSON()")
    assert panel["top"] >= token["bottom"] or panel["bottom"] <= token["top"]  # beside its token, on screen
    assert 0 <= panel["top"] and panel["bottom"] <= 500
    page.mouse.move(5, 5)
    until(page, "document.querySelector('#tip').hidden")
