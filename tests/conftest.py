"""What the tests share: tiny seeded models built from configs (with a small byte-level BPE tokenizer
trained offline), the CLI runner, the one-line-error check, the model's own `labels=` loss, and the
comparison of totals from runs whose batches differ."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

runner = CliRunner()
# Runs whose batches differ (other batch sizes, a streamed and a prepared dataset) reduce in another order:
# on CPUs with AVX-512 their sums differ in the last bits. Such runs are compared to this relative tolerance;
# runs whose batches are the same by construction (a resume) are compared to the bit.
BATCH_RTOL = 1e-6
# The fields of every document and total in score's JSON (gptloss.score/v1).
TOTAL_KEYS = {
    "tokens_scored",
    "nll_sum",
    "mean_nll",
    "perplexity",
    "bits_per_token",
    "bytes",
    "bits_per_byte",
    "words",
    "word_perplexity",
    "stderr_mean_nll",
    "perplexity_ci95",
    "nll_sq_sum",
}


def run(*args: object, env: dict[str, str] | None = None) -> Any:
    """The gptloss app on these arguments, in-process; .exit_code, .stdout and .stderr."""
    from gptloss_cli.cli import app

    return runner.invoke(app, [str(a) for a in args], env=env)


def launch(ranks: int, *args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`gptloss ARGS` as `ranks` processes under torchrun on this machine."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    environment.pop("GPTLOSS_DEBUG", None)
    return subprocess.run(
        [*command, "-m", "gptloss_cli", *map(str, args)], capture_output=True, text=True, env=environment, timeout=300
    )


def one_line_error(result: Any, *fragments: str, code: int = 1) -> None:
    """A failed run that says why in one line on stderr (holding each fragment) and prints nothing else."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gptloss: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def usage_error(result: Any, *fragments: str) -> None:
    """A command line that cannot work (an option's value, options that do not go together): one line, exit 2."""
    one_line_error(result, *fragments, code=2)


def stopped_after(scores: Any, count: int) -> Any:
    """ScoreRun.scores as if the run were interrupted (Ctrl-C) after `count` documents."""

    def stops(self: Any, *args: Any, **kwargs: Any) -> Any:
        for i, score in enumerate(scores(self, *args, **kwargs)):
            if i == count:
                raise KeyboardInterrupt
            yield score

    return stops


def labels_loss_sum(model: Any, ids: list[int]) -> tuple[float, int]:
    """transformers' own mean loss over the shifted labels (`labels=`), times their count."""
    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        loss = model(input_ids=input_ids, labels=input_ids).loss
    return float(loss) * (len(ids) - 1), len(ids) - 1


def assert_totals_close(got: dict[str, Any], expected: dict[str, Any], rel: float = BATCH_RTOL) -> None:
    """Two result dicts (a document or a total) equal in every key: counts and names exactly, floats to `rel`."""
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float):
            assert math.isclose(got[key], value, rel_tol=rel), (key, got[key], value)
        elif isinstance(value, list) and value and isinstance(value[0], float):
            assert got[key] == pytest.approx(value, rel=rel), key
        else:
            assert got[key] == value, key


SPECIALS = ["<pad>", "<bos>", "<eos>"]
CORPUS = [
    "The cat sat on the mat. The dog sat on the log.",
    "Perplexity is the exponential of the mean negative log-likelihood.",
    "def plan(length, size, step):\n    return [range(i, i + size) for i in range(0, length, step)]\n",
    "Zählt die Wörter, 42 Äpfel und 7 Birnen; naïve café.",
    "1. screws: 312\n2. bolts: 48\n3. glue: 3 bottles\n",
]


def build_tokenizer(with_bos: bool = True, vocab_size: int = 320, post_bos: bool = False):
    """A byte-level BPE tokenizer (any text encodes) wrapped as a transformers fast tokenizer; with `post_bos`
    its defaults put <bos> first, as Gemma's do."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(CORPUS * 3, trainer=trainer)
    if post_bos:
        bos = backend.token_to_id("<bos>")
        backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    extra = {"bos_token": "<bos>"} if with_bos else {}
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>", **extra)


def tiny_config(arch: str, vocab: int):
    from transformers import Gemma3TextConfig, GPT2Config, LlamaConfig

    common = {"vocab_size": vocab, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    if arch == "gpt2":
        return GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=128, **common)
    if arch == "llama":
        return LlamaConfig(
            num_hidden_layers=2,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            tie_word_embeddings=False,
            **common,
        )
    if arch == "gemma3":
        return Gemma3TextConfig(
            num_hidden_layers=2,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=128,
            sliding_window=8,
            layer_types=["sliding_attention", "full_attention"],
            final_logit_softcapping=30.0,
            **common,
        )
    raise ValueError(arch)


ARCHS = ["gpt2", "llama", "gemma3"]


def build_model_dir(
    root: Path, arch: str, with_bos: bool = True, seed: int = 0, vocab_size: int = 320, post_bos: bool = False
) -> Path:
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer(with_bos, vocab_size, post_bos)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, len(tokenizer)), dtype=torch.float32)
    with torch.no_grad():  # larger weights than the init's, so predictions differ from uniform
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.2)
    out = root / f"{arch}{'' if with_bos else '-nobos'}{'-postbos' if post_bos else ''}-{seed}"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    dirs = {arch: build_model_dir(root, arch) for arch in ARCHS}
    dirs["llama-nobos"] = build_model_dir(root, "llama", with_bos=False)
    return dirs


@pytest.fixture(scope="session")
def loaded(model_dirs: dict[str, Path]):
    """Every tiny model loaded once through gptloss's own loader."""
    from gptloss_cli.models.loader import load_model

    return {name: load_model(str(path)) for name, path in model_dirs.items()}
