"""`gptloss serve` as lm-evaluation-harness's local-completions model talks to it, without lm-eval: the exact
requests it sends (lm_eval 0.4.13: models/openai_completions.py LocalCompletionsAPI._create_payload,
models/api_models.py, utils.py RemoteTokenizer and check_remote_tokenizer_support), each answer read back the
way it reads it, and the numbers checked against the model's own log-probabilities."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from gptloss_cli.models.tokenizer import Tokenizer  # noqa: E402
from gptloss_cli.serve.app import ServeSettings, create_app  # noqa: E402

NAME = "tiny"


@pytest.fixture
def client(loaded: dict[str, Any]) -> Any:
    app = create_app({NAME: loaded["llama"]}, ServeSettings(window=0.0))
    with TestClient(app) as http:  # runs the lifespan: the worker thread
        yield http


def loglikelihood_payload(prompts: list[list[int]]) -> dict[str, Any]:
    """LocalCompletionsAPI._create_payload(generate=False), as it goes out for a batch of token-id prompts."""
    return {"model": NAME, "prompt": prompts, "temperature": 0, "max_tokens": 1, "logprobs": 1, "seed": 1234,
            "echo": True}  # fmt: skip


def parse_logprobs(outputs: dict[str, Any], ctxlens: list[int]) -> list[tuple[float, bool]]:
    """LocalCompletionsAPI.parse_logprobs, as lm_eval 0.4.13 has it."""
    res = []
    for choice, ctxlen in zip(sorted(outputs["choices"], key=itemgetter("index")), ctxlens, strict=False):
        assert ctxlen > 0
        logprobs = sum(choice["logprobs"]["token_logprobs"][ctxlen:-1])
        tokens_logprobs = choice["logprobs"]["token_logprobs"][ctxlen:-1]
        top_logprobs = choice["logprobs"]["top_logprobs"][ctxlen:-1]
        is_greedy = True
        for tok, top in zip(tokens_logprobs, top_logprobs, strict=False):
            if tok != max(top.values()):
                is_greedy = False
                break
        res.append((logprobs, is_greedy))
    return res


def model_logprobs(loaded: Any, ids: list[int]) -> torch.Tensor:
    """log p of every next token after each position of `ids`, in float64: (n, V)."""
    with torch.inference_mode():
        logits = loaded.backend.model(torch.tensor([ids])).logits[0]
    return torch.log_softmax(logits.double(), dim=-1)


def expected(loaded: Any, ids: list[int], ctxlen: int) -> tuple[float, bool]:
    """What lm-eval's hf model gives for the continuation ids[ctxlen:] after ids[:ctxlen]."""
    lp = model_logprobs(loaded, ids)
    total = sum(float(lp[i - 1, ids[i]]) for i in range(ctxlen, len(ids)))
    greedy = all(int(lp[i - 1].argmax()) == ids[i] for i in range(ctxlen, len(ids)))
    return total, greedy


def test_the_remote_tokenizer_is_detected_and_agrees(client: Any, loaded: dict[str, Any]) -> None:
    """check_remote_tokenizer_support: /tokenizer_info is an object with eos_token, /tokenize answers a list;
    RemoteTokenizer then takes bos/eos ids as encode(token)[0] and encodes with add_special_tokens false."""
    info = client.get("/tokenizer_info")
    assert info.status_code == 200 and "eos_token" in info.json()
    tokenizer = loaded["llama"].tokenizer
    probe = client.post("/tokenize", json={"prompt": "test", "add_special_tokens": False})
    assert probe.status_code == 200 and isinstance(probe.json()["tokens"], list)

    def encode(text: str) -> list[int]:
        return client.post("/tokenize", json={"prompt": text, "add_special_tokens": False}).json()["tokens"]

    assert encode(info.json()["bos_token"])[0] == tokenizer.bos_token_id
    assert encode(info.json()["eos_token"])[0] == tokenizer.eos_token_id
    text = "The cat sat on the mat.\n\nZählt die Wörter"
    assert encode(text) == tokenizer.backend.encode(text, add_special_tokens=False).ids
    assert client.post("/detokenize", json={"tokens": encode(text)}).json()["prompt"] == text


@pytest.mark.parametrize("eos_greedy", [False, True], ids=["continues", "eos-next"])
def test_loglikelihood_requests_read_as_lm_eval_reads_them(
    client: Any, loaded: dict[str, Any], monkeypatch: pytest.MonkeyPatch, eos_greedy: bool
) -> None:
    """A batch of (context, continuation) prompts with echo, logprobs 1 and max_tokens 1: every choice lists
    the prompt's tokens and one generated token, so [ctxlen:-1] is the continuation. With eos-next the model's
    top choice after the prompt is (made) the end-of-sequence token: it is still listed (it was dropped, and
    lm-eval summed the continuation without its last token: 0.0 for a one-token continuation)."""
    model = loaded["llama"]
    bos = model.tokenizer.bos_token_id
    context = model.tokenizer.encode("The cat sat on the")[0].tolist()
    prompts = [[bos, *context, *model.tokenizer.encode(c)[0].tolist()] for c in (" mat.", " log")]
    ctxlens = [1 + len(context)] * 2
    if eos_greedy:  # the first prompt's greedy next token becomes the end-of-sequence token
        after = int(model_logprobs(model, prompts[0])[-1].argmax())
        monkeypatch.setattr(Tokenizer, "eos_token_id", property(lambda self: after))
    answer = client.post("/v1/completions", json=loglikelihood_payload(prompts))
    assert answer.status_code == 200, answer.text
    choices = answer.json()["choices"]
    for choice, prompt in zip(choices, prompts, strict=True):
        assert len(choice["logprobs"]["token_logprobs"]) == len(prompt) + 1
        assert choice["logprobs"]["token_logprobs"][0] is None  # the first token has nothing before it
    if eos_greedy:
        assert choices[0]["finish_reason"] == "stop"
        assert choices[0]["logprobs"]["tokens"][-1] == model.tokenizer.pieces([after])[0]
        assert choices[0]["text"] == "".join(choices[0]["logprobs"]["tokens"][:-1])  # echoed, the EOS left out
    for (got, greedy), prompt, ctxlen in zip(parse_logprobs(answer.json(), ctxlens), prompts, ctxlens, strict=True):
        want, want_greedy = expected(model, prompt, ctxlen)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
        assert greedy == want_greedy


def test_a_rolling_window_request(client: Any, loaded: dict[str, Any]) -> None:
    """loglikelihood_rolling's first window: [prefix] + tokens with ctxlen 1 scores every token of the text."""
    model = loaded["llama"]
    tokens = model.tokenizer.encode("Perplexity is the exponential of the mean negative log-likelihood.")[0]
    prompt = [model.tokenizer.bos_token_id, *tokens.tolist()]
    ((got, _),) = parse_logprobs(client.post("/v1/completions", json=loglikelihood_payload([prompt])).json(), [1])
    assert got == pytest.approx(expected(model, prompt, 1)[0], rel=1e-5)


def test_a_generation_that_stops_at_eos(client: Any, loaded: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """generate_until's request (stop holds the EOS text, as handle_stop_sequences adds it): the text ends
    before the end-of-sequence token, and finish_reason says stop."""
    model = loaded["llama"]
    prompt = [model.tokenizer.bos_token_id, *model.tokenizer.encode("The dog sat on the")[0].tolist()]
    after = int(model_logprobs(model, prompt)[-1].argmax())
    monkeypatch.setattr(Tokenizer, "eos_token_id", property(lambda self: after))
    eos_text = model.tokenizer.pieces([after])[0]
    payload = {"prompt": [prompt], "model": NAME, "max_tokens": 4, "temperature": 0, "stop": [eos_text], "seed": 1234}
    answer = client.post("/v1/completions", json=payload)
    assert answer.status_code == 200, answer.text
    (choice,) = answer.json()["choices"]
    assert choice["text"] == "" and choice["finish_reason"] == "stop"
    assert answer.json()["usage"]["completion_tokens"] == 1
