"""Acceptance figures of `gptloss annotate`: its speed against `score` and a row-at-a-time loop, memory that does
not grow with the rows, and a run killed with SIGKILL and resumed against an uninterrupted one.

    .venv/bin/python benchmarks/bench_annotate.py corpus OUTDIR [--shards 4]
    .venv/bin/python benchmarks/bench_annotate.py speed CORPUS_DIR [--model smollm2-135m-instruct] [--limit-rows N]
        [--repeats 1] [--threads T] [--loop-max-length L]
    .venv/bin/python benchmarks/bench_annotate.py memory [--rows 2000] [--model DIR] [--format parquet]
    .venv/bin/python benchmarks/bench_annotate.py kill CORPUS_DIR [--model smollm2-135m-instruct] [--chunk-rows 4]
        [--limit-rows N]

corpus: a corpus nobody in this project wrote: every text under /usr/share/common-licenses and every
/usr/share/doc/*/copyright (read as UTF-8, undecodable bytes replaced; empty or blank files, and paths that are
links to a file already taken, left out), one row per file (id, source, text), as --shards Parquet files.

speed: in one run, on the same rows and model, each in its own process with the same number of threads
(OMP_NUM_THREADS=--threads): `gptloss annotate CORPUS -o TMP --report R`; `gptloss score --dataset rows.jsonl
--skip-bad-records -f json` on the same texts (same default settings; the token totals are compared and a
difference is said); and the loop of data-juicer's llm_perplexity_filter: for each row, tokenizer(text,
truncation=True, max_length=the model's context, truncated from the left) and model(**inputs, labels=input_ids),
one row at a time, under torch.inference_mode, float32 on the CPU, with the weights gptloss loads
(gptloss_cli.models.loader.load_model(...).model; the tokenizer: AutoTokenizer on the folder gptloss loads
from). The two CLI runs are the CLI itself (gptloss_cli.cli.main) in a child that notes when the model has
loaded, so every tok/s counts the time after the load to the end of the process (reading and writing the
rows included; score reads its dataset before the load); annotate's own figure (its report's
tokens_per_second: the annotation's wall time) and each process's whole wall time are shown beside it.
--limit-rows N takes N rows spread evenly over the corpus (every (rows/N)-th), so a short run sees its mix of
long licences and short copyright files. Medians of --repeats. The loop forwards a whole row of up to the
model's context at once: SmolLM2's 8,192 tokens need ~4 GB for the logits and the loss; Gemma-3-270M's 32,768
would need ~70 GB, so give it --loop-max-length (say 2048) and read the loop's tok/s as that of shorter rows.

memory: peak RSS (the child's own, from wait4) of `gptloss annotate` on a synthetic corpus of --rows rows and
on one of 10x the rows (seeded random words, 10-120 a row, in --shards files), beside the model alone (RSS
after load_model in a process of its own) and annotate on a single row. The model is, by default, a tiny
seeded Llama built offline as the tests build theirs (tests/conftest.py build_model_dir); --model takes any
other. Target: 10x the rows within +10% of the peak.

kill: annotate CORPUS into OUT1 uninterrupted; then again into OUT2, killed with SIGKILL once --kill-after
chunk files are finished under OUT2/.gptloss-annotate/, then `--resume` into OUT2. Both runs use the same
--chunk-rows (a resumed run must: the chunk size is part of what it checks, and a chunk is batched alone, so
equal chunks give equal numbers to the bit). Compares OUT1 and OUT2 with pyarrow: the same files, rows and
columns, every input column equal, the score columns' nulls equal and their values within --tolerance
(relative); prints PASS or FAIL.

Every subcommand first prints the machine (benchmarks/machine.py: CPU model, whether /proc/cpuinfo lists
avx512_bf16 and amx_bf16, cores, threads, library versions, the checkout's commit); and ends with its figures
as one JSON line.
The script imports gptloss_cli from this checkout (its parent folder comes first on sys.path, and the children
get it on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import ROOT, describe, header

sys.path.insert(0, str(ROOT))  # this checkout's gptloss_cli, here and (through PYTHONPATH) in the children

SOURCES = (Path("/usr/share/common-licenses"), Path("/usr/share/doc"))
STATE = ".gptloss-annotate"  # gptloss_cli.tasks.annotate.STATE: where annotate keeps its chunks
SCORE_COLUMNS = ("gptloss_tokens", "gptloss_nll_sum", "gptloss_mean_nll", "gptloss_perplexity", "gptloss_bits_per_byte")


# Children: the CLI with a load mark, the row loop, a model alone --------------------------------------------


def child_cli(timing: str, argv: list[str]) -> None:
    """`gptloss ARGV` as the console script runs it, noting (perf_counter) when the model has loaded and when
    the process leaves (main() leaves through os._exit, which is wrapped to write the marks first)."""
    marks = {"started": time.perf_counter()}
    from gptloss_cli.cli import console
    from gptloss_cli.cli.app import main

    load_model = console.load_model

    def timed_load(*args: Any, **kwargs: Any) -> Any:
        loaded = load_model(*args, **kwargs)
        marks["loaded"] = time.perf_counter()
        return loaded

    real_exit = os._exit

    def leave(code: int) -> None:
        marks["ended"] = time.perf_counter()
        Path(timing).write_text(json.dumps(marks))
        real_exit(code)

    console.load_model = timed_load
    os._exit = leave  # type: ignore[assignment]
    sys.argv = ["gptloss", *argv]
    main()


def child_loop(rows_path: str, spec: str, max_length: int, out: str) -> None:
    """data-juicer's llm_perplexity_filter loop on every row of rows_path (JSON Lines with a text key)."""
    import torch
    from transformers import AutoTokenizer

    from gptloss_cli.models.loader import load_model, locate
    from gptloss_cli.models.spec import Device, Dtype

    t0 = time.perf_counter()
    model = load_model(spec, device=Device.cpu, dtype=Dtype.float32).model
    tokenizer = AutoTokenizer.from_pretrained(locate(spec, None)[0])
    load = time.perf_counter() - t0
    context = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
    limit = max_length or min(context, tokenizer.model_max_length)
    tokenizer.truncation_side = "left"  # as the filter sets it
    with open(rows_path, encoding="utf-8") as handle:
        texts = [json.loads(line).get("text") for line in handle if line.strip()]
    tokens = skipped = 0
    nll_sum = 0.0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for text in texts:
            if not text:
                skipped += 1
                continue
            inputs = tokenizer(text, truncation=True, max_length=limit, return_tensors="pt")
            n = inputs["input_ids"].size(1)
            if n < 2:
                skipped += 1
                continue
            loss = model(**inputs, labels=inputs["input_ids"]).loss
            nll_sum += float(loss) * (n - 1)
            tokens += n - 1
    seconds = time.perf_counter() - t0
    lengths = [len(tokenizer(t, truncation=False)["input_ids"]) for t in texts if t]  # untimed: what was cut off
    full_tokens = sum(n - 1 for n in lengths if n >= 2)
    truncated = sum(1 for n in lengths if n > limit)
    result = {
        "rows": len(texts) - skipped,
        "skipped": skipped,
        "tokens": tokens,
        "tokens_untruncated": full_tokens,
        "truncated_rows": truncated,
        "max_length": limit,
        "seconds": seconds,
        "load_seconds": load,
        "nll_sum": nll_sum,
        "threads": torch.get_num_threads(),
    }
    Path(out).write_text(json.dumps(result))


def child_load(spec: str, out: str) -> None:
    """The model alone: load time, RSS once loaded, and the peak on the way."""
    import resource

    t0 = time.perf_counter()
    from gptloss_cli.models.loader import load_model
    from gptloss_cli.models.spec import Device, Dtype

    imported = time.perf_counter() - t0
    t0 = time.perf_counter()
    lm = load_model(spec, device=Device.cpu, dtype=Dtype.float32)
    load = time.perf_counter() - t0
    params = sum(p.numel() for p in lm.model.parameters())
    result = {
        "import_seconds": imported,
        "load_seconds": load,
        "parameters": params,
        "weights_mb": sum(p.numel() * p.element_size() for p in lm.model.parameters()) / 2**20,
        "rss_mb": current_rss_mb(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(out).write_text(json.dumps(result))


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


CHILDREN = {"_cli": lambda a: child_cli(a[0], a[1:]), "_loop": lambda a: child_loop(a[0], a[1], int(a[2]), a[3])}
CHILDREN["_load"] = lambda a: child_load(a[0], a[1])


# Running children -----------------------------------------------------------------------------------------------


class Runner:
    """Children of this script with the same environment: this checkout on PYTHONPATH, OMP_NUM_THREADS fixed;
    each one's wall time and peak RSS (its own, from wait4), its output in files under `work`."""

    def __init__(self, work: Path, threads: int) -> None:
        self.work, self.count = work, 0
        path = os.environ.get("PYTHONPATH")
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
        self.env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")

    def start(self, mode: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        self.count += 1
        log = self.work / f"child-{self.count:03d}-{mode.strip('_')}"
        cmd = [sys.executable, __file__, mode, *args]
        with open(f"{log}.out", "wb") as out, open(f"{log}.err", "wb") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=self.env, cwd=self.work)
        return proc, log

    def finish(self, proc: subprocess.Popen[bytes], log: Path, began: float, check: bool = True) -> dict[str, Any]:
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        if check and proc.returncode != 0:
            tail = Path(f"{log}.err").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(map(str, proc.args))} failed ({proc.returncode}):\n{tail}")
        return {"wall_seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "returncode": proc.returncode}

    def run(self, mode: str, *args: str, check: bool = True) -> dict[str, Any]:
        began = time.perf_counter()
        proc, log = self.start(mode, *args)
        return self.finish(proc, log, began, check)

    def gptloss(self, *args: str, check: bool = True) -> dict[str, Any]:
        """The CLI; `after_load_seconds`: from the model loaded to the process's end."""
        timing = self.work / f"timing-{self.count + 1:03d}.json"
        done = self.run("_cli", str(timing), *args, check=check)
        if timing.exists():
            marks = json.loads(timing.read_text())
            if "loaded" in marks:
                done["after_load_seconds"] = marks["ended"] - marks["loaded"]
                done["to_load_seconds"] = marks["loaded"] - marks["started"]
        return done


# corpus ---------------------------------------------------------------------------------------------------------


def licence_paths() -> list[Path]:
    licences = sorted(p for p in SOURCES[0].rglob("*") if p.is_file())
    copyrights = sorted(p for p in SOURCES[1].glob("*/copyright") if p.is_file())
    return licences + copyrights


def cmd_corpus(args: argparse.Namespace) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    info = describe()
    print(header(info))
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    duplicates = empty = 0
    for path in licence_paths():
        real = os.path.realpath(path)
        if real in seen:  # a link to a text already taken
            duplicates += 1
            continue
        seen.add(real)
        text = path.read_bytes().decode("utf-8", errors="replace")
        if not text.strip():
            empty += 1
            continue
        rows.append({"id": len(rows), "source": str(path), "text": text})
    if len(rows) < args.shards:
        sys.exit(f"only {len(rows)} texts found; fewer than --shards {args.shards}")
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.int64()), ("source", pa.string()), ("text", pa.string())])
    shards = []
    for index in range(args.shards):
        part = rows[index * len(rows) // args.shards : (index + 1) * len(rows) // args.shards]
        name = f"part-{index:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(part, schema=schema), out / name)
        shards.append({"file": name, "rows": len(part), "characters": sum(len(r["text"]) for r in part)})
    characters = sum(len(r["text"]) for r in rows)
    size = sum(len(r["text"].encode("utf-8")) for r in rows)
    print(f"{len(rows):,} rows, {characters:,} characters ({size:,} bytes of UTF-8) in {args.shards} shards: {out}")
    print(f"left out: {duplicates} links to a text already taken, {empty} empty or blank files")
    for shard in shards:
        print(f"  {shard['file']}: {shard['rows']:,} rows, {shard['characters']:,} characters")
    summary = {"rows": len(rows), "characters": characters, "bytes": size, "duplicates": duplicates, "empty": empty}
    print(json.dumps({"corpus": {**summary, "shards": shards, "outdir": str(out)}, "machine": info}))


# speed ----------------------------------------------------------------------------------------------------------


def take_rows(source: str, limit: int | None, work: Path) -> tuple[str, Path, int, int]:
    """The corpus to measure (the given one, or --limit-rows rows spread evenly over it, written in its files'
    formats under work/corpus) and its texts in the same order as JSON Lines for score and the loop; rows and
    characters."""
    import numpy as np

    from gptloss_cli.inputs.corpus import ShardWriter, corpus_files, read_chunks, selected

    files = corpus_files([source])
    total = sum(len(chunk) for item in files for chunk in read_chunks(item, 1_000)) if limit is not None else 0
    wanted = None if limit is None or limit >= total else {i * total // limit for i in range(limit)}
    target = work / "corpus" if wanted is not None else Path(source)
    rows_path = work / "rows.jsonl"
    rows = characters = 0
    first = 0
    with rows_path.open("w", encoding="utf-8") as texts:
        for item in files:
            writer = None
            for chunk in read_chunks(item, 1_000):
                keep = np.ones(len(chunk), bool)
                if wanted is not None:
                    keep = np.array([first + i in wanted for i in range(len(chunk))], bool)
                first += len(chunk)
                if not keep.any():
                    continue
                chunk = selected(chunk, keep)
                if wanted is not None:
                    if writer is None:
                        (target / item.relative).parent.mkdir(parents=True, exist_ok=True)
                        writer = ShardWriter(target / item.relative, item.format, item.gzipped)
                    writer.write(chunk)
                for record in chunk.records(["text"]):
                    text = record.get("text")
                    texts.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                    rows += 1
                    characters += len(text) if isinstance(text, str) else 0
            if writer is not None:
                writer.close()
    return str(target), rows_path, rows, characters


def cmd_speed(args: argparse.Namespace) -> None:
    info = describe(args.threads)
    print(header(info))
    work = Path(tempfile.mkdtemp(prefix="gptloss-bench-annotate-", dir=args.workdir))
    runner = Runner(work, info["threads"])
    corpus, rows_path, rows, characters = take_rows(args.corpus, args.limit_rows, work)
    print(f"model {args.model}; {rows:,} rows, {characters:,} characters from {args.corpus}", end="")
    print(f" ({'all' if args.limit_rows is None else f'--limit-rows {args.limit_rows}'}); work in {work}")
    loaded = runner.run("_load", args.model, str(work / "load.json"))  # also warms the page cache
    model = json.loads((work / "load.json").read_text())
    print(f"model alone: {model['parameters'] / 1e6:.0f}M parameters, load {model['load_seconds']:.1f} s, ", end="")
    print(f"RSS {model['rss_mb']:,.0f} MB (process {loaded['wall_seconds']:.1f} s)", flush=True)
    samples: dict[str, list[dict[str, Any]]] = {"annotate": [], "score": [], "row loop": []}
    for repeat in range(args.repeats):
        order = list(samples)[repeat % 3 :] + list(samples)[: repeat % 3]  # each repeat starts with the next
        for name in order:
            samples[name].append(speed_run(name, repeat, runner, work, corpus, rows_path, args))
            print(f"  {repeat + 1}/{args.repeats} {name}: {rate(samples[name][-1]):,.0f} tok/s", file=sys.stderr)
    figures = speed_table(samples)
    a, s = samples["annotate"][0], samples["score"][0]
    same = a["tokens"] == s["tokens"] and a["rows"] - a["errors"] == s["rows"]
    print(
        f"same rows and tokens in annotate and score: {'yes' if same else 'NO'} "
        f"(annotate {a['rows']:,} rows, {a['errors']} with an error, {a['tokens']:,} tokens; "
        f"score {s['rows']:,} documents, {s['tokens']:,} tokens; NLL sums differ by "
        f"{abs(a['nll_sum'] - s['nll_sum']) / max(abs(s['nll_sum']), 1e-300):.1e} relative)"
    )
    loop = samples["row loop"][0]
    print(
        f"row loop: {loop['tokens']:,} tokens scored ({loop['tokens_untruncated']:,} before truncation to "
        f"{loop['max_length']:,}; {loop['truncated_rows']} rows truncated), {loop['threads']} threads"
    )
    if loop["truncated_rows"]:
        print("  (the loop scores only the last max_length tokens of a longer row: its tok/s is over other inputs)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"speed": figures, "same_tokens": same, "model": model, "machine": info, "samples": samples}))


def speed_run(
    name: str, repeat: int, runner: Runner, work: Path, corpus: str, rows_path: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """One measurement: annotate, score or the row loop, on the same rows, in a process of its own."""
    common = ["-m", args.model, "--device", "cpu"]
    if name == "annotate":
        out, report = work / f"annotated-{repeat}", work / f"annotate-{repeat}.json"
        done = runner.gptloss("annotate", corpus, "-o", str(out), "--report", str(report), *common)
        data = json.loads(report.read_text())
        done.update(rows=data["rows"], tokens=data["tokens"], errors=data["errors"])
        done.update(own_seconds=data["wall_seconds"], nll_sum=sum(f["nll_sum"] for f in data["files"]))
        shutil.rmtree(out)
        return done
    if name == "score":
        scored = work / f"score-{repeat}.json"
        done = runner.gptloss(
            "score", "--dataset", str(rows_path), "--skip-bad-records", "-f", "json", "-o", str(scored), *common
        )
        total = json.loads(scored.read_text())["total"]
        done.update(rows=total["documents"], tokens=total["tokens_scored"], nll_sum=total["nll_sum"])
        return done
    loop = work / f"loop-{repeat}.json"
    done = runner.run("_loop", str(rows_path), args.model, str(args.loop_max_length or 0), str(loop))
    return {**done, **json.loads(loop.read_text())}


def rate(sample: dict[str, Any]) -> float:
    """Tokens per second after the model's load (the CLI's mark; the loop's own timer)."""
    seconds = sample.get("after_load_seconds", sample.get("seconds"))
    return sample["tokens"] / seconds if seconds else float("nan")


def speed_table(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def med(name: str, key: Any) -> float:
        return statistics.median(key(s) for s in samples[name])

    header = f"{'run':<10}{'rows':>7}{'tokens':>10}{'tok/s':>9}{'own tok/s':>10}{'after load s':>13}"
    print(header + f"{'process s':>10}{'peak RSS MB':>12}{'mean NLL':>10}")
    figures: dict[str, Any] = {}
    for name, runs in samples.items():
        first = runs[0]
        tps = med(name, rate)
        own = med(name, lambda s: s["tokens"] / s["own_seconds"]) if "own_seconds" in first else None
        after = med(name, lambda s: s.get("after_load_seconds", s.get("seconds")))
        process = med(name, lambda s: s["wall_seconds"])
        rss = max(s["peak_rss_mb"] for s in runs)
        nll = first["nll_sum"] / first["tokens"] if first["tokens"] else float("nan")
        row = f"{name:<10}{first['rows']:>7,}{first['tokens']:>10,}{tps:>9,.0f}"
        row += f"{'' if own is None else f'{own:,.0f}':>10}{after:>13.1f}{process:>10.1f}{rss:>12,.0f}{nll:>10.4f}"
        print(row)
        figures[name] = {"tok_s": tps, "own_tok_s": own, "after_load_seconds": after, "process_seconds": process}
        figures[name].update(peak_rss_mb=rss, tokens=first["tokens"], rows=first["rows"], mean_nll=nll)
    a, s, loop = (figures[n]["tok_s"] for n in ("annotate", "score", "row loop"))
    own = figures["annotate"]["own_tok_s"]
    whole = (figures["score"]["process_seconds"] / figures["score"]["tokens"]) / (
        figures["annotate"]["process_seconds"] / figures["annotate"]["tokens"]
    )
    ratios = {
        "annotate/score": a / s,
        "annotate_own/score": own / s,
        "annotate/score, whole processes": whole,
        "annotate/row loop": a / loop,
        "annotate_own/row loop": own / loop,
    }
    print(f"annotate / score: {a / s:.2f} (target >= 0.95); with annotate's own tok/s {own / s:.2f}; ", end="")
    print(f"whole processes {whole:.2f}")
    print(f"annotate / row loop: {a / loop:.2f} (target >= 3); with annotate's own tok/s {own / loop:.2f}")
    print(f"(medians of {len(samples['annotate'])}; tok/s: tokens per second after the model's load)")
    figures["ratios"] = ratios
    return figures


# memory ---------------------------------------------------------------------------------------------------------


WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so no more time out up into only other new some "
    "could these two may first then do any like my now over such our man me even most made after also did many off "
    "before must well back through years much where your way down should because each just those people how too "
    "little state good very make world still own see men work long here get both between life being under never"
).split()


def synthetic_corpus(folder: Path, rows: int, shards: int, kind: str, seed: int = 0) -> int:
    """`rows` rows of seeded random words (10-120 each, and a number) with an id, in
    `shards` files of `kind`; returns the characters written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    characters = 0
    for index in range(shards):
        part = []
        for row in range(index * rows // shards, (index + 1) * rows // shards):
            words = [rng.choice(WORDS) for _ in range(rng.randint(10, 120))]
            text = " ".join(words).capitalize() + f", {rng.randint(0, 10**6)}."
            part.append({"id": row, "text": text})
            characters += len(text)
        if kind == "parquet":
            pq.write_table(pa.Table.from_pylist(part), folder / f"part-{index:05d}.parquet")
        else:
            with (folder / f"part-{index:05d}.jsonl").open("w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(r) + "\n" for r in part)
    return characters


def tiny_model(folder: Path) -> str:
    """A seeded tiny Llama with a byte-level BPE tokenizer, built offline as the tests build theirs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_model_dir  # noqa: I001 - the tests' own helper

    return str(build_model_dir(folder, "llama"))


def cmd_memory(args: argparse.Namespace) -> None:
    info = describe(args.threads)
    print(header(info))
    work = Path(tempfile.mkdtemp(prefix="gptloss-bench-annotate-", dir=args.workdir))
    runner = Runner(work, info["threads"])
    spec = args.model or tiny_model(work / "models")
    loaded = runner.run("_load", spec, str(work / "load.json"))
    model = json.loads((work / "load.json").read_text())
    name = args.model or "tiny seeded Llama (tests/conftest.py)"
    print(f"model {name}: {model['parameters']:,} parameters, ", end="")
    print(f"{model['weights_mb']:,.1f} MB of weights; RSS once loaded {model['rss_mb']:,.0f} MB ", end="")
    print(f"(peak {loaded['peak_rss_mb']:,.0f} MB); chunks of {args.chunk_rows} rows; work in {work}")
    runs: dict[str, dict[str, Any]] = {}
    for label, rows in (("1 row", 1), (f"{args.rows:,} rows", args.rows), (f"{10 * args.rows:,} rows", 10 * args.rows)):
        corpus = work / f"corpus-{rows}"
        characters = synthetic_corpus(corpus, rows, min(args.shards, rows), args.format)
        out, report = work / f"out-{rows}", work / f"report-{rows}.json"
        samples = []
        for _ in range(args.repeats):
            shutil.rmtree(out, ignore_errors=True)
            done = runner.gptloss(
                "annotate", str(corpus), "-o", str(out), "--report", str(report), "-m", spec, "--device", "cpu",
                "--chunk-rows", str(args.chunk_rows),
            )  # fmt: skip
            data = json.loads(report.read_text())
            done.update(rows=data["rows"], tokens=data["tokens"], own_seconds=data["wall_seconds"])
            samples.append(done)
        peak = statistics.median(s["peak_rss_mb"] for s in samples)
        first = samples[0]
        runs[label] = {"rows": first["rows"], "tokens": first["tokens"], "characters": characters, "peak_rss_mb": peak}
        runs[label]["own_tok_s"] = statistics.median(s["tokens"] / s["own_seconds"] for s in samples)
        runs[label]["process_seconds"] = statistics.median(s["wall_seconds"] for s in samples)
        shards = min(args.shards, rows)
        sizes = [(i + 1) * rows // shards - i * rows // shards for i in range(shards)]
        runs[label]["chunks"] = sum(-(-size // args.chunk_rows) for size in sizes)
        print(f"  {label}: peak RSS {peak:,.0f} MB", file=sys.stderr, flush=True)
        shutil.rmtree(corpus)
        shutil.rmtree(out, ignore_errors=True)
    print(f"{'annotate on':<14}{'rows':>9}{'chunks':>7}{'tokens':>12}{'characters':>13}{'peak RSS MB':>12}", end="")
    print(f"{'tok/s':>9}{'process s':>10}")
    print(f"{'model alone':<14}{'':>9}{'':>7}{'':>12}{'':>13}{model['rss_mb']:>12,.0f}")
    for label, run in runs.items():
        print(
            f"{label:<14}{run['rows']:>9,}{run['chunks']:>7,}{run['tokens']:>12,}{run['characters']:>13,}"
            f"{run['peak_rss_mb']:>12,.0f}{run['own_tok_s']:>9,.0f}{run['process_seconds']:>10.1f}"
        )
    small, large = (runs[k]["peak_rss_mb"] for k in list(runs)[1:])
    ratio = large / small
    verdict = "PASS" if ratio <= 1.1 else "FAIL"
    print(f"peak RSS at 10x the rows / at {args.rows:,} rows: {ratio:.3f} (target <= 1.10): {verdict}")
    print(f"above the model alone: {small - model['rss_mb']:,.0f} MB and {large - model['rss_mb']:,.0f} MB")
    if args.rows // args.shards < args.chunk_rows:
        print(
            f"  (note: {args.rows:,} rows in {args.shards} files make chunks of fewer than --chunk-rows "
            f"{args.chunk_rows}: the ratio then also measures larger chunks, not only more of them)"
        )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    figures = {"runs": runs, "ratio_10x": ratio, "pass": ratio <= 1.1, "model": model, "model_process": loaded}
    print(json.dumps({"memory": figures, "machine": info}))


# kill -----------------------------------------------------------------------------------------------------------


def chunk_marks(outdir: Path) -> list[Path]:
    """The finished chunks' marks under OUTDIR's state folder (NNNNNN.json inside a FILE.chunks folder)."""
    state = outdir / STATE
    return list(state.rglob("*.chunks/[0-9]*.json")) if state.is_dir() else []


def outputs(outdir: Path) -> list[str]:
    """The output files below OUTDIR, the state folder and temporary files left out."""
    found = []
    for path in outdir.rglob("*"):
        relative = path.relative_to(outdir)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            found.append(str(relative))
    return sorted(found)


def read_output(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        return pq.read_table(path)
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return pa.Table.from_pylist([json.loads(line) for line in handle if line.strip()])


def compare_outputs(first: Path, second: Path, tolerance: float) -> dict[str, Any]:
    """Files, rows, columns, the input columns and the score columns of two output folders, file by file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    files_a, files_b = outputs(first), outputs(second)
    result: dict[str, Any] = {"files": files_a, "same_files": files_a == files_b, "problems": [], "max_rel_diff": 0.0}
    rows = 0
    for name in sorted(set(files_a) & set(files_b)):
        a, b = read_output(first / name), read_output(second / name)
        rows += a.num_rows
        if a.column_names != b.column_names or a.num_rows != b.num_rows:
            result["problems"].append(f"{name}: columns or rows differ ({a.num_rows} and {b.num_rows} rows)")
            continue
        if not a.schema.equals(b.schema):
            result["problems"].append(f"{name}: the schemas differ")
        for column in a.column_names:
            x, y = a.column(column), b.column(column)
            if column in SCORE_COLUMNS and pa.types.is_floating(x.type):
                if not pc.is_null(x).equals(pc.is_null(y)):
                    result["problems"].append(f"{name}: {column}: nulls differ")
                    continue
                u = np.asarray(pc.fill_null(x, 0.0), dtype=np.float64)
                v = np.asarray(pc.fill_null(y, 0.0), dtype=np.float64)
                scale = np.maximum(np.abs(u), np.abs(v))
                diff = np.where(scale > 0, np.abs(u - v) / np.where(scale > 0, scale, 1), 0.0)
                worst = float(diff.max()) if len(diff) else 0.0
                result["max_rel_diff"] = max(result["max_rel_diff"], worst)
                if worst > tolerance:
                    result["problems"].append(f"{name}: {column}: relative difference {worst:.2e}")
            elif not x.equals(y):
                result["problems"].append(f"{name}: {column}: values differ")
    result["rows"] = rows
    if not result["same_files"]:
        result["problems"].append(f"files differ: {files_a} and {files_b}")
    return result


def cmd_kill(args: argparse.Namespace) -> None:
    info = describe(args.threads)
    print(header(info))
    work = Path(tempfile.mkdtemp(prefix="gptloss-bench-annotate-", dir=args.workdir))
    runner = Runner(work, info["threads"])
    corpus, _, rows, characters = take_rows(args.corpus, args.limit_rows, work)
    print(f"model {args.model}; {rows:,} rows, {characters:,} characters; chunks of {args.chunk_rows} rows; ", end="")
    print(f"work in {work}", flush=True)
    common = ["-m", args.model, "--device", "cpu", "--chunk-rows", str(args.chunk_rows)]
    first, second = work / "OUT1", work / "OUT2"
    whole = runner.gptloss("annotate", corpus, "-o", str(first), "--report", str(work / "report1.json"), *common)
    print(f"uninterrupted run: {whole['wall_seconds']:.1f} s", flush=True)

    began = time.perf_counter()
    proc, log = runner.start("_cli", str(work / "timing-killed.json"), "annotate", corpus, "-o", str(second), *common)
    killed_at: dict[str, Any] = {}
    while proc.poll() is None:
        marks = chunk_marks(second)
        if len(marks) >= args.kill_after:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = {"seconds": time.perf_counter() - began, "chunks_done": len(marks)}
            break
        time.sleep(0.02)
    if proc.returncode is None:  # killed (poll has not reaped it)
        stopped = runner.finish(proc, log, began, check=False)
    else:
        stopped = {"returncode": proc.returncode}
    killed_at.update(returncode=stopped["returncode"], outputs_before_resume=outputs(second))
    killed_at["chunks_left"] = len(chunk_marks(second))
    mid_run = stopped["returncode"] == -signal.SIGKILL and len(killed_at["outputs_before_resume"]) < len(outputs(first))
    print(
        f"killed run: SIGKILL after {killed_at.get('seconds', float('nan')):.1f} s, exit {stopped['returncode']}, "
        f"{killed_at['chunks_left']} finished chunk(s) kept, {len(killed_at['outputs_before_resume'])} of "
        f"{len(outputs(first))} outputs written before the resume" + ("" if mid_run else " (NOT killed mid-run)")
    )
    resumed = runner.gptloss(
        "annotate", corpus, "-o", str(second), "--resume", "--report", str(work / "report2.json"), *common, check=False
    )
    report = json.loads((work / "report2.json").read_text()) if resumed["returncode"] == 0 else {}
    carried = sum(1 for f in report.get("files", []) if f.get("resumed"))
    print(f"resumed run: exit {resumed['returncode']}, {resumed['wall_seconds']:.1f} s, {carried} file(s) carried on")
    left = sorted(str(p.relative_to(second)) for p in (second / STATE).rglob("*.chunks"))
    stray = sorted(str(p.relative_to(second)) for p in second.rglob(".*.tmp"))  # a killed writer's temporary file
    compared = compare_outputs(first, second, args.tolerance)
    problems = list(compared["problems"])
    problems += [] if mid_run else ["the run was not killed in the middle (it finished first, or died otherwise)"]
    problems += [] if resumed["returncode"] == 0 else [f"the resumed run failed (exit {resumed['returncode']})"]
    problems += [] if carried else ["the resumed run carried on no file"]
    problems += [f"unfinished chunks left in the state folder: {left}"] if left else []
    verdict = "PASS" if not problems else "FAIL"
    print(
        f"OUT1 and OUT2: {len(compared['files'])} file(s), {compared['rows']:,} rows; same files "
        f"{'yes' if compared['same_files'] else 'NO'}; max relative difference of the scores "
        f"{compared['max_rel_diff']:.1e} (tolerance {args.tolerance:g})"
    )
    for problem in problems:
        print(f"  {problem}")
    if stray:
        print(f"  note: temporary files the killed run left behind (not outputs; not removed by the resume): {stray}")
    print(verdict)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    summary = {"verdict": verdict, "problems": problems, "killed": killed_at, "compared": compared, "stray": stray}
    summary.update(uninterrupted_seconds=whole["wall_seconds"], resumed_seconds=resumed["wall_seconds"])
    print(json.dumps({"kill": summary, "machine": info}))
    if problems:
        sys.exit(1)


# Arguments ------------------------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in CHILDREN:
        CHILDREN[sys.argv[1]](sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        if name != "corpus":
            sub.add_argument("--threads", type=int, help="torch threads of every child (default: torch's here)")
            sub.add_argument("--workdir", help="where the temporary folder goes (default: the system's)")
            sub.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
        return sub

    sub = command("corpus", "Write the licence and copyright texts as Parquet shards (id, source, text).")
    sub.add_argument("outdir")
    sub.add_argument("--shards", type=int, default=4)

    sub = command("speed", "annotate against score and a row-at-a-time loop, in tokens per second.")
    sub.add_argument("corpus", metavar="CORPUS_DIR")
    sub.add_argument("--model", default="smollm2-135m-instruct")
    sub.add_argument("--limit-rows", type=int, help="N rows spread evenly over the corpus (default: all)")
    sub.add_argument("--repeats", type=int, default=1, help="runs of each; medians are shown")
    sub.add_argument(
        "--loop-max-length", type=int, help="the loop's truncation (default: the model's context, as data-juicer)"
    )

    sub = command("memory", "Peak RSS of annotate at --rows and 10x --rows rows, and of the model alone.")
    sub.add_argument("--rows", type=int, default=2000)
    sub.add_argument("--model", help="default: a tiny seeded Llama built offline (as the tests build it)")
    sub.add_argument("--format", choices=["parquet", "jsonl"], default="parquet")
    sub.add_argument("--shards", type=int, default=2)
    sub.add_argument("--chunk-rows", type=int, default=1000, help="annotate's --chunk-rows (its default: 1000)")
    sub.add_argument("--repeats", type=int, default=1, help="runs of each; medians are shown")

    sub = command("kill", "kill -9 annotate mid-run, --resume it, and compare with an uninterrupted run.")
    sub.add_argument("corpus", metavar="CORPUS_DIR")
    sub.add_argument("--model", default="smollm2-135m-instruct")
    sub.add_argument("--limit-rows", type=int, help="N rows spread evenly over the corpus (default: all)")
    sub.add_argument("--chunk-rows", type=int, default=4)
    sub.add_argument("--kill-after", type=int, default=1, help="finished chunks before the SIGKILL")
    sub.add_argument("--tolerance", type=float, default=1e-9, help="largest relative difference of a score")

    args = parser.parse_args()
    if getattr(args, "threads", None) is None and args.command != "corpus":
        import torch

        args.threads = torch.get_num_threads()
    {"corpus": cmd_corpus, "speed": cmd_speed, "memory": cmd_memory, "kill": cmd_kill}[args.command](args)


if __name__ == "__main__":
    main()
