"""Throughput and memory of `gptloss score` against the plain transformers strided recipe, in one run.

    .venv/bin/python benchmarks/bench_score.py [--model gemma-3-270m] [--tokens 7600] [--max-length 1024]
    python benchmarks/bench_score.py --device cuda --random-weights --model DIR   # DIR: config + tokenizer files

Each measurement runs in its own process (so peak RSS is its own) on the same model weights and text: the
text is sample_texts/prose.txt repeated until it has at least --tokens tokens. Prints tok/s (scoring only,
after load), the ratio to the recipe, the fraction of the fp32 roofline (2 x parameters FLOP per token at the
matmul peak measured in this run), peak RSS, and whole-process wall time.

--random-weights gives the model in --model (a directory with config.json and tokenizer files) seeded random
weights first: speed does not depend on the weights, so a machine without the real ones can still be measured.
Mean NLL is then meaningless. On CUDA, peak GPU memory is shown as well.

--llama-perplexity PATH times llama.cpp's `llama-perplexity` on the model's GGUF file (the bundled alias's, or
--gguf) and the same text, with chunks of --max-length and as many threads as torch uses. llama.cpp forwards
whole chunks but scores only the second half of each (L/2 - 1 tokens), so its rows give both rates: "fwd tok/s"
(tokens through the model per second of evaluation, from its own timer) and "tok/s" (tokens scored per second),
and each gptloss row is compared with it on both (gptloss scores every token it forwards but the first of a
window). llama.cpp runs its own quantised kernels on the file's weights; gptloss runs the dequantised weights,
or, with --llama-backend (a row "gptloss llama.cpp"), the file through llama.cpp's kernels too.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import ROOT, describe, header


def build_text(tokenizer, n_tokens: int) -> str:
    prose = (ROOT / "sample_texts" / "prose.txt").read_text(encoding="utf-8")
    copies = -(-n_tokens // len(tokenizer.encode(prose + "\n\n")[0]))  # the fewest copies, tokenised once
    while len(tokenizer.encode("\n\n".join([prose] * copies))[0]) < n_tokens:
        copies += 1
    return "\n\n".join([prose] * copies)


def memory(device: str) -> dict:
    """Peak RSS of this process, and peak GPU memory allocated on CUDA, in MB."""
    out = {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device == "cuda":
        import torch

        out["gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def child_recipe(args: argparse.Namespace) -> dict:
    """The strided-window recipe from the transformers docs, written out: labels= loss per window."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gptloss_cli.models.loader import locate

    source = locate(args.model, None)[0]  # the converted copy of the bundled GGUF, found without loading it
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, args.dtype)).to(args.device).eval()
    load = time.perf_counter() - t0
    text = Path(args.text).read_text(encoding="utf-8")
    if args.warmup:
        recipe_loop(model, tokenizer(warmup_text(text, args.max_length), return_tensors="pt").input_ids, args)
    ids = tokenizer(text, return_tensors="pt").input_ids.to(args.device)  # (1, n), BOS added by the tokenizer
    t0 = time.perf_counter()
    nll_sum, counted = recipe_loop(model, ids, args)
    seconds = time.perf_counter() - t0
    return {"tokens": counted, "seconds": seconds, "load_seconds": load, "nll_sum": nll_sum, **memory(args.device)}


def recipe_loop(model, ids, args: argparse.Namespace) -> tuple[float, int]:
    """(NLL sum, tokens) of the recipe's windows over ids (1, n)."""
    import torch

    ids = ids.to(args.device)
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
    if args.device == "cuda":
        torch.cuda.synchronize()
    return nll_sum, counted


def warmup_text(text: str, max_length: int) -> str:
    """The start of the text, about four windows (English runs ~4 characters a token): scored once, untimed, so
    that lazy CUDA set-up and compilation are not counted in tokens per second (the process time has them)."""
    return text[: 16 * max_length]


def child_gptloss(args: argparse.Namespace) -> dict:
    from gptloss_cli.core.plan import WindowSettings
    from gptloss_cli.inputs.document import Document
    from gptloss_cli.models.loader import load_model
    from gptloss_cli.models.spec import Backend, Device, Dtype
    from gptloss_cli.tasks.score import score_documents

    t0 = time.perf_counter()
    if args.dtype == "llama.cpp":  # the llama.cpp backend: the GGUF file's own types and kernels
        lm = load_model(args.model, backend=Backend.llama_cpp)
    else:
        lm = load_model(args.model, device=Device(args.device), dtype=Dtype(args.dtype), compile=args.compile)
    load = time.perf_counter() - t0
    text = Path(args.text).read_text(encoding="utf-8")
    settings = WindowSettings(max_length=args.max_length, batch_size=args.batch_size)
    if args.warmup:
        score_documents(lm, [Document(warmup_text(text, args.max_length), "warm-up")], settings)
    t0 = time.perf_counter()
    result = score_documents(lm, [Document(text, "bench")], settings)
    seconds = time.perf_counter() - t0
    total = result.total
    return {
        "tokens": total.tokens_scored,
        "seconds": seconds,
        "load_seconds": load,
        "nll_sum": total.nll_sum,
        **memory(args.device),
    }


def child_tokens(args: argparse.Namespace) -> dict:
    """`gptloss tokens` without the output: records (rank, entropy, top-5) for every token, streamed."""
    from gptloss_cli.core.plan import WindowSettings
    from gptloss_cli.inputs.document import Document
    from gptloss_cli.models.loader import load_model
    from gptloss_cli.models.spec import Device, Dtype
    from gptloss_cli.tasks.tokens import TokenRun

    t0 = time.perf_counter()
    lm = load_model(args.model, device=Device(args.device), dtype=Dtype(args.dtype), compile=args.compile)
    load = time.perf_counter() - t0
    doc = Document(Path(args.text).read_text(encoding="utf-8"), "bench")
    t0 = time.perf_counter()
    run = TokenRun(lm, [doc], WindowSettings(max_length=args.max_length, batch_size=args.batch_size), top_k=5)
    chunks = list(run.chunks())
    nll_sum = sum(r.nll for chunk in chunks for r in chunk.records)
    seconds = time.perf_counter() - t0
    tokens = sum(chunk.totals.tokens_scored for chunk in chunks if chunk.totals is not None)
    return {"tokens": tokens, "seconds": seconds, "load_seconds": load, "nll_sum": nll_sum, **memory(args.device)}


def matmul_peak(dtype_name: str, device: str, repeats: int = 5) -> float:
    """Best-of-N GFLOP/s of a square matmul (fp32 on CUDA without TF32, torch's default)."""
    import torch

    size = 2048 if device == "cpu" else 8192
    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b
    sync()
    best = min(_timed(lambda: a @ b, sync) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn, sync) -> float:
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def random_weights(config_dir: str) -> str:
    """A copy of config_dir's config and tokenizer files with seeded random weights; returns its path."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    target = Path("/tmp") / f"gptloss-bench-random-{Path(config_dir).name}"
    if not (target / "model.safetensors").exists():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir))
        model.save_pretrained(target)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (Path(config_dir) / name).exists():
                shutil.copy(Path(config_dir) / name, target / name)
    return str(target)


def run_llama(args: argparse.Namespace) -> dict:
    """llama-perplexity on the GGUF and text, as a row: evaluation time from its own log, peak RSS."""
    import torch
    from reproduce import llama_perplexity

    done = llama_perplexity(args.llama_perplexity, args.gguf, args.text, args.max_length, torch.get_num_threads())
    scored = done["chunks"] * (args.max_length - 1 - args.max_length // 2)  # positions L/2 .. L-2 of each chunk
    return {
        "tokens": scored,
        "forwarded": done["chunks"] * args.max_length,
        "seconds": done["eval_seconds"],
        "load_seconds": float("nan"),
        "nll_sum": math.log(done["perplexity"]) * scored,
        "rss_mb": done["rss_mb"],
        "process_seconds": done["wall_seconds"],
    }


def run_child(args: argparse.Namespace, mode: str, dtype: str = "float32") -> dict:
    if mode == "llama.cpp":
        return run_llama(args)
    cmd = [sys.executable, __file__, "--child", mode, "--dtype", dtype, "--model", args.model, "--text", args.text]
    cmd += ["--max-length", str(args.max_length), "--batch-size", str(args.batch_size), "--device", args.device]
    cmd += ["--warmup"] * args.warmup + ["--compile"] * args.compile
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{mode} {dtype} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - t0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--tokens", type=int, default=7600)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement; medians are shown")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="gptloss runs")
    parser.add_argument("--recipe-dtypes", default="float32", help="recipe runs; the first is the baseline")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--child", choices=["recipe", "gptloss", "tokens"])
    parser.add_argument("--tokens-run", action="store_true", help="also time `gptloss tokens` (fp32, top-5)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--llama-perplexity", help="llama.cpp's llama-perplexity binary, timed on the GGUF file")
    parser.add_argument("--gguf", help="the GGUF file for --llama-perplexity (default: the bundled model's)")
    parser.add_argument("--text")
    parser.add_argument("--warmup", action="store_true", help="score the text's first windows once, untimed")
    parser.add_argument("--compile", action="store_true", help="gptloss runs with --compile (the body compiled)")
    parser.add_argument("--llama-backend", action="store_true", help="also time gptloss --backend llama.cpp")
    args = parser.parse_args()
    if args.child:
        child = {"recipe": child_recipe, "gptloss": child_gptloss, "tokens": child_tokens}[args.child]
        print(json.dumps(child(args)))
        return

    from gptloss_cli.models.loader import load_model
    from gptloss_cli.models.spec import Device

    if args.random_weights:
        args.model = random_weights(args.model)
    lm = load_model(args.model, device=Device.cpu)
    params = sum(p.numel() for p in lm.model.parameters())
    text_path = Path("/tmp") / f"gptloss-bench-{Path(args.model).name}-{args.tokens}.txt"
    text_path.write_text(build_text(lm.tokenizer, args.tokens), encoding="utf-8")
    args.text = str(text_path)
    del lm
    if args.llama_perplexity and not args.gguf:
        from gptloss_cli.models.loader import bundled_gguf
        from gptloss_cli.models.spec import BUNDLED

        args.gguf = str(bundled_gguf(BUNDLED[args.model])[0])
    used = {"float32", *args.dtypes.split(",")}  # bf16 on a CPU without bf16 units takes minutes: only if asked
    peaks = {d: matmul_peak(d, args.device) for d in ("float32", "bfloat16", "float16") if d in used}
    roofline = peaks["float32"] * 1e9 / (2 * params)
    print(f"model {args.model}: {params / 1e6:.0f}M parameters; text {args.tokens}+ tokens; windows {args.max_length}")
    print(header(describe()))
    print(f"device {args.device}; batch size {args.batch_size}", end="")
    print(f"; warm-up {args.warmup}; compile {args.compile}")
    print("matmul peak: " + ", ".join(f"{d} {g:.0f} GFLOP/s" for d, g in peaks.items()))
    print(f"fp32 roofline: {roofline:.0f} tok/s")
    runs = [("recipe", d) for d in args.recipe_dtypes.split(",")] + [("gptloss", d) for d in args.dtypes.split(",")]
    runs += [("gptloss", "llama.cpp")] if args.llama_backend else []
    runs += [("tokens", "float32")] if args.tokens_run else []
    runs += [("llama.cpp", "gguf")] if args.llama_perplexity else []
    results = {}
    for mode, dtype in runs:
        try:
            samples = [run_child(args, mode, dtype) for _ in range(args.repeats)]
        except RuntimeError as error:  # the other runs still give their rows
            print(error, file=sys.stderr)
            continue
        results[(mode, dtype)] = samples
        tps = [s["tokens"] / s["seconds"] for s in samples]
        print(f"  {mode} {dtype}: " + ", ".join(f"{t:.0f}" for t in tps) + " tok/s", file=sys.stderr, flush=True)
    if runs[0] not in results:
        sys.exit(f"the baseline ({' '.join(runs[0])}) did not run")
    print_table(results, runs[0], roofline, args.device == "cuda")


def print_table(results: dict, first: tuple, roofline: float, cuda: bool) -> None:
    """One row per run: medians over its samples; ratios to the first run and to llama.cpp when it ran."""

    def med(samples: list, key) -> float:
        return statistics.median(key(s) for s in samples)

    def scored(s: dict) -> float:
        return s["tokens"] / s["seconds"]

    def forwarded(s: dict) -> float:  # gptloss: the tokens it scores (one window start each is not scored)
        return s.get("forwarded", s["tokens"]) / s["seconds"]

    base, base_proc = med(results[first], scored), med(results[first], lambda s: s["process_seconds"])
    llama = results.get(("llama.cpp", "gguf"))
    header = f"{'run':<18}{'tokens':>7}{'tok/s':>8}{'fwd tok/s':>10}{'x recipe':>9}{'roofline':>9}{'RSS MB':>8}"
    header += f"{'load s':>7}{'process s':>10}{'x recipe':>9}{'mean NLL':>10}"
    header += f"{'x llama':>8}{'x fwd':>7}" if llama else ""
    print(header + (f"{'GPU MB':>8}" if cuda else ""))
    for (mode, dtype), samples in results.items():
        tps, fwd = med(samples, scored), med(samples, forwarded)
        proc = med(samples, lambda s: s["process_seconds"])
        row = f"{mode + ' ' + dtype:<18}{samples[0]['tokens']:>7}{tps:>8.0f}{fwd:>10.0f}{tps / base:>9.2f}"
        row += f"{fwd / roofline:>9.2f}{max(s['rss_mb'] for s in samples):>8.0f}"
        row += f"{med(samples, lambda s: s['load_seconds']):>7.1f}{proc:>10.1f}{base_proc / proc:>9.2f}"
        row += f"{samples[0]['nll_sum'] / samples[0]['tokens']:>10.5f}"
        if llama:
            row += f"{tps / med(llama, scored):>8.2f}{fwd / med(llama, forwarded):>7.2f}"
        print(row + (f"{max(s['gpu_mb'] for s in samples):>8.0f}" if cuda else ""))


if __name__ == "__main__":
    main()
