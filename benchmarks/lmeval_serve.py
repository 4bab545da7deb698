"""lm-evaluation-harness acceptance of `gptloss serve`: the same tasks through lm_eval's local-completions
client against the server, through lm_eval's own hf model on the same weights, and (the rolling task) through
`gptloss score --protocol lm-eval`; the metrics and every per-request log-likelihood compared.

    .venv/bin/python benchmarks/lmeval_serve.py [--model smollm2-135m-instruct | --model-dir DIR] [--setup]

lm_eval runs from its own venv (--venv, default /tmp/lmeval-venv), made by --setup when missing:

    python3 -m venv /tmp/lmeval-venv && /tmp/lmeval-venv/bin/pip install torch==2.13.0 \\
        && /tmp/lmeval-venv/bin/pip install 'lm-eval[api,hf]==0.4.13'

(lm-eval alone lacks what its local-completions and hf models import: requests/aiohttp/tenacity, transformers.)
The model is a transformers folder: --model-dir, or the folder gptloss converted a bundled model's GGUF file
into (in its cache; the default, smollm2-135m-instruct, a real 135M model). Nothing comes from a hub:
lm_eval runs with HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1, and its two tasks (benchmarks/lmeval/*.yaml,
--include_path) read local JSONL that this script writes to benchmarks/lmeval/data/:

    gptloss_mc         multiple_choice (loglikelihood): 20 questions with 2 to 4 choices; acc, acc_norm
    gptloss_licenses   loglikelihood_rolling: 10 documents cut from /usr/share/common-licenses texts;
                       word_perplexity, byte_perplexity, bits_per_byte

Runs, each logged to a file in the output folder (--out):

    api     lm_eval --model local-completions --model_args base_url=URL/v1/completions,model=DIR,
            num_concurrent=1,max_retries=1,max_length=L+2 against `gptloss serve -m DIR --port 0`
            (the log must say lm_eval auto-detected the remote tokenizer: /tokenizer_info and /tokenize)
    hf      lm_eval --model hf --model_args pretrained=DIR,dtype=float32,max_length=L --device cpu
    score   gptloss score --protocol lm-eval -m DIR --max-length L over the rolling task's documents

L is --max-length (default 512, so that the longer documents take several rolling windows). The two lm_eval
models count it differently: the API model scores windows of max_length - 2 tokens (one is kept for
generation, one for the prefix), hf and gptloss's preset of max_length, so the API run gets L + 2 and all
three cut the same windows. Both lm_eval runs use batch size 1 and --log_samples; the table shows each
metric per run and the largest relative difference to hf, and then every request's log-likelihood from the
API run against hf's (and whether is_greedy agrees). Target: equal within 1e-4 relative.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TASKS = HERE / "lmeval"
DATA = TASKS / "data"
TARGET = 1e-4

# (question, choices, index of the right one)
QUESTIONS: list[tuple[str, list[str], int]] = [
    ("What is the capital of France?", ["Paris", "Berlin", "Madrid", "Rome"], 0),
    ("How many legs does a spider have?", ["six", "eight", "ten"], 1),
    ("Which planet is closest to the Sun?", ["Venus", "Mercury", "Mars", "Earth"], 1),
    ("What is the boiling point of water at sea level in degrees Celsius?", ["100", "90", "120"], 0),
    ("Is the Pacific Ocean larger than the Atlantic Ocean?", ["yes", "no"], 0),
    ("What gas do plants take in from the air to make sugar?", ["oxygen", "nitrogen", "carbon dioxide"], 2),
    ("Who wrote Romeo and Juliet?", ["Charles Dickens", "William Shakespeare", "Jane Austen", "Mark Twain"], 1),
    ("What is 7 times 8?", ["54", "56", "64", "48"], 1),
    ("Which animal is known as the king of the jungle?", ["lion", "elephant", "tiger"], 0),
    ("What color do you get by mixing blue and yellow?", ["green", "purple", "orange"], 0),
    ("How many days are there in a leap year?", ["365", "366"], 1),
    ("What is the largest mammal?", ["the elephant", "the blue whale", "the giraffe", "the hippopotamus"], 1),
    ("Which language is mainly spoken in Brazil?", ["Spanish", "Portuguese", "French"], 1),
    ("What is the chemical symbol for gold?", ["Au", "Ag", "Gd", "Go"], 0),
    ("Does ice float on water?", ["yes", "no"], 0),
    ("What is the square root of 81?", ["8", "9", "7"], 1),
    ("Which continent is Egypt in?", ["Asia", "Africa", "Europe", "South America"], 1),
    ("What do bees make?", ["milk", "silk", "honey"], 2),
    ("In which direction does the Sun rise?", ["west", "east", "north", "south"], 1),
    ("What is the freezing point of water in degrees Fahrenheit?", ["32", "0", "100"], 0),
]
LICENSES = "/usr/share/common-licenses"
DOCUMENTS = 10


def write_data() -> tuple[Path, Path]:
    """The two tasks' JSONL: the questions, and documents of 1,200 to 4,800 characters from the licenses."""
    DATA.mkdir(parents=True, exist_ok=True)
    mc = DATA / "mc.jsonl"
    with mc.open("w", encoding="utf-8") as out:
        for question, choices, answer in QUESTIONS:
            out.write(json.dumps({"question": question, "choices": choices, "answer": answer}) + "\n")
    seen, texts = set(), []
    for name in sorted(glob.glob(f"{LICENSES}/*")):
        real = Path(name).resolve()
        if real in seen or not real.is_file():
            continue
        seen.add(real)
        texts.append(real.read_text(encoding="utf-8", errors="replace"))
    if len(texts) < DOCUMENTS:
        raise SystemExit(f"{LICENSES} holds {len(texts)} texts; {DOCUMENTS} are needed")
    rolling = DATA / "licenses.jsonl"
    with rolling.open("w", encoding="utf-8") as out:
        for i, text in enumerate(texts[:DOCUMENTS]):
            size = 1200 + 400 * i
            piece = text.strip()[:size]
            piece = piece[: max(piece.rfind(" "), size // 2)].rstrip()  # end at a word, no trailing space
            out.write(json.dumps({"text": piece}) + "\n")
    return mc, rolling


def env_offline() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def setup_venv(venv: Path) -> None:
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    print(f"setting up {venv} (torch 2.13.0, lm-eval[api,hf] 0.4.13)", flush=True)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, "lm-eval[api,hf]==0.4.13"], check=True)


def lm_eval(venv: Path, model: str, model_args: str, out: Path, log: Path, timeout: float, extra: list[str]) -> Any:
    """One lm_eval run over both tasks; its results file and samples, and its log's text."""
    command = [str(venv / "bin" / "lm_eval"), "run", "--model", model, "--model_args", model_args]
    command += ["--tasks", "gptloss_mc,gptloss_licenses", "--include_path", str(TASKS.relative_to(ROOT))]
    command += ["--output_path", str(out), "--log_samples", "--batch_size", "1", *extra]
    t0 = time.perf_counter()
    with log.open("w") as sink:
        sink.write("$ " + " ".join(command) + "\n")
        sink.flush()
        done = subprocess.run(
            command, cwd=ROOT, env=env_offline(), stdout=sink, stderr=subprocess.STDOUT, timeout=timeout
        )
    text = log.read_text(encoding="utf-8", errors="replace")
    if done.returncode != 0:
        raise SystemExit(f"lm_eval {model} failed ({done.returncode}); the end of {log}:\n{text[-4000:]}")
    results = json.loads(Path(sorted(glob.glob(f"{out}/**/results_*.json", recursive=True))[-1]).read_text())
    samples: dict[tuple[str, int], Any] = {}
    for path in glob.glob(f"{out}/**/samples_*.jsonl", recursive=True):
        task = re.match(r"samples_(.+)_\d{4}-", Path(path).name).group(1)  # type: ignore[union-attr]
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            sample = json.loads(line)
            samples[(task, int(sample["doc_id"]))] = sample["resps"]
    print(f"  {model}: {time.perf_counter() - t0:.0f} s (log {log})", flush=True)
    return results["results"], samples, text


def gptloss_score(model_dir: str, rolling: Path, max_length: int, log: Path, timeout: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "gptloss_cli", "score", "--protocol", "lm-eval", "-m", model_dir]
    command += ["--max-length", str(max_length), "--dataset", str(rolling), "-f", "json"]
    done = subprocess.run(command, cwd=ROOT, env=env_offline(), capture_output=True, text=True, timeout=timeout)
    log.write_text("$ " + " ".join(command) + "\n" + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        raise SystemExit(f"gptloss score failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)["total"]["lm_eval"]


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a bundled alias: its converted folder")
    parser.add_argument("--model-dir", help="a transformers model folder instead of --model's")
    parser.add_argument("--venv", default="/tmp/lmeval-venv", help="lm-eval's own venv")
    parser.add_argument("--setup", action="store_true", help="make --venv first when it has no lm_eval")
    parser.add_argument("--max-length", type=int, default=512, help="lm_eval hf's max_length (see above)")
    parser.add_argument("--out", default="/tmp/gptloss-lmeval", help="where lm_eval and the logs write")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for each run")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    from load_serve import Server
    from machine import describe

    venv = Path(args.venv)
    if not (venv / "bin" / "lm_eval").exists():
        if not args.setup:
            raise SystemExit(f"{venv} has no lm_eval: run with --setup, or make it as the docstring says")
        setup_venv(venv)
    if args.model_dir:
        model_dir = str(Path(args.model_dir).resolve())
    else:
        from gptloss_cli.models.loader import locate

        model_dir = locate(args.model, None)[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = describe()
    version = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import lm_eval, transformers, torch; "
            "print(lm_eval.__version__, transformers.__version__, torch.__version__)",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    print(
        f"cpu: {info['cpu']}; {info['usable_cpus']} CPUs; gptloss side: torch {info['torch']}, transformers "
        f"{info['transformers']}; lm_eval side: lm_eval {version[0]}, transformers {version[1]}, torch {version[2]}"
    )
    print(f"model folder: {model_dir}")
    mc, rolling = write_data()
    print(
        f"data: {mc.relative_to(ROOT)} ({len(QUESTIONS)} questions), {rolling.relative_to(ROOT)} "
        f"({DOCUMENTS} documents); windows of {args.max_length}"
    )

    server = Server(model_dir, [], out / "serve.log", args.timeout)
    print(f"  gptloss serve: {server.url} (ready in {server.start_seconds:.0f} s, log {server.log})", flush=True)
    try:
        api_args = f"base_url={server.url}/v1/completions,model={model_dir},num_concurrent=1,max_retries=1,"
        api_args += f"max_length={args.max_length + 2}"
        api, api_samples, api_log = lm_eval(
            venv, "local-completions", api_args, out / "api", out / "lm_eval-api.log", args.timeout, []
        )
    finally:
        code = server.stop()
    detected = "Auto-detected remote tokenizer support" in api_log and "Using remote tokenizer" in api_log
    served = server.log.read_text(encoding="utf-8", errors="replace")
    counts = {p: served.count(f"POST {p} 200") for p in ("/v1/completions", "/tokenize", "/detokenize")}
    failed = len(re.findall(r"^(?:GET|POST) \S+ [45]\d\d ", served, re.M))
    print(
        f"  remote tokenizer detected: {'yes' if detected else 'NO'}; server answered "
        f"{', '.join(f'{n} {p}' for p, n in counts.items())}, {failed} errors; exit {code} on SIGTERM"
    )
    hf_args = f"pretrained={model_dir},dtype=float32,max_length={args.max_length}"
    hf, hf_samples, _ = lm_eval(
        venv, "hf", hf_args, out / "hf", out / "lm_eval-hf.log", args.timeout, ["--device", "cpu"]
    )
    t0 = time.perf_counter()
    score = gptloss_score(model_dir, rolling, args.max_length, out / "score.log", args.timeout)
    print(f"  gptloss score --protocol lm-eval: {time.perf_counter() - t0:.0f} s", flush=True)

    rows = []
    for task, metrics in (
        ("gptloss_mc", ("acc", "acc_norm")),
        ("gptloss_licenses", ("word_perplexity", "byte_perplexity", "bits_per_byte")),
    ):
        for metric in metrics:
            key = f"{metric},none"
            a, h = api[task][key], hf[task][key]
            s = score[metric] if task == "gptloss_licenses" else None
            rows.append((task, metric, a, h, s))
    print(f"\n{'task':<17} {'metric':<16} {'api (serve)':>14} {'hf':>14} {'gptloss score':>14} {'max rel diff':>12}")
    worst = 0.0
    for task, metric, a, h, s in rows:
        diff = max(relative(a, h), relative(s, h) if s is not None else 0.0)
        worst = max(worst, diff)
        shown = f"{s:>14.8g}" if s is not None else f"{'-':>14}"
        print(f"{task:<17} {metric:<16} {a:>14.8g} {h:>14.8g} {shown} {diff:>12.1e}")

    lls, greedy_diff, missing = [], 0, 0
    for key, hf_resps in hf_samples.items():
        api_resps = api_samples.get(key)
        if api_resps is None:
            missing += 1
            continue
        for ours, theirs in zip(api_resps, hf_resps, strict=True):
            lls.append(
                relative(
                    float(ours[0][0] if isinstance(ours[0], list) else ours[0]),
                    float(theirs[0][0] if isinstance(theirs[0], list) else theirs[0]),
                )
            )
            if isinstance(ours[0], list) and len(ours[0]) > 1 and str(ours[0][1]) != str(theirs[0][1]):
                greedy_diff += 1
    worst_ll = max(lls) if lls else math.nan
    print(
        f"\nper request, api vs hf: {len(lls)} log-likelihoods, largest relative difference {worst_ll:.1e}; "
        f"is_greedy differs in {greedy_diff}; {missing} samples missing"
    )
    ok = detected and failed == 0 and missing == 0 and greedy_diff == 0 and max(worst, worst_ll) <= TARGET
    print(f"verdict: {'PASS' if ok else 'FAIL'} (target: equal within {TARGET:g} relative)")
    summary = {
        "machine": info,
        "lm_eval": version,
        "model_dir": model_dir,
        "max_length": args.max_length,
        "rows": rows,
        "per_request_max_rel": worst_ll,
        "greedy_differs": greedy_diff,
        "remote_tokenizer": detected,
        "server_errors": failed,
        "pass": ok,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
