"""Load test of `gptloss serve` on loopback: throughput and latency under concurrent clients, against offline
scoring of the same texts, and the server's memory over many requests.

    .venv/bin/python benchmarks/load_serve.py [--model gemma-3-270m] [--levels 1,4,16,64] [--duration 60]
    .venv/bin/python benchmarks/load_serve.py --levels none --rss-requests 10000     # the memory mode only
    .venv/bin/python benchmarks/load_serve.py --quick --model smollm2-135m-instruct  # a smoke run (minutes)

Throughput: `gptloss serve -m MODEL --port 0` is started as a subprocess (its stderr goes to a log file named
in the output) and waited for until it says "serving ... at URL". --texts texts of --min-tokens to --max-tokens
tokens (lengths drawn uniformly with --seed) are cut from long public texts on this machine
(/usr/share/common-licenses/* and /usr/share/doc/*/copyright). A few untimed requests warm the server up.
Then for each concurrency level, that many client threads (one keep-alive HTTP connection each) send
POST /v1/score with one text each (picked at random from the pool), back to back, for --duration seconds
(or until --requests requests have been sent, at least one per client; --duration then only caps it); the
requests in flight at the end are waited for and counted. Per level: requests, failed requests (any
non-200 answer or broken connection: must be 0), scored tokens per second (the responses' total.tokens_scored
over the level's wall time, first request sent to last answer received) and p50 / p99 latency.

Offline: the same pool of texts scored in one process with gptloss_cli.load_model + score_documents (what
`gptloss score` runs on a JSONL dataset), the same window settings as the server's default (the model's
context up to 2,048 tokens, batch size 8), warmed up on the same texts as the server, timed without the model
load, in its own process while no server runs. Printed: its tokens per second, the ratio of the 16-client
level to it (target >= 0.8), and the largest relative difference between a text's NLL sum from the server and
from the offline run (batches differ, so float rounding only).

Memory (--rss-requests N, off by default): a fresh server gets N small requests (texts of 10 to 80 tokens,
/v1/score, or also /v1/completions with echo and logprobs with --rss-endpoints score,completions) from
--rss-clients clients, and its RSS (VmRSS in /proc/PID/status) is read after N/10 and after N answers
(target: within 5%), with a sample every N/10 answers in between.

The clients run in this process: on a machine with few cores they take CPU time from the server (JSON and
HTTP in Python threads), so the ratio to offline is a lower bound there. The header names the CPU (model,
avx512_bf16 / amx_bf16), the cores this process may use, torch's version and the thread count torch picks.
Every phase is bounded: the server's start by --start-timeout, a level by --duration plus the requests in
flight (each capped by --request-timeout), the memory mode by --rss-timeout.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machine import ROOT, describe, header

SOURCES = ("/usr/share/common-licenses/*", "/usr/share/doc/*/copyright")
READY = re.compile(r"serving .* at (http://(\S+):(\d+))")
READ_LIMIT = 400_000  # characters read from one source file


# ----------------------------------------------------------------------------------------------- the texts


def source_files() -> list[Path]:
    """The public texts on this machine, each once (links and copies dropped), in a fixed order."""
    import glob

    seen_paths, seen_texts, out = set(), set(), []
    for pattern in SOURCES:
        for name in sorted(glob.glob(pattern)):
            path = Path(name)
            real = path.resolve()
            if real in seen_paths or not real.is_file():
                continue
            seen_paths.add(real)
            digest = hashlib.sha256(real.read_bytes()[:READ_LIMIT]).hexdigest()
            if digest in seen_texts:
                continue
            seen_texts.add(digest)
            out.append(path)
    if not out:
        raise SystemExit(f"no source texts found ({', '.join(SOURCES)})")
    return out


class Cutter:
    """Cuts pieces of a given number of tokens out of the source texts (with the model's tokenizer)."""

    def __init__(self, tokenizer: Any, files: list[Path]):
        self.tokenizer = tokenizer
        self.files = files
        self._cache: dict[Path, tuple[str, list[tuple[int, int]]]] = {}

    def _tokens(self, path: Path) -> tuple[str, list[tuple[int, int]]]:
        if path not in self._cache:
            text = path.read_text(encoding="utf-8", errors="replace")[:READ_LIMIT]
            offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            self._cache[path] = (text, [tuple(o) for o in offsets])
        return self._cache[path]

    def cut(self, rng: random.Random, length: int) -> str:
        start_file = rng.randrange(len(self.files))
        for k in range(len(self.files)):
            text, offsets = self._tokens(self.files[(start_file + k) % len(self.files)])
            if len(offsets) >= length:
                first = rng.randrange(len(offsets) - length + 1)
                return text[offsets[first][0] : offsets[first + length - 1][1]]
        raise SystemExit(f"no source text has {length} tokens")


def make_texts(model: str, count: int, low: int, high: int, seed: int) -> list[str]:
    """`count` texts of `low` to `high` tokens (lengths uniform, drawn with `seed`)."""
    from transformers import AutoTokenizer

    from gptloss_cli.models.loader import locate

    source = locate(model, None)[0]  # a bundled alias: its converted folder (converted here on first use)
    cutter = Cutter(AutoTokenizer.from_pretrained(source), source_files())
    rng = random.Random(seed)
    return [cutter.cut(rng, rng.randint(low, high)) for _ in range(count)]


# ----------------------------------------------------------------------------------------------- the server


class Server:
    """`gptloss serve` in a subprocess on a free loopback port."""

    def __init__(self, model: str, extra: list[str], log: Path, timeout: float):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        self.log = log
        command = [sys.executable, "-m", "gptloss_cli", "serve", "-m", model, "--port", "0", *extra]
        with log.open("wb") as sink:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sink, env=env, cwd=ROOT)
        began = time.monotonic()
        while True:
            found = READY.search(log.read_text(encoding="utf-8", errors="replace"))
            if found:
                self.url, self.host, self.port = found.group(1), found.group(2), int(found.group(3))
                break
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited ({self.process.returncode}) before it was ready:\n{self.tail()}")
            if time.monotonic() - began > timeout:
                self.process.kill()
                raise SystemExit(f"the server was not ready after {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.2)
        self.start_seconds = time.monotonic() - began

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self, timeout: float = 120) -> int | None:
        """SIGTERM (drain and exit); the exit code, or None if it had to be killed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        return self.process.returncode


# ----------------------------------------------------------------------------------------------- the clients


class Client:
    """One keep-alive connection; a request on a connection the server closed while idle is sent again once."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.connection: http.client.HTTPConnection | None = None
        self.used = False
        self.reconnects = 0

    def post(self, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        body = json.dumps(payload).encode()
        for attempt in (0, 1):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.used = False
            try:
                self.connection.request("POST", path, body, {"Content-Type": "application/json"})
                response = self.connection.getresponse()
                data = response.read()
                self.used = True
                return response.status, json.loads(data) if data else None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                stale = self.used and attempt == 0
                self.close()
                if not stale:
                    raise
                self.reconnects += 1
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.connection = None


@dataclass
class Level:
    clients: int
    latencies: list[float] = field(default_factory=list)
    tokens: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reconnects: int = 0
    nll: dict[int, float] = field(default_factory=dict)  # text index -> NLL sum from the first answer for it

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.failed

    def row(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "clients": self.clients,
            "requests": self.requests,
            "failed": self.failed,
            "tokens_scored": self.tokens,
            "seconds": self.seconds,
            "tokens_per_s": self.tokens / self.seconds if self.seconds else 0.0,
            "p50_ms": 1000 * percentile(ordered, 50),
            "p99_ms": 1000 * percentile(ordered, 99),
            "reconnects": self.reconnects,
            "errors": self.errors[:5],
        }


def percentile(ordered: list[float], p: float) -> float:
    """The nearest-rank percentile of sorted values (nan for none)."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def score_payload(model: str, texts: list[str]) -> dict[str, Any]:
    return {"model": model, "texts": texts}


def run_level(
    server: Server, model: str, texts: list[str], clients: int, duration: float, limit: int | None, args: Any
) -> Level:
    """`clients` threads sending one text per POST /v1/score, back to back, for `duration` seconds (or `limit`
    requests in all, at least one per client); the level's wall time runs to the last answer."""
    level = Level(clients)
    lock = threading.Lock()
    sent = [0]
    start = threading.Barrier(clients + 1)
    finished: list[float] = []
    began = [0.0]

    def work(n: int) -> None:
        rng = random.Random(args.seed * 1000 + clients * 100 + n)
        client = Client(server.host, server.port, args.request_timeout)
        start.wait()
        first = True
        while True:
            with lock:
                over = time.perf_counter() - began[0] >= duration or (limit is not None and sent[0] >= limit)
                if over and not first:
                    break
                sent[0] += 1
            first = False
            index = rng.randrange(len(texts))
            t0 = time.perf_counter()
            try:
                status, answer = client.post("/v1/score", score_payload(model, [texts[index]]))
                ok = status == 200 and isinstance(answer, dict) and answer.get("total", {}).get("tokens_scored")
                why = "" if ok else f"HTTP {status}: {str(answer)[:200]}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                status, answer, ok, why = 0, None, False, f"{type(exc).__name__}: {exc}"
                client.close()
            seconds = time.perf_counter() - t0
            with lock:
                if ok:
                    level.latencies.append(seconds)
                    level.tokens += int(answer["total"]["tokens_scored"])
                    level.nll.setdefault(index, float(answer["documents"][0]["nll_sum"]))
                else:
                    level.failed += 1
                    level.errors.append(why)
        with lock:
            finished.append(time.perf_counter())
            level.reconnects += client.reconnects
        client.close()

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    began[0] = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    level.seconds = max(finished) - began[0]
    return level


def warm_up(server: Server, model: str, texts: list[str], args: Any) -> list[int]:
    """A few untimed requests (the shortest and the longest texts, one at a time then together); their
    indices, which the offline run warms up on too."""
    by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    chosen = sorted({by_length[0], by_length[len(by_length) // 2], by_length[-1]})
    client = Client(server.host, server.port, args.request_timeout)
    for i in chosen:
        status, answer = client.post("/v1/score", score_payload(model, [texts[i]]))
        if status != 200:
            raise SystemExit(f"warm-up request failed: HTTP {status}: {answer}")
    client.close()
    return chosen


# ----------------------------------------------------------------------------------------------- offline


def child_offline(args: argparse.Namespace) -> dict[str, Any]:
    """Load the model, warm up, then time score_documents on every text (what `gptloss score` runs)."""
    import torch

    from gptloss_cli import Document, WindowSettings, load_model, score_documents

    data = json.loads(Path(args.child_offline).read_text(encoding="utf-8"))
    texts, warm = data["texts"], data["warm"]
    t0 = time.perf_counter()
    loaded = load_model(args.model)
    load = time.perf_counter() - t0
    settings = WindowSettings(batch_size=args.batch_size)
    for i in warm:
        score_documents(loaded, [Document(texts[i], f"warm-{i}")], settings)
    runs = []
    for _ in range(args.offline_repeats):
        t0 = time.perf_counter()
        result = score_documents(loaded, [Document(t, str(i)) for i, t in enumerate(texts)], settings)
        runs.append(time.perf_counter() - t0)
    return {
        "tokens_scored": result.total.tokens_scored,
        "seconds": min(runs),
        "seconds_each": runs,
        "load_seconds": load,
        "torch_threads": torch.get_num_threads(),
        "nll": {d.source: d.totals.nll_sum for d in result.documents},
    }


def offline(args: argparse.Namespace, texts: list[str], warm: list[int], work: Path) -> dict[str, Any]:
    path = work / "texts.json"
    path.write_text(json.dumps({"texts": texts, "warm": warm}), encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    command = [sys.executable, __file__, "--child-offline", str(path), "--model", args.model]
    command += ["--batch-size", str(args.batch_size), "--offline-repeats", str(args.offline_repeats)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.offline_timeout)
    if done.returncode != 0:
        raise SystemExit(f"the offline run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------- memory


def rss_mode(args: argparse.Namespace, files: list[Path], work: Path) -> dict[str, Any]:
    """A fresh server, many small requests; its RSS at every tenth of them."""
    from transformers import AutoTokenizer

    from gptloss_cli.models.loader import locate

    cutter = Cutter(AutoTokenizer.from_pretrained(locate(args.model, None)[0]), files)
    rng = random.Random(args.seed + 1)
    small = [cutter.cut(rng, rng.randint(10, 80)) for _ in range(200)]
    endpoints = args.rss_endpoints.split(",")
    total = args.rss_requests
    checkpoints = sorted({max(1, total * k // 10) for k in range(1, 11)})
    server = Server(args.model, shlex.split(args.server_args), work / "serve-rss.log", args.start_timeout)
    print(
        f"memory: server pid {server.process.pid} at {server.url} (log {server.log}), started in "
        f"{server.start_seconds:.1f} s; RSS {server.rss_kib() / 1024:.1f} MiB before any request"
    )
    lock = threading.Lock()
    counts = {"sent": 0, "done": 0, "failed": 0}
    errors: list[str] = []
    deadline = time.monotonic() + args.rss_timeout

    def work_(n: int) -> None:
        local = random.Random(args.seed * 7 + n)
        client = Client(server.host, server.port, args.request_timeout)
        while time.monotonic() < deadline:
            with lock:
                if counts["sent"] >= total:
                    break
                counts["sent"] += 1
                kind = endpoints[counts["sent"] % len(endpoints)]
            text = small[local.randrange(len(small))]
            if kind == "completions":
                path, payload = (
                    "/v1/completions",
                    {
                        "model": args.model,
                        "prompt": text,
                        "echo": True,
                        "logprobs": 1,
                        "max_tokens": 0,
                        "temperature": 0,
                    },
                )
            else:
                path, payload = "/v1/score", score_payload(args.model, [text])
            try:
                status, answer = client.post(path, payload)
                why = "" if status == 200 else f"HTTP {status}: {str(answer)[:200]}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                why = f"{type(exc).__name__}: {exc}"
                client.close()
            with lock:
                counts["done"] += 1
                if why:
                    counts["failed"] += 1
                    errors.append(why)
        client.close()

    threads = [threading.Thread(target=work_, args=(n,), daemon=True) for n in range(args.rss_clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    samples: list[tuple[int, int]] = []
    pending = list(checkpoints)
    while pending and time.monotonic() < deadline and any(t.is_alive() for t in threads):
        with lock:
            done = counts["done"]
        while pending and done >= pending[0]:
            samples.append((done, server.rss_kib()))
            print(f"  after {done:>6,} requests: RSS {samples[-1][1] / 1024:8.1f} MiB", flush=True)
            pending.pop(0)
        time.sleep(0.02)
    for thread in threads:
        thread.join(args.request_timeout)
    with lock:
        done = counts["done"]
    if pending and done >= pending[0]:  # the last answers came after the loop's last look
        samples.append((done, server.rss_kib()))
        print(f"  after {done:>6,} requests: RSS {samples[-1][1] / 1024:8.1f} MiB")
    seconds = time.perf_counter() - began
    code = server.stop()
    first, last = samples[0] if samples else (0, 0), samples[-1] if samples else (0, 0)
    growth = (last[1] - first[1]) / first[1] if first[1] else float("nan")
    timed_out = done < total
    print(
        f"memory: {done:,} requests ({', '.join(endpoints)}) from {args.rss_clients} clients in {seconds:.0f} s, "
        f"{counts['failed']} failed; RSS after {first[0]:,}: {first[1] / 1024:.1f} MiB, after {last[0]:,}: "
        f"{last[1] / 1024:.1f} MiB, growth {100 * growth:+.2f}% (target within 5%)"
        + (f"; STOPPED at --rss-timeout {args.rss_timeout:.0f} s" if timed_out else "")
        + f"; server exit {code}"
    )
    for why in errors[:5]:
        print(f"  failure: {why}")
    return {
        "requests": done,
        "failed": counts["failed"],
        "seconds": seconds,
        "samples_kib": samples,
        "growth": growth,
        "timed_out": timed_out,
        "endpoints": endpoints,
        "server_exit": code,
    }


# ----------------------------------------------------------------------------------------------- main


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m", help="what `gptloss serve -m` takes")
    parser.add_argument("--levels", help="concurrency levels, comma-separated, or none (default 1,4,16,64)")
    parser.add_argument("--duration", type=float, help="seconds each level sends requests (default 60)")
    parser.add_argument(
        "--requests",
        type=int,
        help="requests per level instead (at least one per client; --duration, default 600 then, still caps a level)",
    )
    parser.add_argument("--texts", type=int, help="texts in the pool (default 64)")
    parser.add_argument("--min-tokens", type=int, help="(default 50)")
    parser.add_argument("--max-tokens", type=int, help="(default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8, help="offline windows per forward pass (as serve's)")
    parser.add_argument("--offline-repeats", type=int, default=1, help="timed offline runs; the fastest counts")
    parser.add_argument("--server-args", default="", help="more options for `gptloss serve`, as one string")
    parser.add_argument("--rss-requests", type=int, default=0, help="the memory mode: this many small requests")
    parser.add_argument("--rss-clients", type=int, default=4)
    parser.add_argument("--rss-endpoints", default="score", help="score, or score,completions (alternating)")
    parser.add_argument("--rss-timeout", type=float, default=1800)
    parser.add_argument("--start-timeout", type=float, default=900, help="seconds for the server to be ready")
    parser.add_argument("--request-timeout", type=float, default=600)
    parser.add_argument("--offline-timeout", type=float, default=1800)
    parser.add_argument("--output", help="also write the results here as JSON")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 short texts, few requests")
    parser.add_argument("--child-offline", help=argparse.SUPPRESS)
    args = parser.parse_args()
    quick = args.quick
    defaults = {
        "levels": "1,4,16" if quick else "1,4,16,64",
        "requests": 8 if quick else None,
        "texts": 8 if quick else 64,
        "min_tokens": 50,
        "max_tokens": 200 if quick else 2000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.duration is None:  # with a request count, the duration only caps a level
        args.duration = 60.0 if args.requests is None else 600.0
    if quick and args.rss_requests > 200:
        args.rss_requests = 200
    return args


def main() -> None:
    args = options()
    if args.child_offline:
        print(json.dumps(child_offline(args)))
        return
    info = describe()
    print(header(info))
    levels = [] if args.levels in ("", "none") else [int(x) for x in args.levels.split(",")]
    results: dict[str, Any] = {"machine": info, "model": args.model, "args": vars(args)}
    work = Path(tempfile.mkdtemp(prefix="gptloss-load-"))
    if levels:
        t0 = time.perf_counter()
        files = source_files()
        texts = make_texts(args.model, args.texts, args.min_tokens, args.max_tokens, args.seed)
        print(
            f"texts: {len(texts)} of {args.min_tokens}-{args.max_tokens} tokens (seed {args.seed}) from "
            f"{len(files)} source files, {sum(map(len, texts)):,} characters ({time.perf_counter() - t0:.1f} s)"
        )
        server = Server(args.model, shlex.split(args.server_args), work / "serve.log", args.start_timeout)
        print(
            f"server: {args.model} at {server.url}, pid {server.process.pid}, ready in {server.start_seconds:.1f} s "
            f"(log {server.log})"
        )
        try:
            warm = warm_up(server, args.model, texts, args)
            rows = []
            limit = f"{args.requests} requests" if args.requests else f"{args.duration:.0f} s"
            print(f"\nPOST /v1/score, one text a request, {limit} a level")
            print(
                f"{'clients':>7} {'requests':>8} {'failed':>6} {'tokens':>9} {'seconds':>8} {'tok/s':>8} "
                f"{'p50 ms':>8} {'p99 ms':>8}"
            )
            nll: dict[int, float] = {}
            for clients in levels:
                level = run_level(server, args.model, texts, clients, args.duration, args.requests, args)
                row = level.row()
                rows.append(row)
                for k, v in level.nll.items():
                    nll.setdefault(k, v)
                print(
                    f"{clients:>7} {row['requests']:>8} {row['failed']:>6} {row['tokens_scored']:>9,} "
                    f"{row['seconds']:>8.1f} {row['tokens_per_s']:>8.0f} {row['p50_ms']:>8.0f} "
                    f"{row['p99_ms']:>8.0f}",
                    flush=True,
                )
                for why in row["errors"]:
                    print(f"  failure: {why}")
            results["levels"] = rows
        finally:
            code = server.stop()
        print(f"server stopped with SIGTERM: exit {code}")
        results["server_exit"] = code
        found = offline(args, texts, warm, work)
        rate = found["tokens_scored"] / found["seconds"]
        results["offline"] = {k: v for k, v in found.items() if k != "nll"} | {"tokens_per_s": rate}
        print(
            f"\noffline score_documents: {len(texts)} texts, {found['tokens_scored']:,} tokens in "
            f"{found['seconds']:.1f} s = {rate:.0f} tok/s (load {found['load_seconds']:.1f} s, not counted; "
            f"torch threads {found['torch_threads']})"
        )
        diffs = [abs(v - found["nll"][str(k)]) / abs(found["nll"][str(k)]) for k, v in nll.items()]
        if diffs:
            print(
                f"server vs offline NLL sum per text: largest relative difference {max(diffs):.1e} "
                f"over {len(diffs)} texts"
            )
            results["nll_max_rel_diff"] = max(diffs)
        for row in rows:
            row["vs_offline"] = row["tokens_per_s"] / rate
        at16 = next((r for r in rows if r["clients"] == 16), None)
        if at16:
            verdict = "ok" if at16["vs_offline"] >= 0.8 else "BELOW TARGET"
            print(f"16 clients / offline: {at16['vs_offline']:.2f} (target >= 0.8: {verdict})")
        print("each level / offline: " + ", ".join(f"{r['clients']}: {r['vs_offline']:.2f}" for r in rows))
        failed = sum(r["failed"] for r in rows)
        print(f"failed requests: {failed} (must be 0)")
    if args.rss_requests:
        print()
        results["memory"] = rss_mode(args, source_files(), work)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1), encoding="utf-8")
        print(f"results written to {args.output}")


if __name__ == "__main__":
    main()
