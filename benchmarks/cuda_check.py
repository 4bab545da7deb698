"""The engine on CUDA against the CPU: tiny seeded models (as the tests build them), every measure.

    python benchmarks/cuda_check.py        # on a machine with a CUDA device; prints a line per check, exits 1 on a miss

float32 on both devices must agree per token (NLL, entropy, rank, top-k, KL) to 1e-4; bfloat16 on CUDA is
reported beside it. Then scaling out: a model spread over the GPU and the CPU (--device-map auto with a
small GPU budget) against one device, and `score` under torchrun with 2 ranks on CUDA (NCCL job, sharing
the GPUs there are) against one process, to 1e-6 relative. No network: the models are built from configs
with a tokenizer trained on the spot.
"""

from __future__ import annotations

import json
import os
import subprocess
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
    return [r for chunk in run.chunks() for r in chunk.records if isinstance(r, TokenRecord)]


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
        pair = compare_documents(gpu, other, docs, settings=SETTINGS)
        other_cpu = load_model(str(build_model_dir(root, arch, seed=1)), Device.cpu)
        pair_cpu = compare_documents(cpu, other_cpu, docs, settings=SETTINGS)
        kl = abs(pair.distribution.mean_kld - pair_cpu.distribution.mean_kld)
        good &= check(f"{arch} compare", kl < TOL and pair.same_vocabulary, f"|Δ mean KL| cpu vs cuda {kl:.2e}")
        half = score_documents(load_model(path, Device.cuda, Dtype.bfloat16), docs, SETTINGS)
        ratio = half.total.perplexity / b.total.perplexity
        good &= check(f"{arch} bfloat16", abs(ratio - 1) < 0.05, f"PPL bf16/fp32 {ratio:.4f}")
    good &= spread_over_devices(root, docs)
    good &= two_ranks_on_cuda(root)
    return 0 if good else 1


def spread_over_devices(root: Path, docs: list[Document]) -> bool:
    """--device-map auto with a GPU budget of a third of the model: some layers on the GPU, the rest on the CPU."""
    path = str(build_model_dir(root, "llama", seed=2))
    whole = load_model(path, Device.cuda, Dtype.float32)
    size = sum(p.numel() * p.element_size() for p in whole.model.parameters())
    spread = load_model(path, Device.cuda, Dtype.float32, device_map=True, max_memory={0: size // 3, "cpu": 10**10})
    places = sorted(set((spread.info.device_map or {}).values()))
    a, b = score_documents(whole, docs, SETTINGS), score_documents(spread, docs, SETTINGS)
    rel = abs(a.total.nll_sum - b.total.nll_sum) / a.total.nll_sum
    return check("device-map auto", rel < 1e-5 and len(places) > 1, f"parts on {places}, rel Δ nll_sum {rel:.2e}")


def two_ranks_on_cuda(root: Path) -> bool:
    """score under torchrun, 2 ranks on CUDA, against one process: same documents, totals within 1e-6."""
    path = str(build_model_dir(root, "gemma3", seed=3))
    texts = []
    for i, text in enumerate(TEXTS * 2):
        texts.append(root / f"doc{i}.txt")
        texts[-1].write_text(text * (i + 1), encoding="utf-8")
    args = ["score", *map(str, texts), "-m", path, "--device", "cuda", "--dtype", "float32", "--max-length", "32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "gptloss_cli", *args, "-f", "json"], capture_output=True, text=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    out = root / "two.json"
    two = subprocess.run(
        [*launcher, "-m", "gptloss_cli", *args, "-o", str(out)], capture_output=True, text=True, env=env
    )
    if one.returncode or two.returncode:
        return check("torchrun 2 ranks cuda", False, (one.stderr + two.stderr)[-600:])
    a, b = json.loads(one.stdout)["total"], json.loads(out.read_text())["total"]
    rel = abs(a["nll_sum"] - b["nll_sum"]) / a["nll_sum"]
    same = a["tokens_scored"] == b["tokens_scored"]
    return check("torchrun 2 ranks cuda", rel < 1e-6 and same, f"{a['tokens_scored']} tokens, rel Δ nll_sum {rel:.2e}")


if __name__ == "__main__":
    sys.exit(main())
