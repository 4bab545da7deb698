"""The engine on CUDA against the CPU: tiny seeded models (as the tests build them), every measure.

    python benchmarks/cuda_check.py        # on a machine with a CUDA device; prints a line per check, exits 1 on a miss

float32 on both devices must agree per token (NLL, entropy, rank, top-k, KL) to 1e-4; bfloat16 on CUDA is
reported beside it. No network: the models are built from configs with a tokenizer trained on the spot.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import ARCHS, build_model_dir  # noqa: E402

from gptloss_cli.core.plan import WindowSettings  # noqa: E402
from gptloss_cli.inputs.document import Document  # noqa: E402
from gptloss_cli.models.loader import load_model  # noqa: E402
from gptloss_cli.models.spec import Device, Dtype  # noqa: E402
from gptloss_cli.tasks.compare import compare_documents  # noqa: E402
from gptloss_cli.tasks.score import score_documents  # noqa: E402
from gptloss_cli.tasks.tokens import TokenRecord, TokenRun  # noqa: E402

TEXTS = [
    "The cat sat on the mat, and then the dog sat on the log. " * 6,
    "Zählt die Wörter: naïve café, 7 Birnen.",
    "def plan(length, size, step):\n    return list(range(0, length, step))\n" * 3,
]
SETTINGS = WindowSettings(max_length=48, stride=24, batch_size=4)
TOL = 1e-4


def records(lm, docs: list[Document]) -> list[TokenRecord]:
    run = TokenRun(lm, docs, SETTINGS, top_k=3)
    return [r for _, chunk in run.chunks() for r in chunk if isinstance(r, TokenRecord)]


def check(name: str, ok: bool, detail: str) -> bool:
    print(f"{'ok  ' if ok else 'MISS'} {name}: {detail}", flush=True)
    return ok


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    docs = [Document(t, f"t{i}") for i, t in enumerate(TEXTS)]
    root = Path(tempfile.mkdtemp())
    good = True
    for arch in ARCHS:
        path = str(build_model_dir(root, arch))
        cpu, gpu = load_model(path, Device.cpu), load_model(path, Device.cuda, Dtype.float32)
        a, b = score_documents(cpu, docs, SETTINGS), score_documents(gpu, docs, SETTINGS)
        diff = max(np.abs(x.losses.nll - y.losses.nll).max() for x, y in zip(a.documents, b.documents, strict=True))
        good &= check(f"{arch} score", diff < TOL, f"max |Δ nll| cpu vs cuda {diff:.2e}")
        ra, rb = records(cpu, docs), records(gpu, docs)
        worst = max(max(abs(x.nll - y.nll), abs(x.entropy - y.entropy)) for x, y in zip(ra, rb, strict=True))
        ranks = sum(x.rank != y.rank for x, y in zip(ra, rb, strict=True))
        good &= check(f"{arch} tokens", worst < TOL and ranks <= 2, f"max |Δ| {worst:.2e}, {ranks} ranks differ")
        other = load_model(str(build_model_dir(root, arch, seed=1)), Device.cuda, Dtype.float32)
        pair = compare_documents(gpu, other, docs, SETTINGS)
        other_cpu = load_model(str(build_model_dir(root, arch, seed=1)), Device.cpu)
        pair_cpu = compare_documents(cpu, other_cpu, docs, SETTINGS)
        kl = abs(pair.distribution.mean_kld - pair_cpu.distribution.mean_kld)
        good &= check(f"{arch} compare", kl < TOL and pair.same_vocabulary, f"|Δ mean KL| cpu vs cuda {kl:.2e}")
        half = score_documents(load_model(path, Device.cuda, Dtype.bfloat16), docs, SETTINGS)
        ratio = half.total.perplexity / b.total.perplexity
        good &= check(f"{arch} bfloat16", abs(ratio - 1) < 0.05, f"PPL bf16/fp32 {ratio:.4f}")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
