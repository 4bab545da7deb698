"""Golden outputs: run the commands on sample_texts/ with the bundled models in two trees and diff them.

    python benchmarks/golden.py                  # the last commit (HEAD) against the working tree
    python benchmarks/golden.py --before v0.1    # any revision against the working tree
    python benchmarks/golden.py --keep out/      # keep both sets of outputs (out/before, out/after)

A change that should not change behaviour (a refactoring) must leave every output identical except the
version fields and the output folder's name; floats in JSON may differ by 1e-9 relative (a formula rewritten
into an equal one changes the last bits), and each such field is named. Both trees run on this machine with
this venv's packages (the older tree from a git worktree, run from its own folder), so floats are comparable
to the bit: the same kernels, the same batches. Tables are rendered 120 columns wide. Takes a few minutes on
two CPU cores (each command loads its models).
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "sample_texts").iterdir() if p.is_file())
B = "smollm2-135m-instruct"
TEXT = "The cat sat on the mat."
SAME_HTML = "{out}/same.html"
# name -> (arguments, file written with --html or -o, if any)
COMMANDS: dict[str, list[str]] = {
    "score.txt": ["score", *SAMPLES],
    "score.json": ["score", "-f", "json", *SAMPLES],
    "score-stride.json": ["score", "-f", "json", "--max-length", "256", "--stride", "128", *SAMPLES],
    "score-run.jsonl": ["score", "-o", "{out}/score-run.out.jsonl", *SAMPLES],
    "tokens.json": ["tokens", "-f", "json", "--html", "{out}/tokens.html", *SAMPLES],
    "tokens.txt": ["tokens", SAMPLES[0]],
    "tokens-words.csv": ["tokens", "-f", "csv", "--unit", "word", *SAMPLES],
    "heatmap.txt": ["tokens", "-f", "heatmap", SAMPLES[0]],
    "compare-cross.json": ["compare", "gemma-3-270m", B, "-f", "json", "--html", "{out}/compare-cross.html", *SAMPLES],
    "compare-cross.txt": ["compare", "gemma-3-270m", B, *SAMPLES],
    "compare-same.json": ["compare", B, B, "--dtype-b", "bfloat16", "-f", "json", "--html", SAME_HTML, *SAMPLES],
    "compare-same.txt": ["compare", B, B, "--dtype-b", "bfloat16", "--bootstrap", "200", *SAMPLES],
    "protocols.json": ["score", "--protocol", "all", "-f", "json", "--max-length", "64", *SAMPLES],
    "score-hf-stride.jsonl": [
        "score",
        "--protocol",
        "hf-stride",
        "--max-length",
        "64",
        "--stride",
        "32",
        "-o",
        "{out}/hf-stride.out.jsonl",
        *SAMPLES,
    ],
    "explain-logits.json": ["explain", "--logits", "1,2,3", "--target", "2", "-f", "json"],
    "explain-logits.txt": ["explain", "--logits", "1,2,3", "--target", "0.5,0.5,0"],
    "explain-text.json": ["explain", "--text", TEXT, "-f", "json"],
    "explain-text.txt": ["explain", "--text", TEXT],
}
VERSIONS = re.compile(r'"versions": \{[^}]*\}', re.S)


def run_all(tree: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}
    for name, args in COMMANDS.items():
        argv = [a.replace("{out}", str(out)) for a in args]
        done = subprocess.run(
            [sys.executable, "-m", "gptloss_cli", *argv], cwd=tree, env=env, capture_output=True, text=True
        )
        (out / name).write_text(done.stdout, encoding="utf-8")
        (out / f"{name}.stderr").write_text(f"exit {done.returncode}\n{done.stderr}", encoding="utf-8")
        print(f"  {name}: exit {done.returncode}", file=sys.stderr)


FLOAT_RTOL = 1e-9


def normalised(path: Path) -> list[str]:
    text = VERSIONS.sub('"versions": {}', path.read_text(encoding="utf-8")).replace(str(path.parent), "{out}")
    return text.splitlines(keepends=True)


def _parsed(lines: list[str]) -> list[object] | None:
    """The file as JSON (one document, or one per line), else None."""
    try:
        return [json.loads("".join(lines))]
    except ValueError:
        try:
            return [json.loads(line) for line in lines if line.strip()]
        except ValueError:
            return None


def _close(a: object, b: object, where: str, changed: list[str]) -> bool:
    """Whether two JSON values are equal, floats to FLOAT_RTOL (the fields that differ at all go to `changed`)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], f"{where}.{k}", changed) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        pairs = enumerate(zip(a, b, strict=True)) if len(a) == len(b) else None
        return pairs is not None and all(_close(x, y, f"{where}[{i}]", changed) for i, (x, y) in pairs)
    if isinstance(a, float) and isinstance(b, float) and a != b:
        changed.append(where)
        return math.isclose(a, b, rel_tol=FLOAT_RTOL)
    return a == b


def compare(before: Path, after: Path) -> int:
    names = sorted({p.name for p in before.iterdir()} | {p.name for p in after.iterdir()})
    differ = 0
    for name in names:
        a, b = before / name, after / name
        if not a.exists() or not b.exists():
            print(f"{name}: only in {'after' if b.exists() else 'before'}")
            differ += 1
            continue
        old, new = normalised(a), normalised(b)
        if old == new:
            continue
        first, second, changed = _parsed(old), _parsed(new), []
        if first is not None and second is not None and _close(first, second, "", changed):
            print(f"{name}: identical to {FLOAT_RTOL:g} relative; last bits differ in {', '.join(changed[:8])}")
            continue
        lines = list(difflib.unified_diff(old, new, f"before/{name}", f"after/{name}", n=1))
        if lines:
            differ += 1
            sys.stdout.writelines(lines[:40])
    print(f"{len(names) - differ} identical, {differ} different", file=sys.stderr)
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="HEAD", help="revision to compare against (default HEAD)")
    parser.add_argument("--keep", type=Path, help="keep the outputs here (before/ is reused if present)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="gptloss-golden-"))
    before, after = work / "before", work / "after"
    if not before.is_dir():
        tree = Path(tempfile.mkdtemp(prefix="gptloss-before-"))
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.before], cwd=ROOT, check=True)
        try:
            print(f"before: {args.before}", file=sys.stderr)
            run_all(tree, before)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    shutil.rmtree(after, ignore_errors=True)
    print("after: the working tree", file=sys.stderr)
    run_all(ROOT, after)
    code = compare(before, after)
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
