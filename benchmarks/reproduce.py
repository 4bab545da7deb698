"""Each peer's own number next to the gptloss preset that reproduces it, on the same model and text.

    python benchmarks/reproduce.py --lm-eval-python lmeval/bin/python --llama-perplexity build/bin/llama-perplexity

- lm-evaluation-harness: `HFLM(pretrained=DIR, dtype="float32", max_length=L)` and one `loglikelihood_rolling`
  request, in the Python of a virtual environment that has `lm_eval` (never a dependency of gptloss: make one
  with `python -m venv lmeval && lmeval/bin/pip install torch==2.13.0 lm-eval accelerate`).
- the transformers documentation's strided recipe, written out below as the documentation gives it.
- llama.cpp's `llama-perplexity` on the model's GGUF file, when the binary is given.

DIR is the converted copy of the bundled model (safetensors + tokenizer.json), so every tool reads the same
weights; llama.cpp reads the GGUF file itself, with its quantised kernels. Prints a table: peer, its number,
the preset's, their relative difference. Takes a few minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

DEFAULT_TEXT = "/usr/share/common-licenses/GPL-3"  # a long public text nobody in this project wrote

LM_EVAL = textwrap.dedent(
    """
    import json, sys
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    directory, path, length = sys.argv[1], sys.argv[2], int(sys.argv[3])
    text = open(path, encoding="utf-8").read()
    lm = HFLM(pretrained=directory, dtype="float32", max_length=length, batch_size=1, device="cpu")
    request = Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=0)
    print(json.dumps({"log_likelihood": lm.loglikelihood_rolling([request], disable_tqdm=True)[0]}))
    """
)


def gptloss(model: str, text: str, protocol: str, length: int, stride: int | None = None, *more: str) -> dict:
    args = [sys.executable, "-m", "gptloss_cli", "score", text, "-m", model, "-f", "json", "--protocol", protocol]
    args += ["--max-length", str(length)] + ([] if stride is None else ["--stride", str(stride)]) + list(more)
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["total"]


def hf_recipe(directory: str, text: str, max_length: int, stride: int) -> float:
    """The strided recipe from the transformers documentation ("Perplexity of fixed-length models")."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    encodings = tokenizer(open(text, encoding="utf-8").read(), return_tensors="pt")
    seq_len = encodings.input_ids.size(1)
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc  # may be different from stride on last loop
        input_ids = encodings.input_ids[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            outputs = model(input_ids, labels=target_ids)
            neg_log_likelihood = outputs.loss
        num_valid_tokens = (target_ids != -100).sum().item()  # number of valid tokens in target_ids
        batch_size = target_ids.size(0)
        num_loss_tokens = num_valid_tokens - batch_size  # subtract batch_size due to internal label shift
        nll_sum += neg_log_likelihood * num_loss_tokens
        n_tokens += num_loss_tokens
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return float(torch.exp(nll_sum / n_tokens))


def llama_perplexity(binary: str, gguf: str, text: str, n_ctx: int, threads: int = 2) -> dict:
    """llama-perplexity's estimate and chunk count, the seconds it spent evaluating (from its own log), its
    wall time and peak RSS."""
    cmd = [binary, "-m", gguf, "-f", text, "-c", str(n_ctx), "-b", str(n_ctx), "-t", str(threads)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    final = re.search(r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)", log)
    chunks = re.search(r"calculating perplexity over (\d+) chunks", log)
    # its log lines start with the time since start, M.SS.mmm.uuu: evaluation runs from the line that announces
    # the chunks to the final estimate (tokenisation and loading are before it)
    stamp = r"^(\d+)\.(\d+)\.(\d+)\.(\d+) I "
    begin = re.search(stamp + "perplexity: calculating", log, re.M)
    end = re.search(stamp + "Final estimate", log, re.M)
    if status != 0 or not (final and chunks and begin and end):
        raise SystemExit(f"llama-perplexity printed no estimate:\n{log[-2000:]}")
    return {
        "perplexity": float(final.group(1)),
        "plus_minus": float(final.group(2)),
        "chunks": int(chunks.group(1)),
        "eval_seconds": _log_seconds(end) - _log_seconds(begin),
        "wall_seconds": wall,
        "rss_mb": usage.ru_maxrss / 1024,
    }


def _log_seconds(match: re.Match) -> float:
    minutes, seconds, millis, micros = (int(g) for g in match.groups())
    return minutes * 60 + seconds + millis / 1e3 + micros / 1e6


def rel(a: float, b: float) -> str:
    return f"{(b - a) / a:+.2e}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma-3-270m", help="a bundled alias or a .gguf file")
    parser.add_argument("--text", default=DEFAULT_TEXT)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--stride", type=int, default=512, help="the recipe's stride")
    parser.add_argument("--lm-eval-python", help="python of a venv with lm_eval installed")
    parser.add_argument("--llama-perplexity", help="the llama-perplexity binary")
    args = parser.parse_args()

    from gptloss_cli.models.loader import bundled_gguf, locate
    from gptloss_cli.models.spec import BUNDLED

    directory, _, _, _ = locate(args.model, None)
    gguf = Path(args.model) if args.model.endswith(".gguf") else bundled_gguf(BUNDLED[args.model])[0]
    rows = []
    if args.lm_eval_python:
        done = subprocess.run(
            [args.lm_eval_python, "-c", LM_EVAL, directory, args.text, str(args.max_length)],
            capture_output=True,
            text=True,
            check=True,
        )
        theirs = json.loads(done.stdout.strip().splitlines()[-1])["log_likelihood"]
        ours = gptloss(args.model, args.text, "lm-eval", args.max_length)["lm_eval"]
        raw = open(args.text, encoding="utf-8").read()
        words, n_bytes = len(re.split(r"\s+", raw)), len(raw.encode("utf-8"))
        rows.append(("lm-eval log-likelihood", theirs, ours["log_likelihood"]))
        rows.append(("lm-eval word_perplexity", math.exp(-theirs / words), ours["word_perplexity"]))
        rows.append(("lm-eval byte_perplexity", math.exp(-theirs / n_bytes), ours["byte_perplexity"]))
        rows.append(("lm-eval bits_per_byte", -theirs / n_bytes / math.log(2), ours["bits_per_byte"]))
    ours = gptloss(args.model, args.text, "hf-stride", args.max_length, args.stride)["hf_stride"]
    recipe = hf_recipe(directory, args.text, args.max_length, args.stride)
    rows.append((f"transformers recipe (stride {args.stride})", recipe, ours["perplexity"]))
    if args.llama_perplexity:
        theirs_cpp = llama_perplexity(args.llama_perplexity, str(gguf), args.text, args.max_length)
        ours_cpp = gptloss(args.model, args.text, "llama.cpp", args.max_length)
        rows.append(("llama.cpp PPL", theirs_cpp["perplexity"], ours_cpp["llama_cpp"]["perplexity"]))
        rows.append(("llama.cpp chunks", theirs_cpp["chunks"], ours_cpp["llama_cpp"]["chunks"]))
        if importlib.util.find_spec("llama_cpp"):  # the same file through llama.cpp's kernels: its very numbers
            same = gptloss(args.model, args.text, "llama.cpp", args.max_length, None, "--backend", "llama.cpp")
            for key, label in (("perplexity", "PPL"), ("plus_minus", "±")):
                rows.append((f"llama.cpp {label}, --backend llama.cpp", theirs_cpp[key], same["llama_cpp"][key]))
    print(f"model {args.model}, text {args.text}, windows of {args.max_length}")
    print(f"{'peer':40} {'peer says':>16} {'gptloss preset':>16} {'rel. diff':>10}")
    for name, theirs_value, ours_value in rows:
        print(f"{name:40} {theirs_value:16.8g} {ours_value:16.8g} {rel(theirs_value, ours_value):>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
