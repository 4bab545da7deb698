"""Throughput and memory of `gptloss score` against the plain transformers strided recipe, in one run.

    .venv/bin/python benchmarks/bench_score.py [--model gemma-3-270m] [--tokens 7600] [--max-length 1024]

Each measurement runs in its own process (so peak RSS is its own) on the same model weights and text: the
text is sample_texts/prose.txt repeated until it has at least --tokens tokens. Prints tok/s (scoring only,
after load), the ratio to the recipe, the fraction of the fp32 roofline (2 x parameters FLOP per token at the
matmul peak measured in this run), peak RSS, and whole-process wall time.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_text(tokenizer, n_tokens: int) -> str:
    prose = (ROOT / "sample_texts" / "prose.txt").read_text(encoding="utf-8")
    text = prose
    while len(tokenizer.encode(text)[0]) < n_tokens:
        text += "\n\n" + prose
    return text


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_recipe(args: argparse.Namespace) -> dict:
    """The strided-window recipe from the transformers docs, written out: labels= loss per window."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gptloss_cli.models import locate

    source = locate(args.model, None)[0]  # the converted copy of the bundled GGUF, found without loading it
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    load = time.perf_counter() - t0
    text = Path(args.text).read_text(encoding="utf-8")
    ids = tokenizer(text, return_tensors="pt").input_ids  # (1, n), BOS added by the tokenizer
    t0 = time.perf_counter()
    nll_sum, counted, prev_end = 0.0, 0, 0
    for begin in range(0, ids.size(1), args.max_length):
        end = min(begin + args.max_length, ids.size(1))
        window = ids[:, begin:end]
        labels = window.clone()
        labels[:, : -(end - prev_end)] = -100
        with torch.no_grad():
            loss = model(window, labels=labels).loss
        n = int((labels != -100).sum()) - 1
        nll_sum += float(loss) * n
        counted += n
        prev_end = end
        if end == ids.size(1):
            break
    seconds = time.perf_counter() - t0
    return {"tokens": counted, "seconds": seconds, "load_seconds": load, "nll_sum": nll_sum, "rss_mb": peak_rss_mb()}


def child_gptloss(args: argparse.Namespace) -> dict:
    from gptloss_cli.api import score_documents
    from gptloss_cli.engine import WindowSettings
    from gptloss_cli.inputs import Document
    from gptloss_cli.models import Dtype, load_model

    t0 = time.perf_counter()
    lm = load_model(args.model, dtype=Dtype(args.dtype))
    load = time.perf_counter() - t0
    doc = Document(Path(args.text).read_text(encoding="utf-8"), "bench")
    t0 = time.perf_counter()
    result = score_documents(lm, [doc], WindowSettings(max_length=args.max_length, batch_size=args.batch_size))
    seconds = time.perf_counter() - t0
    total = result.total
    return {
        "tokens": total.tokens_scored,
        "seconds": seconds,
        "load_seconds": load,
        "nll_sum": total.nll_sum,
        "rss_mb": peak_rss_mb(),
    }


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 5) -> float:
    """Best-of-N GFLOP/s of a square matmul."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_child(args: argparse.Namespace, mode: str, dtype: str = "float32") -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--dtype", dtype, "--model", args.model, "--text", args.text]
    cmd += ["--max-length", str(args.max_length), "--batch-size", str(args.batch_size)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - t0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--tokens", type=int, default=7600)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement; medians are shown")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--child", choices=["recipe", "gptloss"])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--text")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_recipe(args) if args.child == "recipe" else child_gptloss(args)))
        return

    from gptloss_cli.models import load_model

    lm = load_model(args.model)
    params = sum(p.numel() for p in lm.model.parameters())
    text_path = Path("/tmp") / f"gptloss-bench-{args.model}-{args.tokens}.txt"
    text_path.write_text(build_text(lm.tokenizer, args.tokens), encoding="utf-8")
    args.text = str(text_path)
    del lm
    peaks = {d: matmul_peak(d) for d in ("float32", "bfloat16")}
    roofline = peaks["float32"] * 1e9 / (2 * params)
    print(f"model {args.model}: {params / 1e6:.0f}M parameters; text {args.tokens}+ tokens; windows {args.max_length}")
    print(f"matmul peak: fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.0f} GFLOP/s")
    print(f"fp32 roofline: {roofline:.0f} tok/s")
    runs = [("recipe", "float32")] + [("gptloss", d) for d in args.dtypes.split(",")]
    results = {}
    for mode, dtype in runs:
        samples = [run_child(args, mode, dtype) for _ in range(args.repeats)]
        results[(mode, dtype)] = samples
    base = statistics.median(s["tokens"] / s["seconds"] for s in results[("recipe", "float32")])
    base_proc = statistics.median(s["process_seconds"] for s in results[("recipe", "float32")])
    header = f"{'run':<18}{'tokens':>7}{'tok/s':>8}{'x recipe':>9}{'roofline':>9}{'RSS MB':>8}{'load s':>7}"
    print(header + f"{'process s':>10}{'x recipe':>9}{'mean NLL':>10}")
    for (mode, dtype), samples in results.items():
        tps = statistics.median(s["tokens"] / s["seconds"] for s in samples)
        proc = statistics.median(s["process_seconds"] for s in samples)
        rss = max(s["rss_mb"] for s in samples)
        load = statistics.median(s["load_seconds"] for s in samples)
        mean_nll = samples[0]["nll_sum"] / samples[0]["tokens"]
        print(
            f"{mode + ' ' + dtype:<18}{samples[0]['tokens']:>7}{tps:>8.0f}{tps / base:>9.2f}{tps / roofline:>9.2f}"
            f"{rss:>8.0f}{load:>7.1f}{proc:>10.1f}{base_proc / proc:>9.2f}{mean_nll:>10.5f}"
        )


if __name__ == "__main__":
    main()
