"""Membership scores on a labelled set built from public texts, and what --membership costs over score.

    python benchmarks/membership_check.py [--model gemma-3-270m] [--documents 60] [--words 60] [--min-k 0.2]
        [--repeats 3]   # --repeats 0: the detection table only

The set: paragraphs of the licence texts Debian ships (/usr/share/common-licenses), each as it is (label 1)
and with its words shuffled (label 0, same words, same length). Prints the detection table (AUROC, TPR at
1% and 5% FPR) for mean NLL, PPL, Min-K%, Min-K%++ and the zlib ratio, then the scoring time of the same
documents with and without --membership, alternating, medians of --repeats (model loaded once).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from pathlib import Path

from gptloss_cli.core.plan import WindowSettings
from gptloss_cli.inputs.document import Document
from gptloss_cli.models.loader import load_model
from gptloss_cli.tasks.analyses import Analyses
from gptloss_cli.tasks.score import ScoreRun

LICENCES = ["GPL-3", "Apache-2.0", "MPL-2.0", "LGPL-2.1", "GPL-2", "GFDL-1.3", "Artistic"]


def paragraphs(count: int, words: int = 60) -> list[str]:
    """`count` runs of about `words` words, taken in order from the licence texts' paragraphs."""
    out: list[str] = []
    for name in LICENCES:
        text = Path("/usr/share/common-licenses", name).read_text(encoding="utf-8")
        for block in re.split(r"\n\s*\n", text):
            tokens = block.split()
            if len(tokens) >= words:
                out.append(" ".join(tokens[:words]))
            if len(out) == count:
                return out
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--documents", type=int, default=60, help="label-1 and label-0 documents in all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--words", type=int, default=60, help="words per document")
    parser.add_argument("--min-k", type=float, default=0.2, help="k of Min-K% and Min-K%++")
    args = parser.parse_args()
    rng = random.Random(0)
    docs = []
    for i, text in enumerate(paragraphs(args.documents // 2, args.words)):
        shuffled = text.split()
        rng.shuffle(shuffled)
        docs.append(Document(text, f"para-{i}", label=1))
        docs.append(Document(" ".join(shuffled), f"shuffled-{i}", label=0))
    lm = load_model(args.model)
    settings = WindowSettings()
    result = ScoreRun(lm, docs, settings, analyses=Analyses(min_k=args.min_k)).run()
    tokens = result.total.tokens_scored
    print(f"{args.model}: {len(docs)} documents ({len(docs) // 2} paragraphs, each also shuffled), {tokens} tokens")
    print(f"{'score':<16} {'label 1 when':<12} {'AUROC':>7} {'TPR@1%':>7} {'TPR@5%':>7}")
    for d in result.corpus.detection or []:
        rates = " ".join(f"{r['tpr']:7.3f}" if r["tpr"] is not None else "      —" for r in d.tpr_at_fpr)
        print(f"{d.score:<16} {d.positive_when:<12} {d.auroc:7.4f} {rates}")
    if args.repeats < 1:
        return
    times: dict[str, list[float]] = {"score": [], "score --membership": []}
    for _ in range(args.repeats):
        for name, analyses in (("score", Analyses()), ("score --membership", Analyses(min_k=args.min_k))):
            start = time.perf_counter()
            ScoreRun(lm, docs, settings, analyses=analyses).run()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["score"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<20} median {median:6.2f} s ({tokens / median:6.1f} tok/s), {median / base:.3f}x score")


if __name__ == "__main__":
    main()
