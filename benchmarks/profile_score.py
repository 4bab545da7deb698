"""Where the time of one scoring batch goes: body matmuls, attention, masks, norms, activations, the LM head.

    .venv/bin/python benchmarks/profile_score.py [--model gemma-3-270m] [--dtype float32] [--batch-size 2]
        [--max-length 1024] [--repeats 3]

Runs the engine's own forward (core.heads.ModelHead) and LM head (the blocked NLL pass, or the moments pass with
--moments) on --batch-size windows of --max-length tokens of sample_texts/prose.txt, under torch.profiler, with
each part of the model labelled by a forward hook: linear layers, the attention function, mask construction,
norms, activations, rotary embeddings, embeddings. "other" is what the body spends outside them: residual adds,
RoPE application, reshapes and copies, and Python between kernels. Prints each part's share of the batch's wall
time (median of --repeats profiled runs after one warm-up) and the GFLOP/s the body's linear layers and the
LM head's matmuls reach against the matmul peak measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

ROOT = Path(__file__).resolve().parent.parent
LABELS = ("linear", "attention", "masks", "norms", "activations", "rotary", "embedding")


def category(module: torch.nn.Module) -> str | None:
    name = type(module).__name__
    if isinstance(module, torch.nn.Linear):
        return "linear"
    if isinstance(module, torch.nn.Embedding):
        return "embedding"
    if "Norm" in name:
        return "norms"
    if "Rotary" in name:
        return "rotary"
    if type(module).__module__.endswith("activations") or isinstance(module, torch.nn.SiLU | torch.nn.GELU):
        return "activations"
    return None


def label_modules(model: torch.nn.Module) -> None:
    """A profiler range around each labelled module's forward."""
    for module in model.modules():
        label = category(module)
        if label is None:
            continue
        ranges: list = []

        def pre(_m, _a, label=label, ranges=ranges):
            ranges.append(record_function(label).__enter__())

        def post(_m, _a, _o, ranges=ranges):
            ranges.pop().__exit__(None, None, None)

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


def label_functions(model: torch.nn.Module) -> None:
    """Profiler ranges around the attention function and the mask builders the model's module calls."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def wrapped(fn, label):
        def call(*args, **kwargs):
            with record_function(label):
                return fn(*args, **kwargs)

        return call

    for key in list(ALL_ATTENTION_FUNCTIONS.keys()):
        ALL_ATTENTION_FUNCTIONS[key] = wrapped(ALL_ATTENTION_FUNCTIONS[key], "attention")
    modeling = sys.modules[type(model).__module__]
    for name in dir(modeling):
        if name.startswith("create_") and "mask" in name:
            setattr(modeling, name, wrapped(getattr(modeling, name), "masks"))
        if name == "eager_attention_forward":
            setattr(modeling, name, wrapped(getattr(modeling, name), "attention"))


def one_batch(lm, args):
    from gptloss_cli.core.batches import BatchInputs

    text = (ROOT / "sample_texts" / "prose.txt").read_text(encoding="utf-8")
    once = torch.as_tensor(lm.tokenizer.encode(text)[0])  # (n,)
    need = args.batch_size * args.max_length
    ids = once.repeat(need // len(once) + 1)[:need].view(args.batch_size, args.max_length)
    scored = args.max_length - 1
    rows = torch.arange(args.batch_size).repeat_interleave(scored)
    cols = torch.arange(1, args.max_length).repeat(args.batch_size)
    return BatchInputs(ids, torch.ones_like(ids), rows, cols, ids[rows, cols], [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--moments", action="store_true", help="the moments pass (score --membership)")
    args = parser.parse_args()

    from bench_score import matmul_peak  # this script's folder is on sys.path

    from gptloss_cli.core.heads import ModelHead
    from gptloss_cli.core.loss import head_nll
    from gptloss_cli.core.moments import head_moments
    from gptloss_cli.models.loader import load_model
    from gptloss_cli.models.spec import Dtype

    lm = load_model(args.model, dtype=Dtype(args.dtype))
    batch = one_batch(lm, args)
    head = ModelHead(lm.model)
    label_modules(lm.model)
    label_functions(lm.model)

    def step():
        with record_function("body"):
            h = head(batch)
        with record_function("head"):
            if args.moments:
                head_moments(h, batch.targets)
            else:
                head_nll(h.inputs, batch.targets, h.linear)

    shares: dict[str, list[float]] = defaultdict(list)
    with torch.inference_mode():
        step()
        for _ in range(args.repeats):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                t0 = time.perf_counter()
                step()
                wall = time.perf_counter() - t0
            totals = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages() if e.key in (*LABELS, "body", "head")}
            for label in (*LABELS, "body", "head"):
                shares[label].append(totals.get(label, 0.0))
            shares["wall"].append(wall)
    med = {k: statistics.median(v) for k, v in shares.items()}
    med["other"] = med["body"] - sum(med[k] for k in LABELS)
    tokens = batch.targets.shape[0]
    split = head.split
    head_params = split[1].weight.numel() if split else 0
    body = split[0] if split else lm.model
    linear_params = sum(m.weight.numel() for m in body.modules() if isinstance(m, torch.nn.Linear))
    peak = matmul_peak(args.dtype, "cpu")
    print(
        f"{args.model} {args.dtype}: {args.batch_size} x {args.max_length} tokens, {tokens} scored; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul peak {peak:.0f} GFLOP/s"
    )
    print(f"batch wall {med['wall']:.3f} s = {tokens / med['wall']:.0f} tok/s (profiled)")
    print(f"{'part':<14}{'seconds':>9}{'share':>8}  note")
    for label in (*LABELS, "other", "head"):
        note = ""
        if label == "linear":
            rate = 2 * linear_params * args.batch_size * args.max_length / med[label] / 1e9
            note = f"{rate:.0f} GFLOP/s = {rate / peak:.2f} of peak ({linear_params / 1e6:.0f}M weights)"
        if label == "head" and head_params:
            rate = 2 * head_params * tokens / med[label] / 1e9
            note = f"{rate:.0f} GFLOP/s incl. the log-sum-exp = {rate / peak:.2f} of peak"
        print(f"{label:<14}{med[label]:>9.3f}{med[label] / med['wall']:>8.1%}  {note}")
    print(
        f"{'between':<14}{med['wall'] - med['body'] - med['head']:>9.3f}"
        f"{(med['wall'] - med['body'] - med['head']) / med['wall']:>8.1%}  outside body and head"
    )


if __name__ == "__main__":
    main()
