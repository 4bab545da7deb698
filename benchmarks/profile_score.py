"""Where the time of one scoring batch goes: body matmuls, attention, masks, norms, activations, the LM head.

    .venv/bin/python benchmarks/profile_score.py [--model gemma-3-270m] [--dtype float32] [--batch-size 2]
        [--max-length 1024] [--repeats 3] [--device cuda --random-weights --model DIR] [--compile]

Runs the engine's own forward (core.heads.ModelHead) and LM head (the blocked NLL pass, or the moments pass with
--moments) on --batch-size windows of --max-length tokens of sample_texts/prose.txt, with each part of the model
timed by a forward hook (on CUDA the hooks synchronise, so each part's kernels are its own): linear layers, the
attention function, mask construction, norms, activations, rotary embeddings, embeddings. "other" is what the
body spends outside them: residual adds, RoPE application, reshapes and copies, and Python between kernels.
Prints each part's share of the batch's wall time (median of --repeats runs after one warm-up) and the GFLOP/s
the body's linear layers and the LM head reach against the matmul peak measured in the same run.
--compile runs the model as `--compile` does (the body through torch.compile, and on a GPU the LM head's compiled
step), timing body and head only; the first batch's time (the compiler's) is shown.
--random-weights: as in bench_score.py, for a directory with a config and tokenizer files.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
LABELS = ("linear", "attention", "masks", "norms", "activations", "rotary", "embedding")


class Parts:
    """Wall seconds by label, summed over every range entered (body and head hold the module labels; on CUDA
    each range synchronises the device at both ends)."""

    def __init__(self, device: str) -> None:
        self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        self.seconds: dict[str, float] = defaultdict(float)
        self.open: list[tuple[str, float]] = []

    def enter(self, label: str) -> None:
        self.sync()
        self.open.append((label, time.perf_counter()))

    def leave(self) -> None:
        self.sync()
        label, t0 = self.open.pop()
        self.seconds[label] += time.perf_counter() - t0

    def timed(self, label: str, fn, *args, **kwargs):
        self.enter(label)
        try:
            return fn(*args, **kwargs)
        finally:
            self.leave()


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


def label_modules(model: torch.nn.Module, parts: Parts) -> None:
    """A timed range around each labelled module's forward."""
    for module in model.modules():
        label = category(module)
        if label is not None:
            module.register_forward_pre_hook(lambda _m, _a, label=label: parts.enter(label))
            module.register_forward_hook(lambda _m, _a, _o: parts.leave())


def label_functions(model: torch.nn.Module, parts: Parts) -> None:
    """Timed ranges around the attention function and the mask builders the model's module calls."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def wrapped(fn, label):
        return lambda *args, **kwargs: parts.timed(label, fn, *args, **kwargs)

    for key in list(ALL_ATTENTION_FUNCTIONS.keys()):
        ALL_ATTENTION_FUNCTIONS[key] = wrapped(ALL_ATTENTION_FUNCTIONS[key], "attention")
    modeling = sys.modules[type(model).__module__]
    for name in dir(modeling):
        if name.startswith("create_") and "mask" in name:
            setattr(modeling, name, wrapped(getattr(modeling, name), "masks"))
        if name == "eager_attention_forward":
            setattr(modeling, name, wrapped(getattr(modeling, name), "attention"))


def one_batch(lm, args, device: torch.device):
    from gptloss_cli.core.batches import ModelBatch

    text = (ROOT / "sample_texts" / "prose.txt").read_text(encoding="utf-8")
    once = torch.as_tensor(lm.tokenizer.encode(text)[0])  # (n,)
    need = args.batch_size * args.max_length
    ids = once.repeat(need // len(once) + 1)[:need].view(args.batch_size, args.max_length)
    scored = args.max_length - 1
    rows = torch.arange(args.batch_size).repeat_interleave(scored)
    cols = torch.arange(1, args.max_length).repeat(args.batch_size)
    tensors = (ids, torch.ones_like(ids), rows, cols, ids[rows, cols])
    return ModelBatch(*(t.to(device) for t in tensors), [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--moments", action="store_true", help="the moments pass (score --membership)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--compile", action="store_true", help="as gptloss --compile")
    args = parser.parse_args()

    from bench_score import matmul_peak, random_weights  # this script's folder is on sys.path

    from gptloss_cli.core.fused import compiled_step
    from gptloss_cli.core.heads import ModelHead
    from gptloss_cli.core.loss import head_nll
    from gptloss_cli.core.moments import head_moments
    from gptloss_cli.models.loader import load_model
    from gptloss_cli.models.spec import Device, Dtype

    if args.random_weights:
        args.model = random_weights(args.model)
    lm = load_model(args.model, device=Device(args.device), dtype=Dtype(args.dtype), compile=args.compile)
    batch = one_batch(lm, args, lm.model.device)
    head, parts = ModelHead(lm.model), Parts(args.device)
    fused = compiled_step(lm.info.device, lm.info.compiled)
    if not args.compile:
        label_modules(lm.model, parts)
        label_functions(lm.model, parts)

    def step():
        h = parts.timed("body", head, batch)
        if args.moments:
            parts.timed("head", head_moments, h, batch.targets)
        else:
            parts.timed("head", head_nll, h.inputs, batch.targets, h.linear, step=fused)

    shares: dict[str, list[float]] = defaultdict(list)
    with torch.inference_mode():
        t0 = time.perf_counter()
        step()
        first = time.perf_counter() - t0
        for _ in range(args.repeats):
            parts.seconds.clear()
            t0 = time.perf_counter()
            step()
            shares["wall"].append(time.perf_counter() - t0)
            for label in (*LABELS, "body", "head"):
                shares[label].append(parts.seconds.get(label, 0.0))
    report(lm, head, batch, args, {k: statistics.median(v) for k, v in shares.items()}, first, matmul_peak)


def report(lm, head, batch, args, med: dict[str, float], first: float, matmul_peak) -> None:
    med["other"] = med["body"] - sum(med[k] for k in LABELS)
    tokens = batch.targets.shape[0]
    split = head.split
    head_params = split[1].weight.numel() if split else 0
    body = split[0] if split else lm.model
    linear_params = sum(m.weight.numel() for m in body.modules() if isinstance(m, torch.nn.Linear))
    peak = matmul_peak(args.dtype, args.device)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(
        f"{Path(args.model).name} {args.dtype}: {args.batch_size} x {args.max_length} tokens, {tokens} scored; "
        f"torch {torch.__version__}, {where}; matmul peak {peak:.0f} GFLOP/s; first batch {first:.2f} s"
    )
    print(f"batch wall {med['wall']:.3f} s = {tokens / med['wall']:.0f} tok/s (timed by part)")
    print(f"{'part':<14}{'seconds':>9}{'share':>8}  note")
    for label in (*LABELS, "other", "body", "head"):
        note = ""
        if label == "linear" and med[label]:
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
