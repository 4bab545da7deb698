"""serve: completions equal `tokens` of the same text, /v1/score equals `score`, the OpenAI client reads it,
concurrent requests get the numbers they get alone, every refusal is a 4xx JSON error after which the server
goes on, the API key, SIGTERM drains, a batch that fails fails alone.

Under CI the extra is installed (`make serve`) and these tests must run; elsewhere they are skipped without it.
"""

from __future__ import annotations

import json
import math
import os
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
import torch
from conftest import BATCH_RTOL, assert_totals_close, run

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as error:
    if os.environ.get("CI"):
        raise
    pytest.skip(f"the serve extra is not installed ({error}): make serve", allow_module_level=True)

TEXTS = [
    "The cat sat on the mat. The dog sat on the log.",
    "Perplexity is the exponential of the mean negative log-likelihood.",
    "Zählt die Wörter, 42 Äpfel und 7 Birnen; naïve café. " * 3,
    "1. screws: 312\n2. bolts: 48\n3. glue: 3 bottles\n",
]
LOGPROB_RTOL = 1e-5  # per-token log p from batches padded differently
LLAMA, GPT2 = ["llama"], ["gpt2"]  # the served names, set by the server fixture


class Server:
    """`gptloss serve ARGS` on 127.0.0.1 and a free port, started and stopped by PID."""

    def __init__(self, *args: object) -> None:
        command = [sys.executable, "-m", "gptloss_cli", "serve", "--port", "0", *map(str, args)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("GPTLOSS_API_KEY", None)
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        assert self.process.stderr is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                raise AssertionError(f"serve stopped: {''.join(self.lines)}")
            self.lines.append(line)
            if line.startswith("serving "):
                self.url = line.split(" at ")[1].split()[0]
                break
        threading.Thread(target=self._drain, daemon=True).start()
        while self.get("/health")[0] != 200:  # polled until it answers
            time.sleep(0.05)

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                raw = response.read()
                status, kind = response.status, response.headers.get("content-type", "")
                self.last_headers = dict(response.headers)
        except urllib.error.HTTPError as exc:
            raw, status, kind = exc.read(), exc.code, exc.headers.get("content-type", "")
            self.last_headers = dict(exc.headers)
        return status, json.loads(raw) if "json" in kind else raw.decode()

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        return self.call("POST", path, body, **kw)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def server(model_dirs: dict[str, Path]) -> Iterator[Server]:
    started = Server("-m", model_dirs["llama"], "-m", model_dirs["gpt2"], "--max-request-tokens", 5000)
    LLAMA[0], GPT2[0] = model_dirs["llama"].name, model_dirs["gpt2"].name  # a model folder is named by its last part
    yield started
    assert started.stop() == 0


def completion(server: Server, prompt: Any, **options: Any) -> dict[str, Any]:
    status, answer = server.post("/v1/completions", {"model": LLAMA[0], "prompt": prompt, **options})
    assert status == 200, answer
    return answer


def cli_tokens(model: Path, text: str, *args: object) -> list[dict[str, Any]]:
    path = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"gptloss-serve-{os.getpid()}.txt"
    path.write_text(text, encoding="utf-8")
    result = run("tokens", path, "-m", model, "-f", "json", "--top-k", 5, *args)
    path.unlink()
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["documents"][0]["tokens"]


def test_completions_equal_tokens_for_text_and_id_prompts(server: Server, model_dirs) -> None:
    text = TEXTS[0]
    answer = completion(server, text, echo=True, logprobs=5, max_tokens=0)
    [choice] = answer["choices"]
    logprobs = choice["logprobs"]
    expected = cli_tokens(model_dirs["llama"], text, "--bos", "never")
    assert choice["text"] == text and choice["finish_reason"] == "length"
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    assert len(logprobs["tokens"]) == len(expected) + 1 == answer["usage"]["prompt_tokens"]
    assert "".join(logprobs["tokens"]) == text
    assert logprobs["text_offset"] == [0, *[t["start"] for t in expected]]
    for got, top, record in zip(logprobs["token_logprobs"][1:], logprobs["top_logprobs"][1:], expected, strict=True):
        assert math.isclose(got, record["logprob"], rel_tol=LOGPROB_RTOL)
        alternatives = {t["token"]: t["logprob"] for t in record["top"]}
        assert set(top) == {*alternatives, record["token"]}  # the top 5 and the token itself, as vLLM lists them
        for token, value in alternatives.items():
            if token != record["token"]:
                assert math.isclose(top[token], value, rel_tol=LOGPROB_RTOL)
    # token ids as an evaluation harness sends them: its own prefix token first, then exactly these ids
    status, tokenized = server.post("/tokenize", {"prompt": text, "add_special_tokens": False})
    bos = 1  # the tiny tokenizer's <bos>
    ids = [bos, *tokenized["tokens"]]
    by_ids = completion(server, ids, echo=True, logprobs=5, max_tokens=0)["choices"][0]["logprobs"]
    with_bos = cli_tokens(model_dirs["llama"], text, "--bos", "always")
    assert by_ids["tokens"][0] == "<bos>" and len(by_ids["token_logprobs"]) == len(ids)
    for got, record in zip(by_ids["token_logprobs"][1:], with_bos, strict=True):
        assert math.isclose(got, record["logprob"], rel_tol=LOGPROB_RTOL)
    status, back = server.post("/detokenize", {"tokens": tokenized["tokens"]})
    assert status == 200 and back["prompt"] == text


def test_greedy_tokens_are_the_model_s_argmax(server: Server, loaded) -> None:
    text = TEXTS[1]
    answer = completion(server, [text, TEXTS[3]], echo=True, logprobs=2, max_tokens=3)
    model = loaded["llama"].model
    for choice, prompt in zip(answer["choices"], (text, TEXTS[3]), strict=True):
        ids = loaded["llama"].tokenizer.encode(prompt, True)[0].tolist()
        made = choice["logprobs"]["tokens"][len(ids) :]
        assert choice["text"] == prompt + "".join(made)
        for token, logprob in zip(made, choice["logprobs"]["token_logprobs"][len(ids) :], strict=True):
            with torch.inference_mode():
                logp = model(torch.tensor([ids])).logits[0, -1].double().log_softmax(-1)
            best = int(logp.argmax())
            assert token == loaded["llama"].tokenizer.pieces([best])[0]
            assert math.isclose(logprob, float(logp[best]), rel_tol=1e-4, abs_tol=1e-5)
            ids.append(best)
    without_echo = completion(server, text, logprobs=1, max_tokens=1)["choices"][0]
    assert without_echo["text"] == answer["choices"][0]["text"][len(text) :][: len(without_echo["text"])]
    assert len(without_echo["logprobs"]["tokens"]) == 1
    assert without_echo["logprobs"]["text_offset"] == [len(text)]


def test_score_equals_the_command_line(server: Server, model_dirs, tmp_path: Path) -> None:
    paths = []
    for i, text in enumerate(TEXTS):
        paths.append(tmp_path / f"t{i}.txt")
        paths[-1].write_text(text, encoding="utf-8")
    options = {"max_length": 16, "stride": 8, "membership": True}
    status, answer = server.post("/v1/score", {"model": LLAMA[0], "texts": TEXTS, **options})
    assert status == 200, answer
    result = run(
        "score", *paths, "-m", model_dirs["llama"], "--max-length", 16, "--stride", 8, "--membership", "-f", "json"
    )
    expected = json.loads(result.stdout)
    assert answer["schema"] == expected["schema"] == "gptloss.score/v1"
    assert answer.keys() == expected.keys()
    assert answer["settings"]["protocol"] == expected["settings"]["protocol"]
    for got, want in zip(answer["documents"], expected["documents"], strict=True):
        assert got["source"].startswith("text-")
        got, want = dict(got), dict(want)
        assert got.pop("membership") == pytest.approx(want.pop("membership"), rel=BATCH_RTOL)
        assert_totals_close({**got, "source": ""}, {**want, "source": ""})
    assert_totals_close(answer["total"], expected["total"])
    status, tokens = server.post("/v1/tokens", {"model": LLAMA[0], "texts": TEXTS[:1], "top_k": 3})
    assert status == 200 and tokens["schema"] == "gptloss.tokens/v1"
    status, compare = server.post("/v1/compare", {"model": LLAMA[0], "model_b": GPT2[0], "texts": TEXTS[:2]})
    assert status == 200 and compare["schema"].startswith("gptloss.compare")


def test_the_openai_client_reads_it(server: Server) -> None:
    openai = pytest.importorskip("openai") if not os.environ.get("CI") else __import__("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    answer = client.completions.create(model=LLAMA[0], prompt=TEXTS[0], echo=True, logprobs=5, max_tokens=0)
    ours = completion(server, TEXTS[0], echo=True, logprobs=5, max_tokens=0)["choices"][0]["logprobs"]
    logprobs = answer.choices[0].logprobs
    assert logprobs.tokens == ours["tokens"] and logprobs.token_logprobs == ours["token_logprobs"]
    served = [m.id for m in client.models.list().data]
    assert LLAMA[0] in served and GPT2[0] in served
    with pytest.raises(openai.BadRequestError, match="greedy"):
        client.completions.create(model=LLAMA[0], prompt="x", temperature=0.8, max_tokens=4)


def test_concurrent_requests_get_the_numbers_they_get_alone(server: Server) -> None:
    words = "the quick brown fox jumps over the lazy dog and then some more words follow here".split()
    texts = [" ".join(words[: 2 + (i * 7) % len(words)]) * (1 + i % 4) for i in range(32)]
    alone = [server.post("/v1/score", {"model": LLAMA[0], "texts": [t]})[1] for t in texts]
    prompts = [" ".join(words[: 3 + 2 * i]) for i in range(8)]  # within the tiny model's 128 tokens
    alone_logprobs = [completion(server, p, echo=True, logprobs=0, max_tokens=0) for p in prompts]
    before = server.get("/health")[1]["scored"]
    together: list[Any] = [None] * len(texts)
    logprobs: list[Any] = [None] * 8

    def send(i: int) -> None:
        together[i] = server.post("/v1/score", {"model": LLAMA[0], "texts": [texts[i]]})
        if i < 8:
            logprobs[i] = completion(server, prompts[i], echo=True, logprobs=0, max_tokens=0)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = server.get("/health")[1]["scored"]
    assert after["requests"] - before["requests"] == 40
    assert after["batches"] - before["batches"] < 40  # some were scored together
    for (status, got), want in zip(together, alone, strict=True):
        assert status == 200
        # the sums to 1e-6; the standard error subtracts two near sums (S² and S·S/n), so it gets 1e-4
        spread = ("stderr_mean_nll", "perplexity_ci95")
        doc, ref = got["documents"][0], want["documents"][0]
        assert_totals_close(
            {k: v for k, v in doc.items() if k not in spread}, {k: v for k, v in ref.items() if k not in spread}
        )
        assert_totals_close({k: doc[k] for k in spread}, {k: ref[k] for k in spread}, 1e-4)
    for got, want in zip(logprobs, alone_logprobs, strict=True):
        a, b = got["choices"][0]["logprobs"]["token_logprobs"], want["choices"][0]["logprobs"]["token_logprobs"]
        assert a[0] is None and b[0] is None
        assert a[1:] == pytest.approx(b[1:], rel=BATCH_RTOL)


def test_refusals_are_json_errors_and_the_server_goes_on(server: Server) -> None:
    def refused(status: int, answer: Any, *fragments: str) -> None:
        assert answer["error"]["type"] and all(f in answer["error"]["message"] for f in fragments), answer
        assert server.get("/v1/models")[0] == 200  # still serving

    cases = [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "a JSON object"),
        ({"prompt": 5}, 400, "prompt"),
        ({"prompt": "x", "logprobs": 21}, 400, "logprobs"),
        ({"prompt": "x", "temperature": 1.0, "max_tokens": 2}, 400, "greedy"),
        ({"prompt": "x", "n": 2}, 400, "n and best_of"),
        ({"prompt": "x", "stream": True}, 400, "stream"),
        ({"prompt": "x", "max_tokens": 17}, 400, "at most 16"),
        ({"prompt": [999999]}, 400, "not in this model's vocabulary"),
        ({"prompt": "x", "model": "/etc/passwd"}, 404, "not served here"),
        ({"prompt": "x", "model": "gpt2-large"}, 404, "not served here"),
    ]
    for body, status, fragment in cases:
        got, answer = server.post("/v1/completions", body)
        assert got == status, (body, answer)
        refused(got, answer, fragment)
    got, answer = server.post("/v1/score", {"texts": ["a " * 3000]})
    assert got == 413
    refused(got, answer, "5,000", "limit")
    got, answer = server.post("/v1/score", {"texts": ["x"], "protocol": "nope"})
    assert got == 400
    refused(got, answer, "protocol")
    got, answer = server.post("/v1/score", {"texts": ["x"], "trust_remote_code": True, "model": "hub/some-model"})
    assert got == 404
    got, answer = server.post("/v1/score", b"{" + b" " * (9 * 1024 * 1024) + b"}")
    assert got == 413
    refused(got, answer, "bytes")
    got, answer = server.post("/v1/score", {"texts": []})
    assert got == 400
    refused(got, answer, "nothing to score")


def test_a_full_queue_answers_503_with_retry_after_and_limits_name_themselves(model_dirs) -> None:
    small = Server("-m", model_dirs["llama"], "--queue-size", 1, "--max-chars", 5000, "--batch-window-ms", 0)
    try:
        long_text = "the quick brown fox jumps over the lazy dog " * 100
        answers: list[Any] = []

        def send() -> None:
            answers.append((*small.post("/v1/score", {"texts": [long_text], "max_length": 64}), small.last_headers))

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = sorted(a[0] for a in answers)
        assert 200 in statuses and 503 in statuses, statuses
        busy = next(a for a in answers if a[0] == 503)
        assert busy[2].get("retry-after") == "1" and "busy" in busy[1]["error"]["message"]
        got, answer = small.post("/v1/score", {"texts": ["x" * 5001]})
        assert got == 413 and "5,000" in answer["error"]["message"]
        assert small.post("/v1/score", {"texts": ["fine"]})[0] == 200
    finally:
        assert small.stop() == 0


def test_the_api_key_and_sigterm(model_dirs) -> None:
    keyed = Server("-m", model_dirs["llama"], "--api-key", "s3cret")
    body = {"texts": ["the quick brown fox " * 200], "max_length": 32}
    assert keyed.post("/v1/score", body)[0] == 401
    assert keyed.post("/v1/score", body, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert keyed.get("/")[0] == 200  # the page asks for the key itself
    answers: list[Any] = []
    sender = threading.Thread(
        target=lambda: answers.append(keyed.post("/v1/score", body, headers={"Authorization": "Bearer s3cret"}))
    )
    sender.start()
    time.sleep(0.3)  # in flight when the signal comes
    assert keyed.stop() == 0
    sender.join()
    assert answers and answers[0][0] == 200 and answers[0][1]["total"]["tokens_scored"] > 0
    log = "".join(keyed.lines)
    assert "POST /v1/score 401" in log and "POST /v1/score 200" in log and "stopped" in log


def test_a_failing_batch_fails_alone_and_a_client_that_left_costs_nothing(loaded) -> None:
    from fastapi.testclient import TestClient

    from gptloss_cli.errors import GptlossError
    from gptloss_cli.serve import handlers as handlers_module
    from gptloss_cli.serve.app import ServeSettings, create_app

    real = handlers_module.handlers

    def failing(models: Any, limits: Any) -> Any:
        made = real(models, limits)
        score = made["score"]

        def maybe(batch: Any) -> Any:
            if any("boom" in d.text for r in batch for d in r.payload.documents):
                raise GptlossError("12 of 40 values of nll are not finite (NaN or inf)")
            return score(batch)

        return {**made, "score": maybe}

    import gptloss_cli.serve.app as app_module

    app_module.handlers, saved = failing, app_module.handlers
    try:
        app = create_app({"llama": loaded["llama"]}, ServeSettings())
        with TestClient(app) as client:
            bad = client.post("/v1/score", json={"texts": ["boom"]})
            assert bad.status_code == 500 and "not finite" in bad.json()["error"]["message"]
            good = client.post("/v1/score", json={"texts": ["fine"]})
            assert good.status_code == 200
            worker = app.state.worker
            from gptloss_cli.serve.work import Request

            gone = Request("score", "llama", "k", None, 10)
            gone.gone.set()  # its client disconnected while it waited
            before = dict(worker.scored)
            worker.submit(gone)
            time.sleep(0.3)
            assert worker.scored == before and not gone.future.done()
    finally:
        app_module.handlers = saved


def test_a_client_that_disconnects_is_not_scored(model_dirs) -> None:
    import socket
    from urllib.parse import urlparse

    waiting = Server("-m", model_dirs["llama"], "--batch-window-ms", 1500)  # a request waits 1.5 s for company
    try:
        where = urlparse(waiting.url)
        body = json.dumps({"texts": ["a text whose client leaves " * 50]}).encode()
        with socket.create_connection((where.hostname, where.port)) as sock:
            head = f"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
            sock.sendall(head.encode() + body)
            time.sleep(0.3)  # read by the server, waiting for its batch
        time.sleep(2.0)
        assert waiting.get("/health")[1]["scored"]["requests"] == 0  # dropped unscored
        assert waiting.post("/v1/score", {"texts": ["next"]})[0] == 200
        assert waiting.get("/health")[1]["scored"]["requests"] == 1
        assert any("POST /v1/score 499" in line for line in waiting.lines)
    finally:
        assert waiting.stop() == 0
