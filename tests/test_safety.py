"""Nothing lost, whatever the user types: an output never overwrites an input, a run file has one writer,
memory is bounded whatever the input, outputs are checked before the work, --resume follows the data, folders
are inputs, a closed pipe ends the run quietly, and usage errors exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import one_line_error, run, usage_error

from gptloss_cli.errors import GptlossError
from gptloss_cli.files import Outputs
from gptloss_cli.inputs.files import FileSettings, list_files, read_bounded

TEXT = "The cat sat on the mat, and then the dog sat on the log. "


# Runs a command and then prints its peak RSS in KiB as the last line on stderr.
PEAK = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


def gptloss(*args: object, peak: bool = False, **kwargs: object) -> subprocess.Popen[bytes]:
    """`gptloss ARGS` in a process of its own (with `peak`, its peak RSS in KiB follows on stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("GPTLOSS_DEBUG", None)
    command = [sys.executable, "-m", "gptloss_cli", *map(str, args)]
    if peak:
        command = [sys.executable, "-c", PEAK, *command]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.Popen(command, env=env, **pipes, **kwargs)  # type: ignore[call-overload]


def ends_with_peak(err: bytes) -> tuple[list[str], int]:
    """stderr's lines and the peak RSS (KiB) that PEAK printed after them."""
    lines = err.decode().splitlines()
    return lines[:-1], int(lines[-1])


# 1. An output never overwrites an input, however it is spelled.


@pytest.mark.parametrize("spelling", ["v.txt", "./v.txt", "sub/../v.txt", "absolute", "symlink", "hardlink"])
def test_output_that_is_the_input_is_refused(model_dirs, tmp_path: Path, monkeypatch, spelling: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    text = tmp_path / "v.txt"
    text.write_text(TEXT, encoding="utf-8")
    before = text.read_bytes()
    if spelling == "absolute":
        spelling = str(text)
    elif spelling == "symlink":
        (tmp_path / "link.txt").symlink_to(text)
        spelling = "link.txt"
    elif spelling == "hardlink":
        os.link(text, tmp_path / "hard.txt")
        spelling = "hard.txt"
    model = model_dirs["gpt2"]
    one_line_error(run("score", "v.txt", "-m", model, "-o", spelling), "--output", "is the input v.txt")
    one_line_error(run("tokens", "v.txt", "-m", model, "--html", spelling), "--html", "is the input")
    one_line_error(run("compare", model, model, "v.txt", "-o", spelling), "is the input")
    assert text.read_bytes() == before


def test_dataset_model_and_run_files_are_inputs_too(model_dirs, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "ds.jsonl"
    data.write_text("".join(json.dumps({"text": TEXT * i}) + "\n" for i in (1, 2)), encoding="utf-8")
    before = data.read_bytes()
    model = model_dirs["gpt2"]
    one_line_error(run("score", "--dataset", "ds.jsonl", "-m", model, "-o", "./ds.jsonl"), "is the input ds.jsonl")
    assert data.read_bytes() == before
    config = model / "config.json"
    config_bytes = config.read_bytes()
    one_line_error(run("score", "--dataset", "ds.jsonl", "-m", model, "-o", config), "is the input")
    assert config.read_bytes() == config_bytes
    assert run("score", "--dataset", "ds.jsonl", "-m", model, "--shard", "0/1", "-o", "run.jsonl").exit_code == 0
    one_line_error(run("merge", "run.jsonl", "-o", "./run.jsonl"), "is the input run.jsonl")
    one_line_error(run("tokens", "ds.jsonl", "-m", model, "-o", "x.json", "--html", "./x.json"), "is also --output")


def test_standard_input_from_a_file_is_an_input(model_dirs, tmp_path: Path) -> None:
    text = tmp_path / "v.txt"
    text.write_text(TEXT, encoding="utf-8")
    with text.open("rb") as stdin:
        process = gptloss("score", "-", "-m", model_dirs["gpt2"], "-o", text, stdin=stdin)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 1 and b"is the input standard input" in err, err
    assert text.read_text(encoding="utf-8") == TEXT


# 2. A run file has one writer.


def test_a_locked_output_is_refused_and_the_lock_goes_with_its_holder(model_dirs, tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    text = tmp_path / "v.txt"
    text.write_text(TEXT, encoding="utf-8")
    with Outputs(("--output", out)) as held:
        held.take([])
        busy = f"another gptloss run is writing it (pid {os.getpid()})"
        one_line_error(run("score", text, "-m", model_dirs["gpt2"], "-o", out), "run.jsonl", busy)
        with pytest.raises(GptlossError, match="another gptloss run"):
            Outputs(("--output", out)).take([])
        assert not out.exists()
    assert not (tmp_path / ".run.jsonl.lock").exists()  # released: nothing left beside the output
    # A holder killed with -9 leaves its lock file, but not its lock.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from gptloss_cli.files import Outputs; from pathlib import Path; "
            f"Outputs(('-o', Path({str(out)!r}))).take([]); print('held', flush=True); import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    with pytest.raises(GptlossError, match=f"pid {holder.pid}"):
        Outputs(("--output", out)).take([])
    holder.kill()
    holder.wait()
    assert (tmp_path / ".run.jsonl.lock").exists()
    assert run("score", text, "-m", model_dirs["gpt2"], "-o", out).exit_code == 0
    assert json.loads(out.read_text().splitlines()[0])["schema"] == "gptloss.score-run/v1"


def test_two_runs_on_one_run_file(model_dirs, tmp_path: Path) -> None:
    """The second of two runs with the same -o is refused while the first runs; the first's file is what a run
    alone writes."""
    data = tmp_path / "ds.jsonl"
    data.write_text("".join(json.dumps({"text": TEXT * (1 + i % 7)}) + "\n" for i in range(1500)), encoding="utf-8")
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"text": "another dataset altogether"}) + "\n", encoding="utf-8")
    shared, alone = tmp_path / "run.jsonl", tmp_path / "alone.jsonl"
    model = model_dirs["gpt2"]
    first = gptloss("score", "--dataset", data, "-m", model, "-o", shared)
    lock = tmp_path / ".run.jsonl.lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().strip()) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run("score", "--dataset", other, "-m", model, "-o", shared)
    assert first.poll() is None, "the first run ended before the second started: give it more to score"
    one_line_error(second, "run.jsonl", f"another gptloss run is writing it (pid {first.pid})")
    resumed = run("score", "--dataset", data, "-m", model, "-o", shared, "--resume")
    one_line_error(resumed, "another gptloss run is writing it")
    assert first.wait(timeout=600) == 0, first.stderr.read() if first.stderr else ""
    assert run("score", "--dataset", data, "-m", model, "-o", alone).exit_code == 0
    assert shared.read_bytes() == alone.read_bytes()


# 3. Memory is bounded whatever the input.


def test_binary_and_endless_streams_end_with_one_line(model_dirs, tmp_path: Path) -> None:
    zero = gptloss("score", "/dev/zero", "-m", model_dirs["gpt2"], peak=True)
    _, err = zero.communicate(timeout=120)
    lines, zero_peak = ends_with_peak(err)
    assert zero.returncode == 1
    assert lines == ["gptloss: error: /dev/zero: looks like a binary file (NUL byte at offset 0)"]
    endless = gptloss("score", "-", "-m", model_dirs["gpt2"], stdin=subprocess.PIPE, peak=True)
    assert endless.stdin is not None
    line = (TEXT + "\n").encode() * 1000
    try:
        while endless.poll() is None:
            endless.stdin.write(line)
    except BrokenPipeError:
        pass
    _, err = endless.communicate(timeout=120)
    lines, endless_peak = ends_with_peak(err)
    assert endless.returncode == 1
    assert lines == [
        "gptloss: error: <stdin>: longer than --max-bytes 67,108,864 bytes; give a larger --max-bytes to score it "
        "whole, or split it"
    ]
    assert zero_peak < 4 * 1024 * 1024 and endless_peak < 4 * 1024 * 1024  # KiB: under 4 GiB each


def test_reading_stops_at_the_limit() -> None:
    class Endless:
        served = 0

        def read(self, n: int) -> bytes:
            self.served += n
            return b"a" * n

    stream = Endless()
    with pytest.raises(GptlossError, match="longer than --max-bytes 1,000"):
        read_bounded(stream, "<stdin>", FileSettings(max_bytes=1000))  # type: ignore[arg-type]
    assert stream.served == 1001
    from conftest import runner

    from gptloss_cli.cli import app

    one_line_error(runner.invoke(app, ["score", "-", "--max-bytes", "3"], input="four"), "longer than --max-bytes 3")


# 4. Errors before the work, in words.


@pytest.mark.parametrize(
    "args",
    [
        ("score", "{text}", "-o", "/proc/x"),
        ("score", "{text}", "-f", "jsonl", "-o", "/proc/x.jsonl"),
        ("tokens", "{text}", "--html", "/proc/x.html"),
        ("tokens", "{text}", "-f", "jsonl", "-o", "/proc/x.jsonl"),
        ("compare", "{model}", "{model}", "{text}", "--html", "/proc/x.html"),
    ],
)
def test_unwritable_outputs_are_refused_before_the_model_loads(model_dirs, tmp_path, monkeypatch, args) -> None:
    import gptloss_cli.cli.console as console

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(console, "load_model", no_loading)
    text = tmp_path / "v.txt"
    text.write_text(TEXT, encoding="utf-8")
    given = [a.format(text=text, model=model_dirs["gpt2"]) for a in args]
    result = run(*given, *(["-m", model_dirs["gpt2"]] if given[0] != "compare" else []))
    path = given[given.index("-o") + 1] if "-o" in given else given[given.index("--html") + 1]
    one_line_error(result, path)
    assert "cannot write in /proc" in result.stderr


def test_write_errors_name_the_file(tmp_path: Path) -> None:
    from gptloss_cli.files import LineFile, write_atomic

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    lines = LineFile(Path("/dev/full"), append=True)
    with pytest.raises(GptlossError, match=r"^/dev/full: cannot write \(No space left on device\)$"):
        lines.write("x\n")
    lines.close()
    with pytest.raises(GptlossError, match="/proc/x: cannot write"):
        write_atomic(Path("/proc/x"), "x")


# 5. --resume follows the data, not the spelling.


def test_resume_by_another_spelling_and_from_another_folder(model_dirs, tmp_path: Path, monkeypatch) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    data = work / "ds.jsonl"
    data.write_text("".join(json.dumps({"text": TEXT * i}) + "\n" for i in (1, 2, 3)), encoding="utf-8")
    (work / "a.txt").write_text(TEXT, encoding="utf-8")
    (work / "b.txt").write_text(TEXT * 2, encoding="utf-8")
    model = model_dirs["gpt2"]
    monkeypatch.chdir(work)
    for first, again, where in (
        (["--dataset", "ds.jsonl"], ["--dataset", "./ds.jsonl"], work),
        (["--dataset", "ds.jsonl"], ["--dataset", str(data)], elsewhere),
        (["a.txt", "b.txt"], ["./a.txt", str(work / "b.txt")], work),
        (["a.txt", "b.txt"], [str(work / "a.txt"), "../work/b.txt"], elsewhere),
    ):
        monkeypatch.chdir(work)
        whole = run("score", *first, "-m", model, "-o", "whole.jsonl")
        assert whole.exit_code == 0, whole.stderr
        lines = (work / "whole.jsonl").read_text().splitlines(keepends=True)
        (work / "cut.jsonl").write_text("".join(lines[:2]))  # the header and one document
        monkeypatch.chdir(where)
        resumed = run("score", *again, "-m", model, "-o", work / "cut.jsonl", "--resume")
        assert resumed.exit_code == 0, resumed.stderr
        done = [json.loads(x) for x in (work / "cut.jsonl").read_text().splitlines()]
        expected = [json.loads(x) for x in lines]
        assert done[-1]["total"] == expected[-1]["total"]
        assert [d["nll_sum"] for d in done[1:-1]] == [d["nll_sum"] for d in expected[1:-1]]
    other = work / "other.jsonl"
    other.write_text(json.dumps({"text": "not the same"}) + "\n", encoding="utf-8")
    (work / "cut.jsonl").write_text("".join(lines[:2]))
    refused = run("score", "--dataset", other, "-m", model, "-o", work / "cut.jsonl", "--resume")
    one_line_error(refused, "written from other documents")


# 6. Folders as inputs.


def test_folders_are_read_recursively_in_order(model_dirs, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "b" / "deep").mkdir(parents=True)
    (corpus / ".git").mkdir()
    files = {
        "z.txt": TEXT,
        "a.md": TEXT * 2,
        "b/deep/c.txt": TEXT * 3,
        "b/a.txt": TEXT,
        ".hidden.txt": "hidden",
        ".git/config": "hidden too",
        "image.png": "\x89PNG\r\n\x1a\n\x00\x00",
    }
    for name, text in files.items():
        (corpus / name).write_text(text, encoding="utf-8")
    listing = list_files([str(corpus)])
    assert listing.files == [str(corpus / n) for n in ("a.md", "b/a.txt", "b/deep/c.txt", "z.txt")]
    assert (listing.hidden, listing.binary) == (2, 1)
    assert list_files([str(corpus)], FileSettings(glob="*.txt")).files == [
        str(corpus / n) for n in ("b/a.txt", "b/deep/c.txt", "z.txt")
    ]
    assert list_files([str(corpus)], FileSettings(glob="b/*.txt")).files == [str(corpus / "b/a.txt")]
    assert list_files([str(corpus)], FileSettings(glob="b/**/*.txt")).files == [
        str(corpus / "b/a.txt"),
        str(corpus / "b/deep/c.txt"),
    ]
    result = run("score", corpus, "-m", model_dirs["gpt2"], "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "warning: skipped 2 hidden and 1 binary file(s) in the folders given\n"
    sources = [d["source"] for d in json.loads(result.stdout)["documents"]]
    assert sources == [str(corpus / n) for n in ("a.md", "b/a.txt", "b/deep/c.txt", "z.txt")]
    one_line_error(run("score", corpus, "--glob", "*.rst", "-m", model_dirs["gpt2"]), "no text files in", "*.rst")


# 7. A closed pipe ends the run quietly.


def test_a_closed_stdout_ends_the_run_quietly(model_dirs, tmp_path: Path) -> None:
    text = tmp_path / "long.txt"
    text.write_text(TEXT * 400, encoding="utf-8")  # far more records than a pipe holds
    process = gptloss("tokens", text, "-f", "jsonl", "-m", model_dirs["gpt2"])
    assert process.stdout is not None and process.stderr is not None
    assert json.loads(process.stdout.readline())["schema"] == "gptloss.tokens/v1"
    process.stdout.close()  # as `| head -1` does
    assert process.wait(timeout=120) == 141
    assert process.stderr.read() == b""


# 9. Usage errors exit 2; flags take no value; outputs are announced.


def test_usage_errors_exit_2(model_dirs, tmp_path: Path) -> None:
    text = tmp_path / "v.txt"
    text.write_text(TEXT, encoding="utf-8")
    model = model_dirs["gpt2"]
    usage_error(run("score", text, "-m", model, "--membership", "--min-k", "2"), "--min-k 2")
    usage_error(run("score", text, "-m", model, "--shard", "2/2", "-o", tmp_path / "r.jsonl"), "--shard 2/2")
    usage_error(run("score", text, "-m", model, "--resume"), "--resume needs --output")
    usage_error(run("score", text, "-m", model, "--protocol", "gptq", "--bos", "always"), "--bos always")
    usage_error(run("score", text, "-m", model, "--text-column", "x"), "--text-column needs --dataset")
    usage_error(run("explain", "--probs", "0.5,x", "--target", "0"), "--probs")
    missing = run("compare")
    assert missing.exit_code == 2 and "Missing argument 'MODEL_A'" in missing.stderr


def test_flags_show_no_value_in_help() -> None:
    for command in ("score", "tokens", "compare", "merge", "explain", "models"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "<bool>" not in result.stdout, command
    assert "<bool>" not in run("--help").stdout


def test_every_output_file_is_announced(model_dirs, tmp_path: Path) -> None:
    text = tmp_path / "v.txt"
    text.write_text(TEXT, encoding="utf-8")
    model = model_dirs["gpt2"]
    for args, path in (
        (("score", text, "-o", tmp_path / "s.txt"), "s.txt"),
        (("score", text, "-o", tmp_path / "s.json"), "s.json"),
        (("tokens", text, "-f", "csv", "-o", tmp_path / "t.csv"), "t.csv"),
        (("tokens", text, "--html", tmp_path / "t.html", "-f", "json"), "t.html"),
        (("compare", model, model, text, "--html", tmp_path / "c.html", "-o", tmp_path / "c.txt"), "c.html"),
    ):
        result = run(*args, *(["-m", model] if args[0] != "compare" else []))
        assert result.exit_code == 0, result.stderr
        assert f"wrote {tmp_path / path}" in result.stderr
    result = run("score", text, "-m", model, "-o", tmp_path / "r.jsonl")
    assert f"wrote {tmp_path / 'r.jsonl'}: 1 documents" in result.stderr
