"""The command line through CliRunner: exit codes, exact JSON, quiet stderr, one-line errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TOTAL_KEYS, one_line_error, run, usage_error


@pytest.fixture
def texts(tmp_path: Path) -> dict[str, Path]:
    files = {
        "prose": "The cat sat on the mat, and then the dog sat on the log.",
        "german": "Zählt die Wörter: naïve café, 7 Birnen.",
        "empty": "",
    }
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_text(text, encoding="utf-8")
    return paths


def test_score_json_contract(model_dirs, texts) -> None:
    result = run("score", texts["prose"], texts["german"], "--model", model_dirs["llama"], "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert set(data) == {"schema", "model", "settings", "documents", "total"}
    assert data["schema"] == "gptloss.score/v1"
    assert set(data["model"]) == {"spec", "name", "kind", "sha256", "revision", "dtype", "device"}
    assert data["model"]["kind"] == "directory" and data["model"]["dtype"] == "float32"
    plan_keys = {"max_length", "stride", "bos_policy", "bos_token_id", "batch_size"}
    assert set(data["settings"]) == plan_keys | {"protocol", "versions"}
    assert set(data["settings"]["versions"]) == {"gptloss", "torch", "transformers", "python"}
    card = data["settings"]["protocol"]
    assert card["name"] == "gptloss" and card["tokens_scored"] == data["total"]["tokens_scored"]
    assert card["context_min"] == 1 and card["tokens_dropped"] == 0 and card["windows"] == 2
    assert [d["source"] for d in data["documents"]] == [str(texts["prose"]), str(texts["german"])]
    for doc in data["documents"]:
        assert set(doc) == TOTAL_KEYS | {"source"}
    total = data["total"]
    assert set(total) == TOTAL_KEYS | {"documents", "macro_mean_perplexity"}
    assert total["documents"] == 2
    ppls = [d["perplexity"] for d in data["documents"]]
    assert math.isclose(total["macro_mean_perplexity"], sum(ppls) / 2, rel_tol=1e-12)
    assert total["tokens_scored"] == sum(d["tokens_scored"] for d in data["documents"])
    assert math.isclose(total["nll_sum"], sum(d["nll_sum"] for d in data["documents"]), rel_tol=1e-12)
    assert total["bytes"] == len(texts["prose"].read_bytes()) + len(texts["german"].read_bytes())
    assert total["words"] == sum(len(texts[k].read_text().split()) for k in ("prose", "german")) == 21
    assert math.isclose(total["perplexity"], math.exp(total["nll_sum"] / total["tokens_scored"]), rel_tol=1e-12)


def test_score_table(model_dirs, texts) -> None:
    result = run("score", texts["prose"], texts["german"], "--model", model_dirs["gpt2"])
    assert result.exit_code == 0 and result.stderr == ""
    assert "PPL" in result.stdout and "total" in result.stdout and "bits/byte" in result.stdout


def test_output_file_is_written_whole(model_dirs, texts, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = run("score", texts["prose"], "-m", model_dirs["gpt2"], "-f", "json", "-o", out)
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(out.read_text())["total"]["tokens_scored"] > 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_failed_run_leaves_no_output(model_dirs, texts, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = run("score", texts["empty"], "-m", model_dirs["gpt2"], "-f", "json", "-o", out)
    assert result.exit_code == 1 and not out.exists()


def test_empty_file_among_others_warns(model_dirs, texts) -> None:
    result = run("score", texts["prose"], texts["empty"], "-m", model_dirs["gpt2"], "-f", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["documents"][1]["tokens_scored"] == 0 and data["documents"][1]["perplexity"] is None
    assert "warning" in result.stderr and "empty.txt" in result.stderr


def test_windows_options_reach_the_result(model_dirs, texts) -> None:
    args = ("score", texts["prose"], "-m", model_dirs["gpt2"], "-f", "json")
    whole = json.loads(run(*args).stdout)
    windowed = json.loads(run(*args, "--max-length", "6", "--stride", "3", "--batch-size", "2").stdout)
    assert windowed["settings"]["max_length"] == 6 and windowed["settings"]["stride"] == 3
    assert windowed["total"]["tokens_scored"] == whole["total"]["tokens_scored"]
    assert windowed["total"]["nll_sum"] != whole["total"]["nll_sum"]  # less context, other numbers


def test_bos_never(model_dirs, texts) -> None:
    args = ("score", texts["prose"], "-m", model_dirs["gpt2"], "-f", "json")
    auto = json.loads(run(*args).stdout)
    never = json.loads(run(*args, "--bos", "never").stdout)
    assert never["total"]["tokens_scored"] == auto["total"]["tokens_scored"] - 1
    assert never["settings"]["bos_token_id"] is None


def test_errors_bad_inputs(model_dirs, texts, tmp_path: Path) -> None:
    model = str(model_dirs["gpt2"])
    one_line_error(run("score", tmp_path / "nope.txt", "-m", model), "nope.txt", "no such file")
    (tmp_path / "empty").mkdir()
    one_line_error(run("score", tmp_path / "empty", "-m", model), "no text files in")
    (tmp_path / "x.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    one_line_error(run("score", tmp_path / "x.bin", "-m", model), "x.bin", "binary", "offset 8")
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe")
    one_line_error(run("score", tmp_path / "bad.txt", "-m", model), "bad.txt", "byte offset 3")
    one_line_error(run("score", texts["empty"], "-m", model), "empty.txt", "nothing to score")
    one_line_error(run("score", texts["empty"], texts["empty"], "-m", model), "nothing to score")


def test_nothing_to_score_without_bos(model_dirs, tmp_path: Path) -> None:
    one = tmp_path / "one.txt"
    one.write_text("x")
    one_line_error(run("score", one, "-m", model_dirs["llama-nobos"]), "nothing to score")


def test_errors_bad_models(texts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants
    from transformers import DistilBertConfig

    prose = texts["prose"]
    one_line_error(run("score", prose, "-m", "not a model"), "unknown model")
    one_line_error(run("score", prose, "-m", tmp_path / "missing.gguf"), "no such GGUF file")
    one_line_error(run("score", prose, "-m", prose), "not a model")
    (tmp_path / "empty_dir").mkdir()
    one_line_error(run("score", prose, "-m", tmp_path / "empty_dir"), "no config.json")
    DistilBertConfig().save_pretrained(tmp_path / "bert")
    one_line_error(run("score", prose, "-m", tmp_path / "bert"), "not a causal language model")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    one_line_error(run("score", prose, "-m", "someone/some-model"), "someone/some-model", "HF_HUB_OFFLINE", "--model")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://127.0.0.1:9")
    one_line_error(run("score", prose, "-m", "someone/some-model"), "cannot be reached", "--model")


def test_errors_bad_settings(model_dirs, texts) -> None:
    model = str(model_dirs["gpt2"])
    one_line_error(run("score", texts["prose"], "-m", model, "--max-length", "4096"), "exceeds", "128")
    usage_error(run("score", texts["prose"], "-m", model, "--max-length", "8", "--stride", "9"), "stride")
    one_line_error(run("score", texts["prose"], "-m", model, "--device", "cuda"), "cuda")
    assert run("score", texts["prose"], "--max-length", "1").exit_code == 2  # usage error: Typer's own


def test_models_lists_bundled_aliases() -> None:
    result = run("models", "--format", "json")
    assert result.exit_code == 0 and result.stderr == ""
    data = json.loads(result.stdout)
    assert data["schema"] == "gptloss.models/v1"
    assert [m["alias"] for m in data["models"]] == ["gemma-3-270m", "smollm2-135m-instruct"]
    for entry in data["models"]:
        assert isinstance(entry["installed"], bool) and isinstance(entry["converted"], bool)
        if entry["installed"]:
            assert entry["gguf_bytes"] > 10**7 and len(entry["sha256"]) == 64


def test_main_process_exit_code_and_help(tmp_path: Path) -> None:
    """The installed entry point: one line and exit 1 on a bad path, --help without loading torch."""
    bad = subprocess.run(
        [sys.executable, "-m", "gptloss_cli", "score", str(tmp_path / "nope.txt")], capture_output=True, text=True
    )
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "no such file" in bad.stderr
    code = "import sys, gptloss_cli.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("command", ["score", "tokens", "compare"])
def test_help_shows_the_extra_to_install_for_the_llama_cpp_backend(command: str) -> None:
    """Rich reads [..] as markup: the extra's name must survive into the help text."""
    result = run(command, "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "gptloss[llama-cpp]" in result.stdout
